"""Capacity benchmark: N concurrent paced streams through the engine's one stream assembly.

Usage::

    python -m tools.bench.capacity --streams 10 --streams 100 --duration 20 --json out.json

Each step (one N) starts a fresh simulator process (``tools/bench/sim_server.py``, scripted
tone recognizer, 127.0.0.1) and, in this process, N streams opened with
:func:`engine.stream.open_stream` (resampler → session, as every face of the engine)
over real loopback TCP. Each stream is fed by its own paced feeder: tone-coded
speech (a few sentences, synthesized once, looped; each stream starts at its own point
of the loop) pushed in ``--frame-ms`` blocks on an absolute schedule. ``--feeding
drive`` (the default): the run's pacer drives every feeder (``Pacer.drive``), whose
step hands its frame over with ``Stream.try_push`` inside the pacer's tick (no task
step per frame), and a refused frame is pushed by the feeder's task (``await push``);
``--feeding wait``: each feeder task waits for its deadline on the pacer
(``wait_until``, or ``trio.sleep_until`` on an engine without a pacer) and awaits
``push``. An engine without ``drive``/``try_push`` is fed the ``wait`` way (the JSON
settings say which). Feeders are spread evenly over one frame period (a live source's
frames do not line up with another's); ``--aligned`` makes them all tick together.

Phases of a step: *connect* (every session opens its task; the feeders wait for all of
them), *stream* (the measured window: ``--duration`` seconds of paced audio), *finish*
(inputs close, every session finishes its task and ends). CPU numbers cover the stream
window only; events are counted over the whole step.

Measured per step: client CPU (this process, ``getrusage``), simulator CPU
(``/proc/PID/stat``), CPU used by everything else on the machine (``/proc/stat`` minus
both), send lateness of the feeders (wake-up minus schedule), frames sent, events by type,
final lag, errors, reconnects, gaps, and wall times. The task-start limiter is given a
limit far above N, so starts are never throttled (the JSON says so). Why the tail is what
it is (``stalls``, ``tools/bench/_stalls.py``): the collector's pauses in the window (and
in the connect phase), the pacer ticker's own lateness, its longest tick, the read hub's
longest round. The process runs under :func:`engine.runtime.tune_for_streams` (as the
CLI and the daemon do) unless ``--gc default``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import logging
import os
import random
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import trio

from adapters.recognizers.tonecode import synthesize
from engine.config import Secret, SessionConfig
from engine.events import (
    AudioGap,
    Event,
    Final,
    SessionOpened,
    StreamEnded,
    StreamError,
)
from engine.logging import configure
from engine.policy import RATE_LIMITS
from engine.ratelimit import StartLimiter
from engine.runtime import GcPauses, tune_for_streams
from engine.stream import Stream, StreamConfig, open_stream
from tools.bench import _speech
from tools.bench._report import (
    START_LIMIT,
    CpuSnapshot,
    StepState,
    engine_stats,
    machine_info,
    rss_kb,
    snapshot,
    summarize,
    table,
)
from tools.bench._report import percentiles_ms as percentiles_ms  # the smoke test's helper
from tools.bench._sim import SimProcess
from tools.bench._stalls import StallWindow

RATE = 16000
MODEL = "paraformer-realtime-v2"
# Four sentences of the tone vocabulary: about 7.2 s of audio, 4 finals per loop.
SENTENCES = [
    "good morning",
    "the weather today is sunny",
    "the train leaves at seven",
    "thank you",
]


# ------------------------------------------------------------------- the audio


def audio_loop(frame_samples: int) -> list[bytes]:
    """The tone-coded sentences as PCM frames, padded with silence to whole frames."""
    samples = synthesize(SENTENCES, RATE)
    pad = -len(samples) % frame_samples
    pcm = np.concatenate([samples, np.zeros(pad, dtype=np.int16)]).astype("<i2").tobytes()
    step = frame_samples * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


# --------------------------------------------------------------------- a step


async def consume(
    events: trio.MemoryReceiveChannel[Event], state: StepState, spf: int, frame_s: float
) -> None:
    """Count every event of every stream; note opens, final lags, errors and endings."""
    async with events:
        async for event in events:
            state.counts[type(event).__name__] += 1
            i = state.index[event.stream]
            match event:
                case SessionOpened():
                    if not state.resolved[i]:
                        state.opened += 1
                    state.resolve(i)
                case Final(end=end, text=text):
                    state.final_texts[i].append(text)
                    t0 = state.t0[i]
                    if t0 is not None and end > 0:
                        # from the scheduled send of the frame holding the last sample
                        state.final_lags.append(event.t - (t0 + (end - 1) // spf * frame_s))
                case StreamError(kind=kind):
                    state.error_kinds[kind] += 1
                    state.resolve(i)
                case AudioGap(reason=reason):
                    state.gap_reasons[reason] += 1
                case StreamEnded(status=status, audio_lost_ms=lost):
                    state.statuses[status] += 1
                    state.audio_lost_ms += lost
                    state.resolve(i)


async def feed(
    i: int,
    stream: Stream,
    state: StepState,
    *,
    start: float,
    frames: int,
    loop: list[bytes],
    offset: int,
    frame_s: float,
    driven: bool = True,
) -> None:
    """Push ``frames`` frames on an absolute schedule from ``start``; record lateness.

    Ends the stream's input when done (or cancelled)."""
    state.t0[i] = start
    try:
        drive = pacer_drive() if driven else None
        if drive is not None:
            await feed_driven(drive, stream, state, start, frames, loop, offset, frame_s)
            return
        sleep_until = pacer_wait()
        for k in range(frames):
            at = start + k * frame_s
            await sleep_until(at)
            state.lateness.append(trio.current_time() - at)
            await stream.push(loop[(offset + k) % len(loop)], rate=RATE)
            state.frames_sent += 1
    finally:
        await stream.end_input()


