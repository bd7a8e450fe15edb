"""Micro-benchmark: the session's CPU per live frame, by stage, fast lane against awaited lane.

Usage::

    python -m tools.bench.session_path [--streams 200] [--seconds 10] [--transport memory|ws]
                                       [--lanes fast,awaited] [--stages] [--json out.json]

N real session actors (``engine.actors.session.run``) are fed 100 ms frames of
tone-coded speech by ONE pacer task (as ``engine/pacer.py`` does for a run), so
the feeding costs little and what is measured is the session: the inbox, the
pump, the connection, the transport, the results coming back and their mapping.

* ``--transport memory``: each session dials an in-process minimal inference
  server over the in-memory transport (``MemoryTransport``, which has a fast
  lane). The server's share is in the process's CPU too; ``--stages`` separates it.
* ``--transport ws``: each session dials the simulator (``tools.bench.sim_server``,
  a process of its own) over loopback TCP through trio-websocket (no fast lane).

Each lane is measured in turn in the same run (``--lanes``): ``fast`` is the
session's inbox (``open_inlet``: live frames sent inside the pacer's ``send``),
``awaited`` a plain memory channel (every frame through the pump task, the
connection's awaited send). The figure is process CPU time (``time.process_time``)
per frame sent, over a window after every task started: on a loaded machine only
CPU time means anything, and ratios within one run most of all.

``--stages`` wraps the synchronous stages with CPU-time counters
(``time.thread_time_ns``: on a shared machine ``perf_counter_ns`` intervals include
the time the process was not running; the wrappers' own cost, about 1 µs a call,
is in the totals): the synchronous pump
step, the connection's fast send, the transport's ``send_nowait``, the decoding of
server frames, and the mapping of results onto the timeline.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import trio

from adapters.dashscope import connection as connection_module
from adapters.dashscope import messages as m
from adapters.dashscope.inference import InferenceClient, InferenceServer
from adapters.dashscope.memory_transport import MemoryTransport, memory_transport_pair
from adapters.dashscope.transport import Dialer, Headers, Transport
from adapters.recognizers.tonecode import synthesize
from engine.actors import session
from engine.actors._pump import Pump
from engine.actors._transcript import Transcript
from engine.config import Secret, SessionConfig
from engine.events import AudioFrame, Event, Final
from engine.logging import configure
from engine.policy import RateLimit
from engine.ratelimit import StartLimiter

try:  # absent before the fast lane: then only the awaited lane runs ("before" figures)
    from engine.actors._inlet import open_inlet
except ImportError:  # pragma: no cover - an older checkout
    open_inlet = None  # type: ignore[assignment]

RATE = 16000
FRAME = 1600  # 100 ms
SENTENCES = ["good morning", "the weather today is sunny", "the train leaves at seven"]


# ------------------------------------------------------------------ stages


class Stages:
    """Thread CPU time totals and counts per wrapped function (installed only with --stages)."""

    def __init__(self) -> None:
        self.ns: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:  # an older checkout: no such stage
            return
        ns, calls, clock = self.ns, self.calls, time.thread_time_ns

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return original(*args, **kwargs)
            finally:
                ns[label] += clock() - t0
                calls[label] += 1

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def install(self) -> None:
        self.wrap(Pump, "_take", "pump step (sync, all in)")
        self.wrap(connection_module.Connection, "try_send_audio", "connection fast send")
        self.wrap(MemoryTransport, "send_nowait", "transport send_nowait")
        self.wrap(InferenceClient, "receive_data", "decode server frame")
        self.wrap(Transcript, "map", "map result")

    def reset(self) -> None:
        self.ns.clear()
        self.calls.clear()

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def per_frame_us(self, frames: int) -> dict[str, dict[str, float]]:
        return {
            label: {
                "us_per_frame": round(self.ns[label] / 1000 / max(frames, 1), 2),
                "us_per_call": round(self.ns[label] / 1000 / max(self.calls[label], 1), 2),
                "calls": self.calls[label],
            }
            for label in sorted(self.ns)
        }


# ------------------------------------------------------------ memory server


async def minimal_server(end: MemoryTransport) -> None:
    """run-task -> task-started; a partial every 5 frames, a final every 20; finish -> finished."""
    core = InferenceServer()
    frames = 0
    sentence = 0
    while True:
        try:
            data: bytes | str | None = await end.receive()
        except Exception:
            data = None
        core.receive_data(data)
        for event in core.events():
            match event:
                case m.RunTaskRequested():
                    await end.send(core.send(m.StartTask()))
                case m.AudioReceived():
                    frames += 1
                    if frames % 5 == 0:
                        final = frames % 20 == 0
                        begin = (frames - 20 if final else frames - 5) * 100
                        result = {
                            "sentence_id": sentence + 1,
                            "begin_time": max(begin, 0),
                            "end_time": frames * 100 if final else None,
                            "text": "good morning",
                            "sentence_end": final,
                            "heartbeat": False,
                            "words": [],
                        }
                        sentence += final
                        await end.send(core.send(m.SendResult({"sentence": result})))
                case m.FinishRequested():
                    await end.send(core.send(m.FinishTaskReply({"duration": 1})))
                case m.ConnectionClosed():
                    return
        if data is None:
            return


@contextlib.asynccontextmanager
async def dial_memory(
    url: str, headers: Headers, *, connect_timeout: float
) -> AsyncIterator[Transport]:
    client, server = memory_transport_pair(64)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(minimal_server, server)
        try:
            yield client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------- a run


def speech_frames() -> list[bytes]:
    samples = synthesize(SENTENCES, RATE)
    pad = -len(samples) % FRAME
    pcm = np.concatenate([samples, np.zeros(pad, dtype=np.int16)]).astype("<i2").tobytes()
    return [pcm[i : i + 2 * FRAME] for i in range(0, len(pcm), 2 * FRAME)]


def session_config(i: int, url: str) -> SessionConfig:
    return SessionConfig(
        stream=f"s{i}",
        model="paraformer-realtime-v2",
        url=url,
        api_key=Secret("sk-bench"),
        seed=i,
        ping_interval_s=600.0,
    )


async def run_lane(
    lane: str, n: int, seconds: float, url: str, dial: Dialer, stages: Stages | None
) -> dict[str, Any]:
    loop = speech_frames()
    senders: list[Any] = []
    finals = 0
    opened = 0
    frames_sent = 0
    all_opened = trio.Event()

    async def drain(events: trio.MemoryReceiveChannel[Event]) -> None:
        nonlocal finals
        async for event in events:
            finals += isinstance(event, Final)

    # No start budget here: this measures the session, not the service's limits.
    limiter = StartLimiter({"paraformer-realtime-v2": RateLimit(1e6, burst=10**6)})

    async def one(i: int, task_status: trio.TaskStatus[Any]) -> None:
        nonlocal opened
        if lane == "fast":
            assert open_inlet is not None, "this checkout has no fast lane"
            send, recv = open_inlet(16)
        else:
            send, recv = trio.open_memory_channel[AudioFrame](16)  # type: ignore[assignment]
        events_send, events_recv = trio.open_memory_channel[Event](64)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, events_recv)
            stats = await nursery.start(
                functools.partial(
                    session.run,
                    inbox=recv,
                    outbox=events_send,
                    config=session_config(i, url),
                    dial=dial,
                    limiter=limiter,
                )
            )
            task_status.started((send, stats))

    async def pacer(window: Callable[[], None]) -> None:
        nonlocal frames_sent
        slots = 10  # a tick every 10 ms; each stream has its phase
        t0 = trio.current_time()
        tick = 0
        measured = False
        while True:
            await trio.sleep_until(t0 + tick * 0.1 / slots)
            k = tick // slots
            for i in range(tick % slots, n, slots):
                pcm = loop[(i + k) % len(loop)]
                await senders[i].send(AudioFrame(k * FRAME, pcm, RATE, t=trio.current_time()))
                frames_sent += 1
            tick += 1
            if not measured and all_opened.is_set():
                measured = True
                window()

    window_start: dict[str, float] = {}

    def start_window() -> None:
        window_start["cpu"] = time.process_time()
        window_start["frames"] = frames_sent
        if stages is not None:
            stages.reset()

    async with trio.open_nursery() as nursery:
        stats_of = []
        for i in range(n):
            send, stats = await nursery.start(one, i)
            senders.append(send)
            stats_of.append(stats)
        pacer_scope = trio.CancelScope()

        async def run_pacer() -> None:
            with pacer_scope:
                await pacer(start_window)

        nursery.start_soon(run_pacer)
        with trio.fail_after(120):
            # The session signals no "task open": poll its counter (the bench only).
            while sum(s.tasks_opened > 0 for s in stats_of) < n:  # noqa: ASYNC110
                await trio.sleep(0.1)
        opened = n
        all_opened.set()
        await trio.sleep(seconds + 0.2)
        cpu = time.process_time() - window_start["cpu"]
        frames = frames_sent - window_start["frames"]
        pacer_scope.cancel()
        for send in senders:
            send.close()
    fast = sum(getattr(s, "fast_frames", 0) for s in stats_of)
    lag_p99 = max(getattr(s, "send_lag_p99_ms", 0.0) for s in stats_of)
    lag_max = max(getattr(s, "send_lag_max_ms", 0.0) for s in stats_of)
    out: dict[str, Any] = {
        "lane": lane,
        "streams": opened,
        "frames": frames,
        "cpu_s": round(cpu, 3),
        "cpu_us_per_frame": round(cpu * 1e6 / max(frames, 1), 1),
        "fast_lane_share": round(
            fast / max(sum(s.received_samples for s in stats_of) / FRAME, 1), 3
        ),
        "send_lag_p99_ms_worst_stream": round(lag_p99, 3),
        "send_lag_max_ms": round(lag_max, 3),
        "finals": finals,
    }
    if stages is not None:
        out["stages"] = stages.per_frame_us(frames)
    return out


@contextlib.contextmanager
def simulator() -> Any:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.bench.sim_server", "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield f"ws://{info['host']}:{info['port']}/api-ws/v1/inference"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="the measured window")
    parser.add_argument("--transport", choices=["memory", "ws"], default="memory")
    parser.add_argument("--lanes", default="fast,awaited")
    parser.add_argument("--stages", action="store_true", help="CPU time per stage")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    configure(json=False, level=logging.WARNING)
    stages = Stages() if args.stages else None
    if stages is not None:
        stages.install()
    results = []
    with contextlib.ExitStack() as stack:
        if args.transport == "ws":
            from adapters.dashscope.ws import dial_tcp

            url, dial = stack.enter_context(simulator()), dial_tcp
        else:
            url, dial = "ws://memory/api-ws/v1/inference", dial_memory
        for lane in args.lanes.split(","):
            result = trio.run(run_lane, lane, args.streams, args.seconds, url, dial, stages)
            result["transport"] = args.transport
            results.append(result)
            print(json.dumps(result, indent=None if stages is None else 1), flush=True)
    if len(results) == 2:
        a, b = results
        print(
            f"ratio {a['lane']}/{b['lane']}: {a['cpu_us_per_frame'] / max(b['cpu_us_per_frame'], 1e-9):.2f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
