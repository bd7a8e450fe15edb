"""``steno scenario run | check | merge``: the verb's arguments and its run logic.

The ``steno`` command registers the verb with :func:`add_parser` and calls
:func:`run`; ``python -m engine.scenario`` does the same on its own (the
``--processes`` children run that way).

Exit codes: 0 every threshold held; 99 a threshold failed (k6's convention; also
when ``abort-on-fail`` stopped the run); 2 a bad scenario, flag or target (one line
naming the key path); 1 the run itself failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Final

import trio

from engine.errors import ConfigError

__all__ = ["EXIT_BAD_SCENARIO", "EXIT_BREACH", "EXIT_RUN_FAILED", "add_parser", "main", "run"]

EXIT_BREACH: Final = 99
EXIT_BAD_SCENARIO: Final = 2
EXIT_RUN_FAILED: Final = 1


def add_parser(subparsers: Any) -> None:
    """Add ``scenario`` with its ``run``, ``check``, ``simulate`` and ``merge`` commands."""
    p = subparsers.add_parser(
        "scenario", help="load-test a service with a scenario file (k6-style)"
    )
    sub = p.add_subparsers(dest="scenario_command", required=True)

    r = sub.add_parser("run", help="run a scenario file; exit 99 when a threshold fails")
    r.add_argument("file", metavar="FILE")
    r.add_argument(
        "--target", help="'embedded' or a ws:// / wss:// inference URL (overrides [run] target)"
    )
    r.add_argument(
        "--out",
        default="out/scenario",
        metavar="DIR",
        help="report directory (default out/scenario)",
    )
    r.add_argument(
        "--segment", metavar="I/N", help="run the I-th of N execution segments (I from 0)"
    )
    r.add_argument(
        "--processes", type=int, metavar="N", help="run N segment processes here and merge them"
    )
    r.add_argument(
        "--yes", action="store_true", help="allow a non-loopback target (it bills the key)"
    )
    r.add_argument("--quiet", action="store_true", help="no end table on stdout, no progress line")
    r.add_argument("--status-file", help=argparse.SUPPRESS)  # a --processes child's live numbers

    c = sub.add_parser("check", help="validate a scenario file and print its plan")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--segment", metavar="I/N", help="the plan of one execution segment")

    s = sub.add_parser(
        "simulate", help="serve the simulator that knows a scenario's audio (a --target for runs)"
    )
    s.add_argument("file", metavar="FILE")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")

    m = sub.add_parser("merge", help="merge segment reports into one run's report")
    m.add_argument("dirs", nargs="+", metavar="DIR")
    m.add_argument("--out", required=True, metavar="DIR", help="write the merged report here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``scenario`` command (synchronous: it starts its own trio run).

    Every error a user can cause is one line on stderr and an exit code, never a traceback.
    """
    from engine import logging as steno_logging

    # Thousands of streams: per-stream log lines would drown the progress and the table.
    level = logging.INFO if getattr(args, "verbose", False) else logging.ERROR
    steno_logging.configure(json=not sys.stderr.isatty(), level=level)
    try:
        if args.scenario_command == "check":
            return trio.run(_check, args)
        if args.scenario_command == "simulate":
            return trio.run(_simulate, args)
        if args.scenario_command == "merge":
            from engine.scenario.merge import merge_dirs

            return merge_dirs(args.dirs, args.out, stdout=sys.stdout, stderr=sys.stderr)
        return trio.run(_run, args)
    except ConfigError as exc:
        print(f"steno scenario: error: {exc}", file=sys.stderr)
        return EXIT_BAD_SCENARIO
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the run itself failed: one line, exit 1
        print(f"steno scenario: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED


def _segment(text: str | None) -> Any:
    from engine.scenario.schedule import WHOLE, Segment

    if text is None:
        return WHOLE
    try:
        return Segment.parse(text)
    except ValueError as exc:
        raise ConfigError(f"--segment: {exc}") from None


async def _run(args: argparse.Namespace) -> int:
    from engine.scenario.runner import RunOptions, run_file

    stdout = sys.stdout
    if args.processes is not None:
        if args.processes < 1 or args.segment:
            raise ConfigError("--processes needs N >= 1 and no --segment")
        from engine.scenario.merge import run_processes

        return await run_processes(
            args.file,
            args.processes,
            out=args.out,
            target=args.target,
            yes=args.yes,
            stdout=stdout,
            stderr=sys.stderr,
        )
    options = RunOptions(
        out=args.out,
        target=args.target,
        segment=_segment(args.segment),
        yes=args.yes,
        progress=sys.stderr.isatty() and not args.quiet,
        status_file=args.status_file,
    )
    import io

    code, _report = await run_file(
        args.file, options, stdout=io.StringIO() if args.quiet else stdout, stderr=sys.stderr
    )
    return code


async def _simulate(args: argparse.Namespace) -> int:
    from engine.scenario.runner import audio_refs, read_scenario
    from engine.scenario.simproc import serve_scenario

    file, _raw, base = read_scenario(args.file)
    await serve_scenario(audio_refs(file, base), host=args.host, port=args.port, child=False)
    return 0


async def _check(args: argparse.Namespace) -> int:
    from engine.scenario.plan import plan_text
    from engine.scenario.runner import load_scenario_audio, read_scenario

    file, _raw, base = read_scenario(args.file)
    audio = await load_scenario_audio(file, base)
    durations = {name: a.duration_s for name, a in audio.items()}
    print(
        f"{args.file}: ok, {len(file.scenarios)} scenario(s), {len(file.threshold_items())} threshold(s)"
    )
    print(plan_text(file, durations, _segment(args.segment)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.scenario ...`` (the verb without the rest of ``steno``)."""
    parser = argparse.ArgumentParser(prog="steno")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["scenario", *(sys.argv[1:] if argv is None else argv)])
    return run(args)
