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
``completion``            the shell completion script (:mod:`.completion`)
========================  ==================================================

Shared plumbing: exit codes, the key and URL lookup and output options
(:mod:`._common`), each verb's help epilog (:mod:`._help`), the embedded simulator (:mod:`engine._embedded`), signals
(:mod:`._signals`). :func:`main` is the one entry point (``steno``, and
``python -m engine.cli``); each verb sets ``func``, an ``async (args) -> exit
code`` that ``main`` runs under ``trio.run``.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from importlib import metadata
from typing import TYPE_CHECKING

import trio

from adapters.dashscope.ws import transport_name
from engine import logging as steno_logging
from engine._util import unwrap_single_group
from engine.cli import (
    batch,
    completion,
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
    log_settings,
)
from engine.cli._help import add_epilogs
from engine.cli._signals import Interrupts
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
    "configure_logging",
    "exit_code",
    "main",
]

#: The verbs in the order ``steno --help`` lists them.
VERBS = (
    transcribe,
    translate,
    simulate,
    batch,
    prepare,
    devices,
    listen,
    daemon,
    scenario_cli,
    completion,
)


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
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at info level (default: warnings only)"
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "console", "json"],
        default="auto",
        help="how log lines look on stderr: auto is JSON lines for -v off a terminal, "
        "else plain text (default auto)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.add_parser(sub)
    add_epilogs(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; return its exit code (a :class:`ConfigError` is one line and 2).

    An interrupt that reaches no verb's own handler (one during start-up or
    shutdown, such as a second Ctrl-C while the embedded simulator stops) ends the
    run at once with 130 and no traceback.
    """
    entry = argv is None  # the process's own command line (not a caller's list)
    parser = build_parser()
    if entry and "_ARGCOMPLETE" in os.environ:  # a shell asks for completions (and exits)
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    configure_logging(args, tty=sys.stderr.isatty())
    if args.command == "scenario":  # runs trio itself (and may start processes)
        return scenario_cli.run(args)
    try:
        transport_name()  # a bad STENO_TRANSPORT is one line now, not a failure per stream
        code: int = trio.run(_run, args)
    except ConfigError as exc:
        print(f"steno: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        if _only_interrupts(group):
            return EXIT_INTERRUPTED
        raise
    finally:
        if entry:  # the run is over: a late Ctrl-C must not become a traceback on the way out
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


def configure_logging(args: argparse.Namespace, *, tty: bool) -> None:
    """The CLI's logs on stderr: warnings as plain text unless asked for more.

    A person reads the transcript (stdout) and its status lines (stderr); log lines
    join them only when asked: ``-v`` logs info too (JSON lines off a terminal, for
    ``2>log`` and collectors), ``--log-format json`` makes them JSON at any level.
    The daemon configures its own (JSON on stdout).
    """
    json, level = log_settings(args, tty=tty)
    steno_logging.configure(json=json, level=level)


async def _run(args: argparse.Namespace) -> int:
    """Run the verb under a last-resort interrupt handler.

    A verb installs its own handler while it can react (drain, stop waiting); a
    signal outside it cancels the verb (its clean-up is cancelled too), and one
    more ends the process at once.
    """
    work = trio.CancelScope()
    interrupts = Interrupts()

    def stop() -> None:
        work.cancel()

    code = EXIT_INTERRUPTED
    with unwrap_single_group():
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(interrupts.watch, first=stop, then=_exit_now))
            with work:
                code = await args.func(args)
            nursery.cancel_scope.cancel()
    return EXIT_INTERRUPTED if interrupts.interrupted else code


def _exit_now() -> None:
    """A further interrupt while a cancelled verb still cleans up: leave now."""
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _only_interrupts(group: BaseExceptionGroup[BaseException]) -> bool:
    """A group of nothing but KeyboardInterrupt (and the Cancelled it caused)."""
    rest = group.split((KeyboardInterrupt, trio.Cancelled))[1]
    return rest is None and group.subgroup(KeyboardInterrupt) is not None
