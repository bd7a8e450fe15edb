"""The ``steno`` command line: one module per verb over shared plumbing.

========================  ==================================================
``transcribe``            files as streams (:mod:`engine.cli.transcribe`)
``translate``             files, transcribed and translated (:mod:`.translate`)
``simulate``              the DashScope-compatible simulator (:mod:`.simulate`)
``batch``                 the batch REST API (:mod:`.batch`)
``prepare``               media for batch upload (:mod:`.prepare`)
``devices``, ``listen``   live audio (:mod:`.devices`, :mod:`.listen`)
``daemon``                many streams, 24/7 (:mod:`.daemon`)
``scenario``              load tests (:mod:`engine.scenario.cli`, which runs trio itself)
========================  ==================================================

Shared plumbing: exit codes, the key and URL lookup and output options
(:mod:`._common`), the embedded simulator (:mod:`engine._embedded`), signals
(:mod:`._signals`). :func:`main` is the one entry point (``steno``, and
``python -m engine.cli``); each verb sets ``func``, an ``async (args) -> exit
code`` that ``main`` runs under ``trio.run``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import metadata
from typing import TYPE_CHECKING

import trio

from engine import logging as steno_logging
from engine.cli import (
    batch,
    daemon,
    devices,
    listen,
    prepare,
    simulate,
    transcribe,
    translate,
)
from engine.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOST_AUDIO,
    EXIT_OK,
    EXIT_USAGE,
    exit_code,
)
from engine.errors import ConfigError
from engine.scenario import cli as scenario_cli

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_LOST_AUDIO",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "exit_code",
    "main",
]

#: The verbs in the order ``steno --help`` lists them.
VERBS = (transcribe, translate, simulate, batch, prepare, devices, listen, daemon, scenario_cli)


def version() -> str:
    """The installed package's version (``steno --version``)."""
    try:
        return metadata.version("stenograph")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """``steno``'s parser: the global options and every verb."""
    parser = argparse.ArgumentParser(
        prog="steno", description="Stream audio to DashScope speech recognition, losing nothing."
    )
    parser.add_argument("--version", action="version", version=f"steno {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at info level")
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; return its exit code (a :class:`ConfigError` is one line and 2)."""
    args = build_parser().parse_args(argv)
    tty = sys.stderr.isatty()
    level = logging.INFO if args.verbose or not tty else logging.WARNING
    steno_logging.configure(json=not tty, level=level)
    if args.command == "scenario":  # runs trio itself (and may start processes)
        return scenario_cli.run(args)
    try:
        code: int = trio.run(args.func, args)
    except ConfigError as exc:
        print(f"steno: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code
