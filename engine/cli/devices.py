"""``steno devices``: every audio device PortAudio sees."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import trio

from engine.cli._common import EXIT_OK

if TYPE_CHECKING:
    import argparse
    from typing import TextIO

    from adapters.audio.backend import AudioBackend

__all__ = ["add_parser", "devices"]


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    d = subparsers.add_parser("devices", help="list audio input and output devices")
    d.set_defaults(func=devices)


async def devices(
    args: argparse.Namespace, *, backend: AudioBackend | None = None, out: TextIO | None = None
) -> int:
    """Print every device PortAudio sees (inputs, then outputs; ``*`` = default)."""
    from adapters.audio.devices import format_device_table, list_devices
    from adapters.audio.portaudio import load_backend

    def listing() -> str:
        return format_device_table(list_devices(backend or load_backend()))

    (out or sys.stdout).write(await trio.to_thread.run_sync(listing))
    return EXIT_OK
