"""The memory benchmark's paced run (``python -m tools.bench.memory --paced S``).

One stream is opened and paced first (the baseline: imports, the pacer, arenas), then
N-1 more; every stream is paced in real time by the run's pacer (``Pacer.drive`` and
``Stream.try_push``, phases spread over a frame period) with results flowing. See
:mod:`tools.bench.memory` for what is reported.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from typing import Any

import trio

from engine.config import Secret, SessionConfig
from engine.events import Event, Final, SessionOpened
from engine.pacer import current_pacer
from engine.policy import RATE_LIMITS
from engine.ratelimit import StartLimiter
from engine.stream import Stream, StreamConfig, open_stream
from tools.bench._memtrace import (
    by_file,
    by_line,
    by_owner,
    census,
    census_diff,
    count_tasks,
    gc_tracked,
    rss_peak_kb,
    settle,
)
from tools.bench._report import START_LIMIT, rss_kb
from tools.bench.capacity import MODEL, RATE, audio_loop

__all__ = ["FRAME_MS", "bench_config", "fresh", "measure_paced"]

FRAME_MS = 100


def bench_config(i: int, url: str) -> SessionConfig:
    """Stream ``i``'s session: the scripted simulator at ``url``, 100 ms frames."""
    return SessionConfig(
        stream=f"s{i}",
        model=MODEL,
        url=url,
        api_key=Secret("bench"),
        frame_ms=FRAME_MS,
        connect_timeout_s=60.0,
        start_timeout_s=60.0,
        seed=i,
    )


class _Tally:
    """A paced run's event counts, over every stream."""

    __slots__ = ("all_opened", "events", "finals", "opened", "want")

    def __init__(self) -> None:
        self.events = 0
        self.opened = 0
        self.finals = 0
        self.want = 0  # streams that must have a task before pacing starts
        self.all_opened = trio.Event()

    def expect(self, streams: int) -> trio.Event:
        """An event set once ``streams`` streams in all have their task."""
        self.want, self.all_opened = streams, trio.Event()
        if self.opened >= streams:
            self.all_opened.set()
        return self.all_opened


