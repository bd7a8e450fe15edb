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
import importlib
import os
import signal
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import trio

from engine import logging as steno_logging
from engine import runtime
from engine._util import unwrap_single_group
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

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_LOST_AUDIO",
    "EXIT_OK",
    "EXIT_USAGE",
    "VERBS",
    "Verb",
    "build_parser",
    "configure_logging",
    "exit_code",
    "main",
    "parse",
]


class Verb(NamedTuple):
    """A verb of ``steno``: its name, the module that builds and runs it, its one-line help.

    The module (its ``add_parser(subparsers)``) is imported only when the verb's
    parser is needed: the verb runs, its ``--help`` is asked for, or a shell
    completes; ``steno --help`` lists every verb from this table alone. A test
    checks that ``help`` is the one the module gives.
    """

    name: str
    module: str
    help: str


#: The verbs in the order ``steno --help`` lists them.
VERBS: Final = (
    Verb("transcribe", "engine.cli.transcribe", "transcribe audio files (many at once)"),
    Verb(
        "translate",
        "engine.cli.translate",
        "transcribe and translate audio files (bilingual subtitles)",
    ),
    Verb("simulate", "engine.cli.simulate", "run the DashScope-compatible simulator"),
    Verb(
        "batch",
        "engine.cli.batch",
        "transcribe files by URL with the batch REST API (paraformer-v2, sensevoice-v1)",
    ),
    Verb(
        "prepare",
        "engine.cli.prepare",
        "convert video or audio to 16 kHz mono Opus for batch upload (ffmpeg)",
    ),
    Verb("devices", "engine.cli.devices", "list audio input and output devices"),
    Verb("listen", "engine.cli.listen", "transcribe an input device live (Ctrl-C finishes)"),
    Verb(
        "daemon",
        "engine.cli.daemon",
        "run many streams 24/7 from a TOML config (/healthz, /metrics, rolling files)",
    ),
    Verb("scenario", "engine.scenario.cli", "load-test a service with a scenario file (k6-style)"),
    Verb("completion", "engine.cli.completion", "print the shell completion script"),
)


def version() -> str:
    """The installed package's version (``steno --version``)."""
    try:
        return metadata.version("stenograph")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(verbs: Collection[str] | None = None) -> argparse.ArgumentParser:
    """``steno``'s parser: the global options and every verb.

    Args:
        verbs: the verbs whose own parsers are built (their modules imported); the
            others are only listed, by name and help, and take any arguments. None:
            every verb (the whole tree: completion, tests).
    """
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
        if verbs is None or verb.name in verbs:
            _module(verb).add_parser(sub)
        else:
            sub.add_parser(verb.name, help=verb.help, add_help=False)
    add_epilogs(sub)
    return parser


def _module(verb: Verb) -> Any:
    return importlib.import_module(verb.module)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``argv`` parsed by :func:`build_parser` with only its verb's parser built.

    A first pass with every verb only listed finds the verb (and acts on ``--help``,
    ``--version`` and a missing or unknown verb, as the whole parser would); the
    second parses everything with that verb's module imported. So ``steno --help``
    imports no verb and ``steno transcribe`` only what transcribing needs.
    """
    found, _ = build_parser(()).parse_known_args(argv)
    return build_parser((found.command,)).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; return its exit code (a :class:`ConfigError` is one line and 2).

    An interrupt that reaches no verb's own handler (one during start-up or
    shutdown, such as a second Ctrl-C while the embedded simulator stops) ends the
    run at once with 130 and no traceback.
    """
    entry = argv is None  # the process's own command line (not a caller's list)
    if entry and "_ARGCOMPLETE" in os.environ:  # a shell asks for completions (and exits)
        import argcomplete

        argcomplete.autocomplete(build_parser())
    args = parse(argv)
    configure_logging(args, tty=sys.stderr.isatty())
    if args.command == "scenario":  # runs trio itself (and may start processes)
        from engine.scenario import cli as scenario_cli

        code: int = scenario_cli.run(args)
        return code
    from adapters.dashscope.ws import transport_name

    if entry:  # the process is ours: the collector's policy for many streams (engine/runtime.py)
        runtime.tune_for_streams()
    try:
        transport_name()  # a bad STENO_TRANSPORT is one line now, not a failure per stream
        code = trio.run(_run, args)
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
