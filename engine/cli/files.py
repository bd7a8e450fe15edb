"""Files as streams, the body of ``steno transcribe`` and ``steno translate``.

Every file is a stream (:func:`engine.pipeline.run_file_stream`, a producer over
:func:`engine.stream.open_stream`) in one trio process, at most ``--jobs`` at a
time, all printing to one console. The first SIGINT/SIGTERM drains every stream
(each finishes its task); a second cancels at once.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from typing import TYPE_CHECKING

import structlog
import trio

from adapters.dashscope.models import get_model
from adapters.dashscope.ws import dial_tcp
from engine._stream_input import INTERRUPTED
from engine.actors import console
from engine.cli._common import (
    EXIT_INTERRUPTED,
    add_format_argument,
    add_layout_arguments,
    add_target_arguments,
    exit_code,
    log_settings,
    parse_formats,
    parse_layout,
    resolve_endpoint,
)
from engine.cli._names import check_output_dir, file_durations, output_stems, stream_ids
from engine.cli._shard import STREAMS_PER_PROCESS, plan_processes
from engine.cli._signals import Interrupts
from engine.cli._startbudget import choose_budget, resolve_budget
from engine.config import SessionConfig
from engine.errors import ConfigError
from engine.events import Event, StreamEnded, StreamError
from engine.pipeline import FileStreamConfig, run_file_stream
from engine.policy import RATE_LIMITS
from engine.ratelimit import StartLimiter, rate_share
from engine.wiring import EDGES

log = structlog.get_logger("steno.files")


if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence
    from typing import TextIO

    from adapters.dashscope.models import RecognitionOptions
    from adapters.dashscope.ws import Dialer
    from engine.config import TranslationOptions
    from engine.policy import RateLimit
    from engine.shard import WorkerPool

__all__ = [
    "add_file_stream_arguments",
    "file_durations",
    "output_stems",
    "run_files",
    "run_streams",
    "stream_ids",
]


def add_file_stream_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments ``transcribe`` and ``translate`` share: files, outputs, endpoint, pace."""
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="write output files here")
    add_format_argument(p)
    add_layout_arguments(p)
    add_target_arguments(p, url_help="inference WebSocket URL (overrides --region)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="real-time multiplier (default 1)")
    pace.add_argument("--fast", action="store_true", help="send as fast as the service accepts")
    p.add_argument(
        "--jobs", type=int, default=64, help="files streamed at once, in all (default 64)"
    )
    p.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="worker processes the files are shared over (default: the number of cores, "
        f"one per {STREAMS_PER_PROCESS} files at once); 1 streams in this process",
    )
    p.add_argument(
        "--start-rate",
        metavar="RATE",
        help="task starts allowed, e.g. 20 (per second), 10/min or unlimited (default: the "
        "service's per-model budget; a simulator's own, which is none)",
    )
    p.add_argument(
        "--finish-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="after the audio ends, how long the service may stay silent (default 10 s)",
    )
    p.add_argument(
        "--replay-buffer",
        type=float,
        default=120.0,  # SessionConfig.replay_buffer_s
        metavar="S",
        help="audio kept for replay after an outage, in seconds (default 120); "
        "beyond it, the overflow is lost (exit 3)",
    )
    p.add_argument(
        "--sim-fault",
        metavar="SPEC",
        help="fault plan for the embedded simulator, e.g. 'drop:at=3;first=1' (no API key only)",
    )


async def run_files(
    args: argparse.Namespace,
    *,
    options: RecognitionOptions,
    translation: TranslationOptions | None,
    dial: Dialer | None,
    audio_out: str | None = None,
) -> int:
    """Check the shared options, resolve the endpoint, run every file; the exit code.

    Raises:
        ConfigError: a bad option (before anything connects).
    """
    spec = get_model(args.model)
    formats = parse_formats(args.format)
    layout = parse_layout(args.max_line_width, args.max_lines)
    if args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    if not args.fast and not (math.isfinite(args.speed) and args.speed > 0):
        raise ConfigError(
            f"--speed must be a positive number, got {args.speed:g}; fix: e.g. --speed 2, or --fast"
        )
    if not (math.isfinite(args.finish_timeout) and args.finish_timeout > 0):
        raise ConfigError(
            f"--finish-timeout must be a positive number, got {args.finish_timeout:g}"
        )
    if not (math.isfinite(args.replay_buffer) and args.replay_buffer > 0):
        raise ConfigError(f"--replay-buffer must be a positive number, got {args.replay_buffer:g}")
    choose_budget(args.start_rate, None)  # a bad --start-rate is an error before anything starts
    processes = plan_processes(
        getattr(args, "processes", None), min(len(args.files), args.jobs), spec.family
    )
    for flag, directory in (("--out", args.out), ("--audio-out", audio_out)):
        if directory is not None:
            await trio.to_thread.run_sync(check_output_dir, directory, flag)
    async with contextlib.AsyncExitStack() as stack:
        pool = None
        if processes > 1 and dial is None:  # a dialer (tests) cannot cross processes
            # Up before the endpoint: the simulator's notice means streaming begins.
            from engine.shard import open_workers  # only here: a run in one process never needs it

            log_json, log_level = log_settings(args, tty=_isatty(sys.stderr))
            try:
                pool = await stack.enter_async_context(
                    open_workers(
                        processes, share=rate_share(), log_json=log_json, log_level=log_level
                    )
                )
            except OSError as exc:  # no worker could start: the files still get streamed
                log.warning("shard.unavailable", error=str(exc), processes=processes)
        endpoint = await resolve_endpoint(args, stack, api="inference", faults=args.sim_fault)
        budget = await resolve_budget(args.start_rate, endpoint)
        configs = [
            FileStreamConfig(
                path=path,
                session=SessionConfig(
                    stream=stream,
                    model=spec.name,
                    url=endpoint.url,
                    api_key=endpoint.key,
                    options=options,
                    translation=translation,
                    finish_timeout_s=args.finish_timeout,
                    replay_buffer_s=args.replay_buffer,
                ),
                out_dir=args.out,
                output_stem=stem,
                formats=formats,
                speed=None if args.fast else args.speed,
                voice_dir=audio_out,
                layout=layout,
            )
            for path, stream, stem in zip(
                args.files, stream_ids(args.files), output_stems(args.files), strict=True
            )
        ]
        return await run_streams(
            configs,
            jobs=args.jobs,
            dial=dial,
            out=sys.stdout,
            err=sys.stderr,
            translate=translation is not None,
            pool=pool,
            start_limits=budget.limits,
        )