Drive = Callable[[Callable[[float], float | None], float], Awaitable[None]]


async def feed_driven(
    drive: Drive,
    stream: Stream,
    state: StepState,
    start: float,
    frames: int,
    loop: list[bytes],
    offset: int,
    frame_s: float,
) -> None:
    """The pacer's step hands each frame over (``try_push``); the task pushes what it refused."""
    try_push = stream.try_push
    k = 0
    refused: bytes | None = None

    def step(now: float) -> float | None:
        nonlocal k, refused
        state.lateness.append(now - (start + k * frame_s))
        pcm = loop[(offset + k) % len(loop)]
        k += 1
        if not try_push(pcm, rate=RATE):
            refused = pcm
            return None
        state.frames_sent += 1
        return start + k * frame_s if k < frames else None

    while k < frames:
        await drive(step, start + k * frame_s)
        if refused is not None:
            pcm, refused = refused, None
            await stream.push(pcm, rate=RATE)
            state.frames_sent += 1


def pacer_drive() -> Drive | None:
    """The run's ``Pacer.drive`` when the engine has it and ``Stream.try_push``, else None.

    Call it inside the trio run (the pacer is one per run)."""
    try:
        from engine import pacer  # type: ignore[attr-defined,unused-ignore]

        drive: Drive = pacer.current_pacer().drive
    except (ImportError, AttributeError):
        return None
    return drive if hasattr(Stream, "try_push") else None


def feeding_used(requested: str) -> str:
    """What ``--feeding requested`` does on this engine (for the JSON settings)."""
    if find_spec("engine.pacer") is None:
        return "trio.sleep_until + await Stream.push"
    from engine import pacer  # type: ignore[attr-defined,unused-ignore]

    if requested == "drive" and hasattr(pacer.Pacer, "drive") and hasattr(Stream, "try_push"):
        return "pacer.drive + Stream.try_push (await push when refused)"
    return "pacer.wait_until + await Stream.push"


def pacer_wait() -> Callable[[float], Awaitable[None]]:
    """The engine's shared pacer when it has one (``engine.pacer``), else ``trio.sleep_until``.

    Call it inside the trio run: the pacer is one per run."""
    try:
        from engine import pacer  # type: ignore[attr-defined,unused-ignore]

        wait: Callable[[float], Awaitable[None]] = pacer.current_pacer().wait_until
    except (ImportError, AttributeError):
        return trio.sleep_until
    return wait


