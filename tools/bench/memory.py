"""Memory per stream: what one open stream of the embedding API holds, and where.

Usage: python -m tools.bench.memory [--streams 500] [--frames 30] [--trace]

Opens N streams with :func:`engine.stream.open_stream` against a simulator in a
process of its own (``tools.bench.sim_server``, scripted recognizer), pushes
``--frames`` frames of tone-coded speech per stream as fast as the streams take
them (no pacing: this measures what is held, not how fast), lets the results
settle, then opens N more streams the same way. Reported per stream:

* ``rss_kb``: (RSS with 2N streams - RSS with N streams) / N, so the one-time
  costs (imports, the first stream, arenas) are not counted;
* with ``--trace``: ``tracemalloc``'s snapshot diff between the same two points,
  grouped by file:line (top 30), in bytes per stream. Tracing costs memory of its
  own, so the RSS line of a ``--trace`` run is not the number to quote.

The streams stay open (input not ended) while measured: that is the steady state a
24/7 host lives in. One JSON line goes to stdout, the table to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import logging
import sys
import tracemalloc
from collections import Counter
from typing import Any

import trio

from engine.config import Secret, SessionConfig
from engine.events import Event
from engine.logging import configure
from engine.policy import RATE_LIMITS
from engine.ratelimit import StartLimiter
from engine.stream import Stream, StreamConfig, open_stream
from tools.bench._report import START_LIMIT, rss_kb
from tools.bench._sim import SimProcess
from tools.bench.capacity import MODEL, RATE, audio_loop

FRAME_MS = 100


async def _run_stream(
    config: SessionConfig,
    limiter: StartLimiter,
    counts: list[int],
    task_status: trio.TaskStatus[Stream] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One stream, its events counted and dropped; open until cancelled."""
    async with open_stream(StreamConfig(session=config), limiter=limiter) as stream:
        task_status.started(stream)
        event: Event
        async for event in stream.events():
            del event
            counts[0] += 1


async def _push(stream: Stream, loop: list[bytes], frames: int, offset: int) -> None:
    for k in range(frames):
        await stream.push(loop[(offset + k) % len(loop)], rate=RATE)


async def _add_streams(
    nursery: trio.Nursery,
    first: int,
    n: int,
    url: str,
    limiter: StartLimiter,
    counts: list[int],
    loop: list[bytes],
    frames: int,
) -> list[Stream]:
    streams: list[Stream] = []
    for i in range(first, first + n):
        config = SessionConfig(
            stream=f"s{i}",
            model=MODEL,
            url=url,
            api_key=Secret("bench"),
            frame_ms=FRAME_MS,
            connect_timeout_s=60.0,
            start_timeout_s=60.0,
            seed=i,
        )
        streams.append(await nursery.start(_run_stream, config, limiter, counts))
    async with trio.open_nursery() as pushers:
        for i, stream in enumerate(streams):
            pushers.start_soon(_push, stream, loop, frames, (first + i) * 7)
    return streams


async def _settle(seconds: float) -> None:
    await trio.sleep(seconds)
    gc.collect()


def _count_tasks() -> Counter[str]:
    """Every task of this trio run (the tree under the root task), by name."""
    todo = [trio.lowlevel.current_root_task()]
    count: Counter[str] = Counter()
    while todo:
        task = todo.pop()
        if task is None:
            continue
        count[task.name.rsplit(".", 1)[-1]] += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


def _top(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int) -> list[dict[str, Any]]:
    rows = []
    for stat in after.compare_to(before, "lineno")[:30]:
        frame = stat.traceback[0]
        rows.append(
            {
                "where": f"{frame.filename.split('/work/')[-1]}:{frame.lineno}",
                "code": linecache.getline(frame.filename, frame.lineno).strip()[:70],
                "bytes_per_stream": round(stat.size_diff / n),
                "blocks_per_stream": round(stat.count_diff / n, 2),
            }
        )
    return rows


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Open N streams, measure, open N more, measure; return the per-stream record."""
    loop = audio_loop(RATE * FRAME_MS // 1000)
    limiter = StartLimiter(dict.fromkeys(RATE_LIMITS, START_LIMIT))
    counts = [0]
    n = args.streams
    record: dict[str, Any] = {"streams": n, "frames": args.frames}
    async with trio.open_nursery() as nursery:
        one = await _add_streams(nursery, 0, n, url, limiter, counts, loop, args.frames)
        await _settle(args.settle)
        rss1 = rss_kb()
        tasks1 = _count_tasks()
        snap1 = tracemalloc.take_snapshot() if args.trace else None
        two = await _add_streams(nursery, n, n, url, limiter, counts, loop, args.frames)
        await _settle(args.settle)
        rss2 = rss_kb()
        tasks = _count_tasks()
        tasks.subtract(tasks1)
        record["tasks_per_stream"] = round(tasks.total() / n, 2)
        record["task_names"] = {name: round(k / n, 2) for name, k in tasks.items() if k}
        if snap1 is not None:
            snap2 = tracemalloc.take_snapshot()
            record["top"] = _top(snap1, snap2, n)
            by_file = snap2.compare_to(snap1, "filename")
            record["traced_kb_per_stream"] = round(
                sum(st.size_diff for st in by_file) / 1024 / n, 1
            )
            record["files"] = {
                stat.traceback[0].filename.split("/work/")[-1]: round(stat.size_diff / n)
                for stat in by_file[:15]
            }
        record["rss_kb"] = {"n": rss1, "2n": rss2}
        record["rss_kb_per_stream"] = round((rss2 - rss1) / n, 1)
        stats = [s.statistics() for s in (*one, *two)]
        record["buffered_frames_mean"] = round(
            sum(s.buffered_frames for s in stats) / len(stats), 1
        )
        record["live_tasks_mean"] = round(sum(s.live_tasks for s in stats) / len(stats), 2)
        record["events"] = counts[0]
        nursery.cancel_scope.cancel()
    return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.memory", description=__doc__)
    parser.add_argument("--streams", type=int, default=500, help="N (the run opens 2N)")
    parser.add_argument("--frames", type=int, default=30, help="100 ms frames pushed per stream")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds for results to arrive")
    parser.add_argument("--trace", action="store_true", help="tracemalloc top 30 by file:line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(json=True, level=logging.WARNING)
    if args.trace:
        tracemalloc.start(1)
    sim = SimProcess()
    try:
        record = trio.run(measure, args, sim.url)
    finally:
        sim.close()
        tracemalloc.stop()
    print(json.dumps(record), flush=True)
    print(
        f"{args.streams} streams: {record['rss_kb_per_stream']} KiB RSS per stream, "
        f"{record['tasks_per_stream']} tasks per stream",
        file=sys.stderr,
    )
    if "top" in record:
        print(f"traced: {record['traced_kb_per_stream']} KiB per stream", file=sys.stderr)
        for name, size in record["files"].items():
            print(f"{size:>8} B  {name}", file=sys.stderr)
        for row in record["top"]:
            print(
                f"{row['bytes_per_stream']:>8} B {row['blocks_per_stream']:>7} blk  "
                f"{row['where']:<48} {row['code']}",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