async def _paced_stream(
    config: SessionConfig,
    limiter: StartLimiter,
    tally: _Tally,
    task_status: trio.TaskStatus[Stream] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One stream, its events counted and dropped, until its input ends and it finishes."""
    async with open_stream(StreamConfig(session=config), limiter=limiter) as stream:
        task_status.started(stream)
        del task_status  # it holds the start's temporary nursery: a host lets it go
        event: Event
        async for event in stream.events():
            tally.events += 1
            if isinstance(event, SessionOpened):
                tally.opened += 1
                if tally.opened >= tally.want:
                    tally.all_opened.set()
            elif isinstance(event, Final):
                tally.finals += 1
            del event


async def _paced_feed(
    stream: Stream, loop: list[bytes], offset: int, start: float, stop: trio.Event
) -> None:
    """Hand a frame over every 100 ms from ``start`` (the pacer's step), until ``stop``."""
    drive = current_pacer().drive
    frame_s = FRAME_MS / 1000.0
    k = 0
    refused: bytes | None = None

    def step(now: float) -> float | None:
        nonlocal k, refused
        if stop.is_set():
            return None
        pcm = fresh(loop[(offset + k) % len(loop)])
        k += 1
        if not stream.try_push(pcm, rate=RATE):
            refused = pcm
            return None
        return start + k * frame_s

    try:
        while not stop.is_set():
            await drive(step, start + k * frame_s)
            if refused is not None:
                pcm, refused = refused, None
                await stream.push(pcm, rate=RATE)
    finally:
        await stream.end_input()


async def _open_paced(
    nursery: trio.Nursery,
    indices: range,
    url: str,
    limiter: StartLimiter,
    tally: _Tally,
    loop: list[bytes],
    stop: trio.Event,
) -> list[Stream]:
    """Open streams, wait (bounded) until every one has its task, then pace them all."""
    opened = tally.expect(indices.stop)
    streams = [
        await nursery.start(_paced_stream, bench_config(i, url), limiter, tally) for i in indices
    ]
    with trio.move_on_after(60.0):
        await opened.wait()
    frame_s = FRAME_MS / 1000.0
    start = trio.current_time() + 0.2
    for j, stream in enumerate(streams):
        phase = j * frame_s / len(streams)  # spread over a frame period, as a live host's
        nursery.start_soon(_paced_feed, stream, loop, (indices.start + j) * 7, start + phase, stop)
    return streams


def fresh(pcm: bytes) -> bytes:
    """A copy of a frame of the loop, as a source's read makes one: the engine keeps the
    producer's ``bytes`` (no copy), so streams pushing the loop's own frames would share
    their replay audio, and the replay buffers would cost nothing."""
    return bytes(memoryview(pcm))


def _replay_s(streams: list[Stream]) -> dict[str, float]:
    held = [s.stats.buffered_samples / RATE for s in streams]
    return {"mean": round(sum(held) / len(held), 2), "max": round(max(held), 2)}


async def measure_paced(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """1 paced stream (the baseline), then N-1 more; measure mid-window and at the peaks."""
    loop = audio_loop(RATE * FRAME_MS // 1000)
    limiter = StartLimiter(dict.fromkeys(RATE_LIMITS, START_LIMIT))
    tally, stop = _Tally(), trio.Event()
    n, half = args.streams, args.paced / 2
    record: dict[str, Any] = {"streams": n, "paced_s": args.paced}
    async with trio.open_nursery() as nursery:
        await _open_paced(nursery, range(1), url, limiter, tally, loop, stop)
        await settle(args.settle)
        base = {"rss": rss_kb(), "peak": rss_peak_kb(), "finals": tally.finals}
        tracked0 = gc_tracked()
        tasks0 = count_tasks()
        snap0 = tracemalloc.take_snapshot() if args.trace else None
        types0 = census() if args.census else None  # snap0 is alive at both censuses
        streams = await _open_paced(nursery, range(1, n), url, limiter, tally, loop, stop)
        record["opened"] = tally.opened
        peak_connect = rss_peak_kb()
        await trio.sleep(half)
        gc.collect()
        rss_mid = rss_kb()
        record["gc_tracked_per_stream"] = round((gc_tracked() - tracked0) / (n - 1), 1)
        record["replay_s"] = _replay_s(streams)
        record["finals_in_window"] = tally.finals - base["finals"]
        tasks = count_tasks()
        tasks.subtract(tasks0)
        record["tasks_per_stream"] = round(tasks.total() / (n - 1), 2)
        if types0 is not None:
            # first: the tops' source lines (linecache) are not the streams'
            record["types"] = census_diff(types0, census(), n - 1)
        if snap0 is not None:
            snap1 = tracemalloc.take_snapshot()
            record["top"] = by_line(snap0, snap1, n - 1)
            record["owners"] = by_owner(snap0, snap1, n - 1)
            record["traced_kb_per_stream"], record["files"] = by_file(snap0, snap1, n - 1)
            del snap0, snap1
        await trio.sleep(half)
        peak_window = rss_peak_kb()
        stop.set()
    peak_end = rss_peak_kb()
    per = n - 1
    record["rss_kb"] = {
        **base,
        "peak_connect": peak_connect,
        "mid": rss_mid,
        "peak_window": peak_window,
        "peak_end": peak_end,
    }
    record["rss_kb_per_stream"] = round((rss_mid - base["rss"]) / per, 1)
    # The replay audio depends on the speech and on how late the finals come (a loaded
    # run holds more); the rest is what a stream costs whatever it says.
    replay_kb = record["replay_s"]["mean"] * RATE * 2 / 1024
    record["rss_kb_per_stream_besides_replay_audio"] = round(
        record["rss_kb_per_stream"] - replay_kb, 1
    )
    record["peak_connect_kb_per_stream"] = round((peak_connect - base["peak"]) / per, 1)
    record["peak_kb_per_stream"] = round((peak_window - base["peak"]) / per, 1)
    record["peak_end_kb_per_stream"] = round((peak_end - base["peak"]) / per, 1)
    record["events"] = tally.events
    return record