async def run_stream(
    config: SessionConfig,
    limiter: StartLimiter,
    outbox: trio.MemorySendChannel[Event],
    task_status: trio.TaskStatus[Stream] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One stream: open it, hand it to the feeder, forward its events (closes ``outbox``)."""
    async with outbox, open_stream(StreamConfig(session=config), limiter=limiter) as stream:
        task_status.started(stream)
        async for event in stream.events():
            await outbox.send(event)


async def run_step(
    n: int, sim_url: str, sim_pid: int, args: argparse.Namespace, pauses: GcPauses
) -> dict[str, Any]:
    """One step: N streams through connect, a measured stream window, and finish."""
    frame_s = args.frame_ms / 1000.0
    spf = RATE * args.frame_ms // 1000
    loop = _speech.frames(spf, args.script) if args.script else audio_loop(spf)
    frames = len(loop) if args.script else round(args.duration / frame_s)
    rng = random.Random(args.seed + n)
    names = [f"s{i}" for i in range(n)]
    state = StepState(n, {name: i for i, name in enumerate(names)}, [False] * n, unresolved=n)
    state.t0 = [None] * n
    state.final_texts = [[] for _ in range(n)]
    rss = {"before_kb": rss_kb()}
    limiter = StartLimiter(dict.fromkeys(RATE_LIMITS, START_LIMIT))
    phases: dict[str, float] = {}
    window: tuple[CpuSnapshot, CpuSnapshot] | None = None
    engine: dict[str, Any] | None = None
    stalls = StallWindow(pauses)
    stall_record: dict[str, Any] = {}
    load_start = os.getloadavg()
    t_finish: float | None = None
    t_begin = trio.current_time()

    with trio.move_on_after(args.connect_timeout * 2 + args.duration + args.finish_deadline) as cs:
        async with trio.open_nursery() as nursery:
            events_send, events_recv = trio.open_memory_channel[Event](max(256, 4 * n))
            nursery.start_soon(consume, events_recv, state, spf, frame_s)
            streams: list[Stream] = []
            async with events_send:
                for i, name in enumerate(names):
                    config = SessionConfig(
                        stream=name,
                        model=MODEL,
                        url=sim_url,
                        api_key=Secret("bench"),
                        frame_ms=args.frame_ms,
                        connect_timeout_s=args.connect_timeout,
                        start_timeout_s=args.connect_timeout,
                        finish_timeout_s=args.finish_timeout,
                        seed=args.seed + i,
                    )
                    streams.append(
                        await nursery.start(run_stream, config, limiter, events_send.clone())
                    )

            with trio.move_on_after(args.connect_timeout * 2):
                await state.all_resolved.wait()
            phases["connect_s"] = trio.current_time() - t_begin

            base = trio.current_time() + 0.5  # time to spawn every feeder before the first tick
            async with trio.open_nursery() as feeders:
                for i, stream in enumerate(streams):
                    phase = 0.0 if args.aligned else i * frame_s / n
                    feeders.start_soon(
                        functools.partial(
                            feed,
                            i,
                            stream,
                            state,
                            start=base + phase,
                            frames=frames,
                            loop=loop,
                            offset=0 if args.script else rng.randrange(len(loop)),
                            frame_s=frame_s,
                            driven=args.feeding == "drive",
                        )
                    )
                await trio.sleep_until(base)
                stall_record["gc_connect"] = stalls.begin()
                before = snapshot(sim_pid)
            window = (before, snapshot(sim_pid))
            stall_record |= stalls.end()
            rss["window_kb"] = rss_kb()
            engine = engine_stats([s.statistics() for s in streams])
            phases["stream_s"] = trio.current_time() - base
            t_finish = trio.current_time()
        if t_finish is not None:
            phases["finish_s"] = trio.current_time() - t_finish
    phases["wall_s"] = trio.current_time() - t_begin
    record = summarize(
        state,
        window,
        phases,
        completed=not cs.cancelled_caught,
        frames=frames,
        args=args,
        limiter=limiter,
        load=(load_start, os.getloadavg()),
    )
    record["rss_kb"] = rss
    record["engine"] = engine
    record["stalls"] = stall_record or None
    if "window_kb" in rss:
        record["rss_per_stream_kb"] = round((rss["window_kb"] - rss["before_kb"]) / n, 1)
    if args.script:
        record["script"] = _speech.score(state.final_texts, n, args.script)
    return record


# ----------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.capacity", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--streams", type=int, action="extend", nargs="+", required=True, metavar="N",
        help="concurrent streams; repeat (or list several) for a ramp, one step each",
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of paced audio per step"
    )
    parser.add_argument("--frame-ms", type=int, default=100, help="audio per frame")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--aligned", action="store_true", help="all feeders tick at once")
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument(
        "--finish-timeout", type=float, default=60.0,
        help="the sessions' finish-task deadline (an overloaded simulator drains slowly)",
    )  # fmt: skip
    parser.add_argument(
        "--finish-deadline", type=float, default=120.0,
        help="abandon a step this long after its stream window should have ended",
    )  # fmt: skip
    parser.add_argument("--settle", type=float, default=2.0, help="seconds of rest between steps")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--feeding", choices=["drive", "wait"], default="drive",
        help="drive: the pacer's tick hands every frame over (Stream.try_push); "
        "wait: a task per feeder waits for each deadline and awaits push",
    )  # fmt: skip
    parser.add_argument(
        "--script", choices=sorted(_speech.SCRIPTS),
        help="stream this script once from its start (tools/bench/_speech.py) and score "
        "the finals against it, instead of --duration seconds of a looped clip",
    )  # fmt: skip
    parser.add_argument(
        "--sim-url", help="use this running simulator (with --sim-pid) instead of one per step"
    )
    parser.add_argument("--sim-pid", type=int, help="the --sim-url simulator's process id")
    parser.add_argument(
        "--gc", choices=["streams", "default"], default="streams",
        help="streams: engine.runtime.tune_for_streams() (the CLI's and the daemon's "
        "policy); default: CPython's collector as it comes (for an A/B)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if (args.sim_url is None) != (args.sim_pid is None):
        parser.error("--sim-url and --sim-pid go together")
    if args.script:
        spf = RATE * args.frame_ms // 1000
        args.duration = len(_speech.frames(spf, args.script)) * args.frame_ms / 1000
    if args.duration <= 0 or args.frame_ms <= 0 or min(args.streams) <= 0:
        parser.error("--duration, --frame-ms and --streams must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(json=False, level=logging.WARNING)
    if args.gc == "streams":
        tune_for_streams()
    # CPU time of the collecting thread: a pause's own cost, not the time the machine's
    # other processes held the core meanwhile (the wall clock's reading on a busy machine)
    pauses = GcPauses(clock=time.thread_time)
    pauses.start()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket per stream
    result: dict[str, Any] = {
        "tool": "tools/bench/capacity.py",
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "model": MODEL,
            "recognizer": "scripted (tone)",
            "sentences": SENTENCES,
            "rate": RATE,
            "frame_ms": args.frame_ms,
            "duration_s": args.duration,
            "phases": "aligned" if args.aligned else "spread over one frame period",
            "pacing": "engine.pacer" if find_spec("engine.pacer") else "trio.sleep_until",
            "gc": {
                "policy": args.gc,
                "thresholds": list(gc.get_threshold()),
                "pauses": "CPU time of the collecting thread (time.thread_time)",
            },
            "feeding": feeding_used(args.feeding),
            "transport": "engine open_stream (resampler, session), trio-websocket, TCP 127.0.0.1",
            "simulator": "separate process per step (tools.bench.sim_server)",
            "start_limit": {"rate_per_s": START_LIMIT.rate, "burst": START_LIMIT.burst},
            "session_overrides": {
                "connect_timeout_s": args.connect_timeout,
                "start_timeout_s": args.connect_timeout,
                "finish_timeout_s": args.finish_timeout,
            },
        },
        "steps": [],
    }
    for k, n in enumerate(args.streams):
        if k:
            time.sleep(args.settle)
        gc.collect()
        if args.sim_url is not None:
            record = trio.run(run_step, n, args.sim_url, args.sim_pid, args, pauses)
        else:
            sim = SimProcess()
            try:
                record = trio.run(run_step, n, sim.url, sim.pid, args, pauses)
            finally:
                record_exit = sim.close()
            record["sim_exit"] = record_exit
        result["steps"].append(record)
        print(table([record]).splitlines()[-1] if k else table([record]), flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table(result["steps"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
