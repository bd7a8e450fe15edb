"""The receive stage of ``tools/bench/stages.py``: one result message through a connection.

``receive.connection_burst{N}``: 200 inference connections of the project's own
(``InferenceConnection`` over the fast transport, each on a socket pair), started,
their consumers parked with a taker armed, as a session's are. The driver writes one
``result-generated`` frame to each of N connections' far ends, then waits until the
takers have taken those N; round after round, across the connections. The CPU per
message is everything the process spends: the driver's ``send`` system call and its
wait (also in ``receive.floor``), the socket wait, the read, the WebSocket parser, the
protocol core, the interpretation, the liveness bookkeeping and the results lane. Run
from a checkout without a read hub, it measures that checkout's per-connection reader,
so main and a branch compare directly.

``receive.all_in_burst{N}``: the same, with each connection's consumer doing what a
session and its embedder do with a result: the lane's taker maps it onto the timeline
(``Transcript.map``) and emits the event through a ``Report``; a task per stream reads
the events with ``Stream.events()``. So the figure is one result all in, from the socket
to the consumer's hands, its wake included.

``receive.floor``: the driver's ``send`` and a plain ``recv`` of the same frame, no
trio: what no reader can go below.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tools.bench._measure import Measure, cpu_of, run_trio

CONNECTIONS = 200
MAX_MESSAGES = 4000  # per measurement (scaled to the items asked for)


def _server_frames() -> tuple[bytes, bytes]:
    from adapters.websocket import SERVER, WebSocketCore
    from tools.bench._stage_results import RESULT, STARTED

    core = WebSocketCore(SERVER)
    return core.send_message(STARTED), core.send_message(RESULT)


def floor_stage(directory: Path) -> Measure:
    _, result = _server_frames()

    def measure(items: int) -> float:
        ours, theirs = socket.socketpair()
        with ours, theirs:

            def loop() -> None:
                for _ in range(items):
                    theirs.send(result)
                    ours.recv(65536)

            return cpu_of(loop)

    return measure


def _consumer_chain(conn: Any, count: Any) -> tuple[Any, Any]:
    """What a session does with one connection's results, as ``(taker, consume)``: the
    taker maps each result (``Transcript.map``) and emits the event through a
    ``Report``, as the pump's lane step does; ``consume`` reads the events the way an
    embedder does (``Stream.events()``) and calls ``count`` per event."""
    import trio

    from engine import Secret, SessionConfig
    from engine.actors._report import Report
    from engine.actors._task import TaskResults
    from engine.actors._transcript import Transcript
    from engine.actors.resampler import ResamplerStats
    from engine.events import Event, StreamStarted
    from engine.stream import InputLedger, Stream, StreamConfig
    from engine.timeline import TaskClock

    send, receive = trio.open_memory_channel[Event](64)
    report = Report(send, "s", 16000)
    transcript, results = Transcript(16000, utterance=False, transcribes=True), TaskResults()
    clock = TaskClock(0, 16000)
    clock.advance(16000 * 600)
    session = SessionConfig(stream="s", model="m", url="ws://x/", api_key=Secret("sk"))
    stream = Stream(
        StreamConfig(session=session),
        *(None, None),  # no input side: events() reads only the events edge
        receive,
        None,
        ResamplerStats(),
        InputLedger(),
        StreamStarted("bench", "m", 16000),
    )

    def taker(result: Any) -> bool:
        if not report.has_room():
            return False
        event = transcript.map(results, clock, result, 0, "t1").event
        if event is not None:
            report.emit_nowait(event)
        return True

    async def consume() -> None:
        async for _ in stream.events():
            count()

    return taker, consume


def connection_stage(burst: int, *, chain: bool = False) -> Any:
    def make(directory: Path) -> Measure:
        import trio

        from adapters.dashscope._fast_transport import FastTransport
        from adapters.dashscope._pipes import SocketPipe
        from adapters.dashscope.connection import LinkSettings
        from adapters.dashscope.inference_connection import InferenceConnection
        from adapters.websocket import CLIENT, WebSocketCore

        started, result = _server_frames()
        settings = LinkSettings(
            url="ws://pair/",
            api_key="sk",
            user_agent="bench",
            rate=16000,
            ping_interval_s=600.0,
            stall_s=600.0,
        )

        def dialer(sock: socket.socket) -> Any:
            @contextlib.asynccontextmanager
            async def dial(url: str, headers: Any, *, connect_timeout: float) -> AsyncIterator[Any]:
                pipe = SocketPipe(sock)
                try:
                    yield FastTransport(pipe, WebSocketCore(CLIENT), url)
                finally:
                    with trio.CancelScope(shield=True):
                        await pipe.aclose()

            return dial

        def measure(items: int) -> float:
            n_items = min(items, MAX_MESSAGES)  # each round waits for a wake: bound the wall time

            async def main() -> float:
                pairs = [socket.socketpair() for _ in range(CONNECTIONS)]
                far = [theirs for _, theirs in pairs]
                for theirs in far:
                    theirs.setblocking(False)
                    theirs.send(started)  # there before the run-task: the start is at once
                conns = [
                    InferenceConnection(
                        settings=settings,
                        dial=dialer(ours),
                        task_id="t1",
                        model="paraformer-realtime-v2",
                        parameters={},
                    )
                    for ours, _ in pairs
                ]
                taken = 0
                target = 0
                done = trio.Event()

                def count() -> None:
                    nonlocal taken
                    taken += 1
                    if taken == target:
                        done.set()

                def counter(r: object) -> bool:
                    count()
                    return True

                async def consume(conn: InferenceConnection, taker: Any) -> None:
                    with contextlib.suppress(trio.EndOfChannel):
                        while True:
                            await conn.results.receive_or_take(taker)

                async with trio.open_nursery() as nursery:
                    for conn in conns:
                        await nursery.start(conn.run)
                        taker = counter
                        if chain:
                            taker, events = _consumer_chain(conn, count)
                            nursery.start_soon(events)
                        nursery.start_soon(consume, conn, taker)
                    for theirs in far:
                        theirs.recv(65536)  # the run-task
                    await trio.sleep(0.05)  # real-time: every reader parked
                    t0 = time.process_time()
                    sent = 0
                    while sent < n_items:
                        n = min(burst, n_items - sent)
                        target, done = taken + n, trio.Event()
                        for k in range(sent, sent + n):
                            far[k % CONNECTIONS].send(result)
                        sent += n
                        await done.wait()
                    cpu = time.process_time() - t0
                    nursery.cancel_scope.cancel()
                for theirs in far:
                    theirs.close()
                return cpu

            return run_trio(main) * items / n_items

        return measure

    return make


RECEIVE_STAGES: list[tuple[str, str, Any]] = [
    ("receive.floor", "the driver's send + a plain recv of one frame (no trio)", floor_stage),
    (
        "receive.connection_burst1",
        "one result through an InferenceConnection's receive path, 1 socket ready per wake",
        connection_stage(1),
    ),
    (
        "receive.connection_burst8",
        "the same, 8 sockets ready per wake (of 200 connections)",
        connection_stage(8),
    ),
    (
        "receive.all_in_burst1",
        "one result from the socket to Stream.events(): receive path, lane, "
        "Transcript.map, Report, the consumer's wake; 1 socket ready per wake",
        connection_stage(1, chain=True),
    ),
    (
        "receive.all_in_burst8",
        "the same, 8 sockets ready per wake (of 200 connections)",
        connection_stage(8, chain=True),
    ),
]
