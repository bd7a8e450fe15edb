"""Where a frame's CPU goes: a per-stage micro-breakdown, in µs of CPU per frame or per result.

Usage::

    python -m tools.bench.stages --json tools/bench/results/stages-after.json
    python -m tools.bench.stages --quick             # the smoke test: few iterations
    python -m tools.bench.stages --only frame. --only send.fastws   # some stages only

Per 100 ms frame of 16 kHz mono: *read* (the project's file reader), *resample*
(48 kHz → 16 kHz, and the 16 kHz int16 path), *pace* (a trio timer per stream per
frame, a shared tick), *channel* (one hop between two tasks), *send* (one 3,200 B
frame on a WebSocket to a sink in another process), *frame* (the session's synchronous
path of one live frame, piece by piece: ``_stage_frame.py``). Per result: *decode* (``json``
vs the typed msgspec decoder vs the protocol core), *map* (wire sentence → engine
event), *sink* (JSONL, SRT). Stages use the project's own functions where they exist
and import them defensively: a stage whose code is not in the checkout is reported
``absent`` with the reason, so the same tool measures an old and a new commit.

Every figure is **CPU time** (``time.process_time``: this process, all its threads),
never wall time, over many items, repeated; the JSON keeps the median and the minimum
of the repeats. The machine may be busy: CPU time is robust to that, wall time is
not. The measuring process pins itself to CPU 0 and the sink server to CPU 1
(``--no-pin`` to leave both unpinned).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.bench._measure import Absent, Measure, cpu_of, run_trio
from tools.bench._report import machine_info
from tools.bench._sim import ROOT
from tools.bench._stage_frame import FRAME_PATH_STAGES
from tools.bench._stage_read import read_stage, readahead_stage
from tools.bench._stage_results import RESULT_STAGES
from tools.bench._stage_transport import SEND_STAGES, SinkServer

RATE, FRAME = 16000, 1600  # 100 ms frames


# -------------------------------------------------------------- resample


def resample_stage(in_rate: int) -> Measure:
    """A block of ``in_rate`` audio to a 16 kHz int16 frame, as main's resampler does it."""
    import numpy as np

    from adapters.audio.pcm import to_mono_float32
    from adapters.audio.resample import StreamResampler, float_to_pcm16
    from engine.actors.resampler import Rechunker

    block = (np.sin(np.arange(in_rate // 10) / 7.0) * 8000).astype("<i2").tobytes()

    def measure(items: int) -> float:
        resampler = StreamResampler(in_rate, RATE) if in_rate != RATE else None
        chunker = Rechunker(FRAME)

        def loop() -> None:
            for _ in range(items):
                samples = to_mono_float32(block)
                if resampler is not None:
                    samples = resampler.process(samples)
                chunker.push(float_to_pcm16(samples))

        return cpu_of(loop)

    return measure


def int16_passthrough_stage() -> Measure:
    """16 kHz int16 in, 16 kHz int16 out: ``Pcm16Converter`` (no float round trip)."""
    from adapters.audio.resample import Pcm16Converter

    block = bytes(FRAME * 2)

    def measure(items: int) -> float:
        converter = Pcm16Converter(RATE)

        def loop() -> None:
            for _ in range(items):
                converter.convert(block, RATE)

        return cpu_of(loop)

    return measure


# ------------------------------------------------------------------ pace


def _paced(wait_factory: Callable[[], Callable[[float], Any]], tasks: int = 200) -> Measure:
    """``tasks`` producers, phases spread over a 20 ms period, each waking items/tasks times."""

    def measure(items: int) -> float:
        import trio

        per_task, period = max(1, items // tasks), 0.02

        async def main() -> float:
            wait = wait_factory()
            start = trio.current_time() + 0.05

            async def producer(i: int) -> None:
                phase = start + i * period / tasks
                for k in range(per_task):
                    await wait(phase + k * period)

            t0 = time.process_time()
            async with trio.open_nursery() as nursery:
                for i in range(tasks):
                    nursery.start_soon(producer, i)
            return (time.process_time() - t0) * items / (per_task * tasks)

        return run_trio(main)

    return measure


def timer_stage() -> Measure:
    import trio

    return _paced(lambda: trio.sleep_until)


def event_tick_stage() -> Measure:
    """Reference shape (not project code): waiters parked on a shared 1 ms bucket Event."""
    import math

    import trio

    def factory() -> Callable[[float], Any]:
        buckets: dict[int, trio.Event] = {}

        async def ticker(key: int) -> None:
            await trio.sleep_until(key / 1000)
            buckets.pop(key).set()

        async def wait(due: float) -> None:
            key = math.ceil(due * 1000)
            event = buckets.get(key)
            if event is None:
                event = buckets[key] = trio.Event()
                trio.lowlevel.spawn_system_task(ticker, key)
            await event.wait()

        return wait

    return _paced(factory)


def engine_pacer_stage() -> Measure:
    import importlib

    pacer = importlib.import_module("engine.pacer")
    if not hasattr(pacer, "current_pacer"):
        raise Absent("engine.pacer has no current_pacer()")
    return _paced(lambda: pacer.current_pacer().wait_until)


# --------------------------------------------------------------- channel


def _hop(open_pair: Callable[[], tuple[Any, Any]] | None, pairs: int = 100) -> Measure:
    """``pairs`` producer → consumer edges; each producer sends then yields once.

    With ``open_pair`` None the producers only yield: the loop's own cost, which
    :func:`channel_stage` subtracts.
    """

    def measure(items: int) -> float:
        import trio

        from engine.events import AudioFrame

        per = max(1, items // pairs)
        frame = AudioFrame(0, bytes(FRAME * 2), RATE)

        async def main() -> float:
            async def producer(tx: Any) -> None:
                async with tx:
                    for _ in range(per):
                        await tx.send(frame)
                        await trio.lowlevel.checkpoint()

            async def alone() -> None:
                for _ in range(per):
                    await trio.lowlevel.checkpoint()

            async def consumer(rx: Any) -> None:
                async for _ in rx:
                    pass

            t0 = time.process_time()
            async with trio.open_nursery() as nursery:
                for _ in range(pairs):
                    if open_pair is None:
                        nursery.start_soon(alone)
                        continue
                    tx, rx = open_pair()
                    nursery.start_soon(consumer, rx)
                    nursery.start_soon(producer, tx)
            return (time.process_time() - t0) * items / (per * pairs)

        return run_trio(main)

    return measure


def channel_stage(open_pair: Callable[[], tuple[Any, Any]]) -> Measure:
    pair, alone = _hop(open_pair), _hop(None)
    return lambda items: max(0.0, pair(items) - alone(items))


def memory_channel_stage() -> Measure:
    import trio

    return channel_stage(lambda: trio.open_memory_channel[Any](16))


def inlet_stage() -> Measure:
    from engine.actors._inlet import open_inlet  # type: ignore[import-not-found,unused-ignore]

    return channel_stage(lambda: open_inlet(16))


# ------------------------------------------------------------------ main

Stage = tuple[str, str, Callable[..., Measure]]

FRAME_STAGES: list[Stage] = [
    ("read.file_16k", "open_audio_source, 100 ms blocks of a 16 kHz WAV", lambda d: read_stage(16000, d)),
    ("read.file_48k", "open_audio_source, 100 ms blocks of a 48 kHz WAV", lambda d: read_stage(48000, d)),
    ("read.readahead_16k", "capture's read_pcm16 read-ahead, sliced into 100 ms blocks", lambda d: readahead_stage(16000, 1, d)),
    ("read.readahead_16k_100_streams", "the same, 100 files at once (batched thread hops)", lambda d: readahead_stage(16000, 100, d)),
    ("resample.48k_to_16k", "to_mono_float32 + StreamResampler + float_to_pcm16 + Rechunker", lambda d: resample_stage(48000)),
    ("resample.16k_float_path", "16 kHz int16 via float: to_mono_float32 + float_to_pcm16 + Rechunker", lambda d: resample_stage(16000)),
    ("resample.16k_int16_path", "Pcm16Converter.convert at the same rate (int16 in, int16 out)", lambda d: int16_passthrough_stage()),
    ("pace.timer_per_stream", "trio.sleep_until per stream per frame (200 streams)", lambda d: timer_stage()),
    ("pace.shared_tick_reference", "reference, not project code: 1 ms bucket Event per tick", lambda d: event_tick_stage()),
    ("pace.engine_pacer", "engine.pacer.current_pacer().wait_until (200 streams)", lambda d: engine_pacer_stage()),
    ("channel.memory_channel", "trio memory channel (16): send + the receiver's wake", lambda d: memory_channel_stage()),
    ("channel.inlet", "engine.actors._inlet (queued lane): send + the receiver's wake", lambda d: inlet_stage()),
]  # fmt: skip


def run_stage(make: Callable[[], Measure], items: int, repeats: int) -> dict[str, Any]:
    """One stage's record: µs CPU per item (median and min of the repeats), or absent."""
    try:
        measure = make()
        measure(max(1, items // 10))  # warm-up: imports, caches, first allocations
        us = [1e6 * measure(items) / items for _ in range(repeats)]
    except (Absent, ImportError, AttributeError, TypeError) as exc:
        return {"status": "absent", "reason": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a stage that broke must not hide the others
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    return {
        "status": "ok",
        "us_median": round(statistics.median(us), 2),
        "us_min": round(min(us), 2),
        "items": items,
        "repeats": repeats,
        "loadavg_1m": round(os.getloadavg()[0], 2),  # CPU time inflates on a crowded machine
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.stages", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="few items, one repeat (smoke)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only", action="append", metavar="PREFIX", help="run the stages named so (repeatable)"
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args(argv)
    if args.sink:
        SinkServer.serve_forever()
        return 0
    from engine.logging import configure

    configure(json=False, level=logging.WARNING)  # the engine's end-of-run lines are noise here
    if args.pin and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    scale, repeats = (0.02, 1) if args.quick else (1.0, args.repeats)
    frames, results = max(200, int(20000 * scale)), max(100, int(50000 * scale))
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True)
    code = subprocess.run(
        ["git", "log", "-1", "--format=%h %s", "--", "engine", "adapters"],
        cwd=ROOT,
        capture_output=True,
    )
    record: dict[str, Any] = {
        "tool": "tools/bench/stages.py",
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git.stdout.decode().strip() or "unknown",
        # the last commit that changed the measured code (engine/, adapters/)
        "code_commit": code.stdout.decode().strip()[:100] or "unknown",
        "machine": machine_info(),
        "method": "CPU time (time.process_time) per item, median and min of the repeats",
        "per_frame": {},
        "per_result": {},
    }
    with tempfile.TemporaryDirectory() as tmp, SinkServer(pin=args.pin) as sink:
        directory = Path(tmp)
        stages = [*FRAME_STAGES, *SEND_STAGES(sink.url), *FRAME_PATH_STAGES(sink.url)]
        for name, what, make in _chosen(stages, args.only):
            rec = run_stage(lambda m=make: m(directory), frames, repeats)  # type: ignore[misc]
            record["per_frame"][name] = {"what": what, **rec}
            print(f"{name:32} {_show(rec)}", flush=True)
        for name, what, make in _chosen(RESULT_STAGES, args.only):
            rec = run_stage(lambda m=make: m(directory), results, repeats)  # type: ignore[misc]
            record["per_result"][name] = {"what": what, **rec}
            print(f"{name:32} {_show(rec)}", flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def _chosen(stages: list[Stage], only: list[str] | None) -> list[Stage]:
    if not only:
        return stages
    return [stage for stage in stages if stage[0].startswith(tuple(only))]


def _show(rec: dict[str, Any]) -> str:
    if rec["status"] != "ok":
        return f"{rec['status']} ({rec['reason']})"
    return f"{rec['us_median']:8.2f} µs (min {rec['us_min']:.2f})"


if __name__ == "__main__":
    sys.exit(main())
