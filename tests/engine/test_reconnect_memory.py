"""A reconnect leaves nothing behind: thousands of connect–drop cycles in one process (issue #17).

# real-time: loopback sockets and the process's own heap and RSS (about 35 s here).

Streams of the real session actor talk to the in-process simulator over loopback
TCP, and the simulator drops every connection (a TCP reset, no close frame) on
the second audio frame, so every stream reconnects, again and again. The cyclic
garbage collector is off meanwhile: a dead connection must be freed by reference
counting the moment it dies, because in a large daemon a full collection may not
come for a long time, and until then a connection caught in a reference cycle
keeps its socket (CLOSE-WAIT), its reader's frames, its protocol cores and buffers.

After a warm-up, the slopes of the Python heap (the interpreter's allocated
blocks, ``sys.getallocatedblocks()``: every object and small buffer, what
tracemalloc traces, at no cost per allocation; tracemalloc itself made this run
three times slower) and of RSS (``/proc/self/statm``: native memory too), from a
linear fit against the number of connections over the second half of the run,
must stay under a bound per 1,000 reconnects (not a fixed size); and at every
sample the open sockets are at most the live ones: the listener and trio's own,
plus two per stream (its client and server end).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pathlib
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest
import structlog
import trio

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim.config import SimConfig
from adapters.sim.faults import Drop, FaultPlan
from adapters.sim.server import open_simulator
from engine.actors import session
from engine.config import Secret, SessionConfig
from engine.events import AudioFrame, Event
from engine.policy import RestartPolicy

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [
    pytest.mark.skipif(not pathlib.Path("/proc/self/statm").exists(), reason="needs Linux /proc"),
    pytest.mark.usefixtures("any_transport"),  # both WebSocket client transports
]

STREAMS = 4
WARMUP = 150  # connections before sampling starts (allocator and caches settle)
CYCLES = 700  # connections in all
SAMPLES = 24
RATE = 16000
FRAME = 1600  # 100 ms
# Per 1,000 reconnects, for the second half. Before the first fix (dead connections kept by
# reference cycles, their sockets open) the heap grew by ~440,000 blocks and RSS by
# ~60 MB per 1,000, with 1,505 sockets open at the end. With the cycle through a
# pump's failed send (about one connection in ten: trio's Cancelled of the consumer,
# raised from inside the nursery's exit), ~32,000 blocks and ~4 MB per 1,000 at
# 700 connections; without it, about 0 blocks and 0.00 MB over trio-websocket (-2,200 to
# +1,000 between runs) and +2,700 to +3,300 over the fast transport on a quiet machine
# (the same on c8d9a13 and after the second capacity round; once +5,084 under a loaded
# CI run, so the bound leaves room for that). 700 connections (550 sampled) still
# separate the smallest leak seen from the bound by a factor of four.
MAX_BLOCKS_PER_1000 = 8_000
MAX_RSS_MB_PER_1000 = 4.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:  # read in a sync sample
        return int(statm.read().split()[1]) * _PAGE


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed while we looked
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
    return count


def slope_per_1000(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of (connections, y), per 1,000 connections."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    return float(np.polyfit(x, y, 1)[0]) * 1000


@pytest.fixture(name="no_cyclic_gc")
def _no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def stream_config(url: str, name: str) -> SessionConfig:
    """Reconnect at once, replay little, never ping: all the time goes to connections."""
    return SessionConfig(
        stream=name,
        model="paraformer-realtime-v2",
        url=url,
        api_key=Secret("sk-test"),
        seed=1,
        policy=RestartPolicy(
            max_attempts=None, backoff_base_s=0.001, backoff_cap_s=0.001, healthy_after_s=0.0
        ),
        replay_buffer_s=1.0,
        replay_speed=1000.0,
        ping_interval_s=600.0,
    )


async def one_stream(url: str, name: str) -> None:
    """Feed silence at 20x real time to a session until cancelled."""
    frames_send, frames_recv = trio.open_memory_channel[AudioFrame](0)
    events_send, events_recv = trio.open_memory_channel[Event](16)

    async def feed() -> None:
        async with frames_send:
            for i in range(10**9):
                await trio.sleep(FRAME / RATE / 20)  # real-time: loopback sockets, 20x
                await frames_send.send(AudioFrame(i * FRAME, bytes(2 * FRAME), RATE))

    async def drain() -> None:
        async for _ in events_recv:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        nursery.start_soon(drain)
        await session.run(inbox=frames_recv, outbox=events_send, config=stream_config(url, name))


@pytest.mark.usefixtures("no_cyclic_gc")
async def test_thousands_of_reconnects_leave_no_memory_and_no_socket_behind() -> None:
    """700 connect–drop cycles: flat heap and RSS after warm-up, no stray socket."""
    # Logs are not what this measures (the autouse fixture resets structlog after).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    connections = 0

    def every_connection(n: int) -> FaultPlan:
        nonlocal connections
        connections = n
        return FaultPlan(faults=(Drop(after_frames=3),))  # run-task, audio, drop

    baseline = open_sockets()
    heap: list[tuple[int, int]] = []
    rss: list[tuple[int, int]] = []
    worst = 0
    recognizer = ScriptedRecognizer.tone()
    try:
        with trio.fail_after(100):
            async with (
                open_simulator(SimConfig(), recognizer, faults=every_connection) as sim,
                trio.open_nursery() as nursery,
            ):
                listening = open_sockets() - baseline
                for k in range(STREAMS):
                    nursery.start_soon(one_stream, sim.inference_url, f"s{k}")
                step = (CYCLES - WARMUP) // SAMPLES
                next_sample = WARMUP
                while connections < CYCLES:
                    await trio.sleep(0.01)  # real-time: sampling a live process
                    worst = max(worst, open_sockets() - baseline - listening)
                    if connections < next_sample:
                        continue
                    heap.append((connections, sys.getallocatedblocks()))
                    rss.append((connections, rss_bytes()))
                    next_sample += step
                nursery.cancel_scope.cancel()
    finally:
        await recognizer.aclose()

    second_half = len(heap) // 2
    heap_slope = slope_per_1000(heap[second_half:])
    rss_slope = slope_per_1000(rss[second_half:]) / 1e6
    report = (
        f"heap {heap_slope:+.0f} blocks, RSS {rss_slope:+.2f} MB per 1,000 reconnects; "
        f"{connections} connections"
    )
    print(report)  # shown with -s, and in CI logs on failure
    assert len(heap) >= SAMPLES - 1
    assert worst <= 2 * STREAMS, f"{worst} sockets open for {STREAMS} streams; {report}"
    assert heap_slope < MAX_BLOCKS_PER_1000, report
    assert rss_slope < MAX_RSS_MB_PER_1000, report
