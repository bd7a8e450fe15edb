"""What the two file decoders share: the description of an opened file, the reader
protocol they both implement, and the checks and input errors they both raise.

:mod:`adapters.audio.files` decodes with soundfile and :mod:`adapters.audio._ffmpeg`
with an ffmpeg subprocess; both hand an :class:`AudioSource
<adapters.audio.files.AudioSource>` a :class:`Reader` of ``(frames × channels)``
float32 blocks and raise these errors, so a file fails alike whichever decodes it.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeAlias

import msgspec

from engine.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "MAX_RATE",
    "MIN_RATE",
    "Frames",
    "Reader",
    "SourceInfo",
    "block_size",
    "check_rate",
    "no_audio",
    "not_audio",
]

MIN_RATE: Final = 8000
MAX_RATE: Final = 48000

Frames: TypeAlias = "NDArray[np.float32]"


class SourceInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What was learned about an audio file when it was opened."""

    path: str
    rate: int
    channels: int
    duration_s: float | None
    decoder: Literal["soundfile", "ffmpeg"]


class Reader(Protocol):
    """A decoder's open file."""

    async def read(self, frames: int) -> Frames:
        """Up to ``frames`` frames, shape ``(n, channels)``; fewer only at the end."""
        ...

    async def aclose(self) -> None: ...


def block_size(rate: int, frames: int | None, block_ms: int) -> int:
    """Frames per block: ``frames`` if given, else ``block_ms`` of audio at ``rate``."""
    return frames if frames is not None else max(1, rate * block_ms // 1000)


def check_rate(name: str, rate: int) -> None:
    """Refuse a rate outside 8–48 kHz, with the ffmpeg line that fixes it."""
    if not MIN_RATE <= rate <= MAX_RATE:
        stem = PurePath(name).stem
        raise InputError(
            f"{name} is {rate} Hz; Stenograph needs 8–48 kHz; "
            f"fix: resample it, e.g. `ffmpeg -i {name} -ar 16000 {stem}-16k.wav`"
        )


def no_audio(name: str) -> InputError:
    return InputError(f"{name} has no audio (0 frames); fix: pass a file that contains audio")


def not_audio(name: str, reason: str) -> InputError:
    return InputError(
        f"{name} is not audio or its header is corrupt ({reason}); "
        f"fix: check that it plays, or convert it, e.g. `ffmpeg -i {name} {PurePath(name).stem}-converted.wav`"
    )
