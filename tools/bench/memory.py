"""Memory per stream: what one open stream of the embedding API holds, and where.

Usage: python -m tools.bench.memory [--streams 500] [--frames 30] [--trace]
       python -m tools.bench.memory --paced 20 [--streams 300] [--trace]

Opens N streams with :func:`engine.stream.open_stream` against a simulator in a
process of its own (``tools.bench.sim_server``, scripted recognizer), pushes
``--frames`` frames of tone-coded speech per stream as fast as the streams take
them (no pacing: this measures what is held, not how fast), lets the results
settle, then opens N more streams the same way. Reported per stream:

* ``rss_kb``: (RSS with 2N streams - RSS with N streams) / N, so the one-time
  costs (imports, the first stream, arenas) are not counted;
* ``gc_tracked_per_stream``: the objects the cyclic garbage collector tracks
  (``gc.get_objects()``, after a full collection) at the same two points, per stream:
  each collection of the oldest generation scans every one of them, so this sets the
  cost of the collector's longest pauses;
* with ``--trace``: ``tracemalloc``'s snapshot diff between the same two points,
  grouped by file:line (top 30), in bytes per stream. Tracing costs memory of its
  own, so the RSS line of a ``--trace`` run is not the number to quote.

The streams stay open (input not ended) while measured: that is the steady state a
24/7 host lives in. One JSON line goes to stdout, the table to stderr.

``--paced S`` measures the way the capacity bench runs instead: one stream is opened
and paced first (the baseline: imports, the pacer, arenas), then N-1 more, all paced
in real time by the run's pacer (``Pacer.drive`` + ``Stream.try_push``, phases spread
over a frame period) for S seconds with results flowing. Reported per stream, over the
N-1 added: ``rss_kb_per_stream`` and ``gc_tracked_per_stream`` in the middle of the
window (steady), and from the peak RSS (``VmHWM``): ``peak_connect_kb_per_stream`` once
every stream has its task (the connect burst), ``peak_kb_per_stream`` at the end of the
window and
``peak_end_kb_per_stream`` after every stream finished (the finish burst).
``replay_s`` is the audio the replay buffers hold mid-window (mean and max seconds per
stream): it depends on the speech and on how late finals come (a run that falls behind
holds more), so ``rss_kb_per_stream_besides_replay_audio`` is the steady figure less
that audio. Between the baseline and the middle of the window, ``--trace`` adds the
tracemalloc diff by line, by file and (with ``--depth 8`` or so) by *owner*: the
innermost line of our code on each allocation's stack, so a task's coroutine or a
channel's state is charged to the line that made it; ``--census`` adds the live objects
by type (``bytes`` found through the objects holding them). Both slow the run: quote
the RSS of a run without them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tracemalloc
from typing import Any

import trio

from engine.config import SessionConfig
from engine.events import Event
from engine.logging import configure
from engine.policy import RATE_LIMITS
from engine.ratelimit import StartLimiter
from engine.stream import Stream, StreamConfig, open_stream
from tools.bench._memory_paced import FRAME_MS, bench_config, fresh, measure_paced
from tools.bench._memtrace import by_file, by_line, count_tasks, gc_tracked, settle
from tools.bench._report import START_LIMIT, rss_kb
from tools.bench._sim import SimProcess
from tools.bench.capacity import RATE, audio_loop


async def _run_stream(
    config: SessionConfig,
    limiter: StartLimiter,
    counts: list[int],
    task_status: trio.TaskStatus[Stream] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One stream, its events counted and dropped; open until cancelled."""
    async with open_stream(StreamConfig(session=config), limiter=limiter) as stream:
        task_status.started(stream)
        del task_status  # it holds the start's temporary nursery: a host lets it go
        event: Event
        async for event in stream.events():
            del event
            counts[0] += 1


async def _push(stream: Stream, loop: list[bytes], frames: int, offset: int) -> None:
    for k in range(frames):
        await stream.push(fresh(loop[(offset + k) % len(loop)]), rate=RATE)


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
        streams.append(await nursery.start(_run_stream, bench_config(i, url), limiter, counts))
    async with trio.open_nursery() as pushers:
        for i, stream in enumerate(streams):
            pushers.start_soon(_push, stream, loop, frames, (first + i) * 7)
    return streams


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Open N streams, measure, open N more, measure; return the per-stream record."""
    loop = audio_loop(RATE * FRAME_MS // 1000)
    limiter = StartLimiter(dict.fromkeys(RATE_LIMITS, START_LIMIT))
    counts = [0]
    n = args.streams
    record: dict[str, Any] = {"streams": n, "frames": args.frames}
    async with trio.open_nursery() as nursery:
        one = await _add_streams(nursery, 0, n, url, limiter, counts, loop, args.frames)
        await settle(args.settle)
        rss1 = rss_kb()
        tracked1 = gc_tracked()
        tasks1 = count_tasks()
        snap1 = tracemalloc.take_snapshot() if args.trace else None
        two = await _add_streams(nursery, n, n, url, limiter, counts, loop, args.frames)
        await settle(args.settle)
        rss2 = rss_kb()
        record["gc_tracked_per_stream"] = round((gc_tracked() - tracked1) / n, 1)
        tasks = count_tasks()
        tasks.subtract(tasks1)
        record["tasks_per_stream"] = round(tasks.total() / n, 2)
        record["task_names"] = {name: round(k / n, 2) for name, k in tasks.items() if k}
        if snap1 is not None:
            snap2 = tracemalloc.take_snapshot()
            record["top"] = by_line(snap1, snap2, n)
            record["traced_kb_per_stream"], record["files"] = by_file(snap1, snap2, n)
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
    parser.add_argument(
        "--census",
        action="store_true",
        help="with --paced: live objects by type (walks the heap: stalls the run for seconds)",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=1,
        help="frames tracemalloc keeps (8: the paced run charges trio's objects to our lines)",
    )
    parser.add_argument(
        "--paced",
        type=float,
        default=0.0,
        metavar="S",
        help="pace N streams in real time for S seconds (results flowing) and measure mid-window",
    )
    args = parser.parse_args(argv)
    if args.paced and args.streams < 2:
        parser.error("--paced needs --streams 2 or more (one is the baseline)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure(json=True, level=logging.WARNING)
    if args.trace:
        tracemalloc.start(args.depth)
    sim = SimProcess()
    try:
        record = trio.run(measure_paced if args.paced else measure, args, sim.url)
    finally:
        sim.close()
        tracemalloc.stop()
    print(json.dumps(record), flush=True)
    print(
        f"{args.streams} streams: {record['rss_kb_per_stream']} KiB RSS per stream, "
        f"{record['tasks_per_stream']} tasks and {record['gc_tracked_per_stream']} "
        "GC-tracked objects per stream",
        file=sys.stderr,
    )
    if args.paced:
        print(
            f"paced: peak {record['peak_connect_kb_per_stream']} KiB per stream after connecting, "
            f"{record['peak_kb_per_stream']} in the window, "
            f"{record['peak_end_kb_per_stream']} with the finish; replay buffers hold "
            f"{record['replay_s']['mean']} s (max {record['replay_s']['max']} s); "
            f"{record['finals_in_window']} finals in the half window; "
            f"{record['rss_kb_per_stream_besides_replay_audio']} KiB per stream besides them",
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
        for row in record.get("owners", []):
            print(
                f"{row['bytes_per_stream']:>8} B {row['blocks_per_stream']:>7} blk  {row['where']}",
                file=sys.stderr,
            )
    for row in record.get("types", []):
        print(
            f"{row['bytes_per_stream']:>8} B {row['objects_per_stream']:>7} obj  {row['type']}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