async def run_streams(
    configs: Sequence[FileStreamConfig],
    *,
    jobs: int,
    out: TextIO,
    err: TextIO | None = None,
    dial: Dialer | None = None,
    translate: bool = False,
    pool: WorkerPool | None = None,
    start_limits: Mapping[str, RateLimit] = RATE_LIMITS,
) -> int:
    """Run every stream concurrently (at most ``jobs`` at once); return the exit code.

    Files start in command-line order. The first SIGINT/SIGTERM drains every
    stream (each finishes its task, and one stopped before the end of its file ends
    ``interrupted``) and starts no more (each file never started gets one line); a
    second cancels at once.

    With a ``pool`` the files stream in its worker processes (``jobs`` at once in
    all) and only the console, the signals and the exit code stay here: what is
    printed is the same, line for line.

    The transcript goes to ``out`` and the status lines to ``err`` (``out`` when
    left out); the status line is drawn when ``err`` is a terminal. Tasks start
    within ``start_limits`` (the service's by default; see
    :mod:`engine.cli._startbudget`), shared by every stream (and split over a
    ``pool``'s workers).
    """
    tty = _isatty(err or out)
    durations = await trio.to_thread.run_sync(file_durations, configs) if tty else {}
    console_send, console_recv = trio.open_memory_channel[Event](EDGES["renderer->console"].size)
    drain = trio.Event()
    results: list[StreamEnded] = []
    interrupts = Interrupts()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                console.run,
                inbox=console_recv,
                out=out,
                err=err,
                tty=tty,
                durations=durations,
                translate=translate,
            )
        )
        async with trio.open_nursery() as streams:
            await streams.start(
                functools.partial(
                    interrupts.watch,
                    first=drain.set,
                    then=nursery.cancel_scope.cancel,
                    notice="finishing every stream (press Ctrl-C again to stop now)",
                )
            )
            async with console_send:
                if pool is None:
                    shows = functools.partial(console.shown, tty=tty, translate=translate)
                    starts = StartLimiter(start_limits)  # one bucket per family for the run
                    await _run_here(
                        configs, jobs, console_send, drain, dial, results, shows, starts
                    )
                else:
                    results = await pool.run(
                        configs,
                        jobs=jobs,
                        console=console_send.clone(),
                        drain=drain,
                        console_tty=tty,
                        translate=translate,
                        start_limits=start_limits,
                    )
            streams.cancel_scope.cancel()
    if interrupts.interrupted:
        return EXIT_INTERRUPTED
    return exit_code(results)


async def _run_here(
    configs: Sequence[FileStreamConfig],
    jobs: int,
    console_send: trio.MemorySendChannel[Event],
    drain: trio.Event,
    dial: Dialer | None,
    results: list[StreamEnded],
    shows: Callable[[Event], bool] | None = None,
    starts: StartLimiter | None = None,
) -> None:
    """Every stream in this process, at most ``jobs`` at once; endings into ``results``.

    ``shows``: what the console prints something for (the rest is not sent to it).
    """
    slots = trio.Semaphore(jobs)
    if starts is None:
        starts = StartLimiter()  # the service's budget, one bucket per family for the run

    async def one(config: FileStreamConfig, channel: trio.MemorySendChannel[Event]) -> None:
        try:
            ended = await run_file_stream(
                config,
                console=channel,
                drain=drain,
                dial=dial or dial_tcp,
                limiter=starts,
                console_if=shows,
            )
            results.append(ended)
        finally:
            slots.release()

    async with trio.open_nursery() as workers:
        # Files start in command-line order, each once a slot is free.
        for config in configs:
            await slots.acquire()
            if drain.is_set():
                slots.release()
                await console_send.send(_not_started(config))
                continue
            workers.start_soon(one, config, console_send.clone())


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a minimal or closed stream
        return False


def _not_started(config: FileStreamConfig) -> StreamError:
    """The one line of a file the run was interrupted before."""
    return StreamError(
        INTERRUPTED,
        "interrupted before it started: nothing of it was sent",
        permanent=False,
        stream=config.session.stream,
        t=trio.current_time(),
    )
