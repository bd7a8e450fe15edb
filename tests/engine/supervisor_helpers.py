"""A content-addressed fake inference server for supervisor tests (MockClock, in memory).

Every 100 ms frame the tests feed carries its index in every sample (``index + 1``
as int16; 0 is keep-alive padding). The fake server decodes indices from the
audio it receives, so what it recognizes depends only on the audio, never on
where a task started: a group of ``GROUP`` consecutive frames is the sentence
``"group k"``, final once all its frames arrived in one task. That makes
"no final lost, none duplicated, same global times" checkable exactly across
reconnects, replays and rotations.

Each connection follows a :class:`Behaviour` (the last one repeats).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
import trio_websocket

from adapters.dashscope import messages as m
from adapters.dashscope.inference import InferenceServer
from adapters.dashscope.memory_transport import MemoryTransport, memory_transport_pair
from adapters.dashscope.transport import Dialer, Headers, Transport
from adapters.dashscope.ws import WebSocketTransport, rejected, websocket_dialer
from engine.actors import session
from engine.actors._inlet import Inbox, Inlet, open_inlet
from engine.config import Secret, SessionConfig
from engine.errors import Disconnected
from engine.events import AudioFrame, Event
from engine.ratelimit import StartLimiter

RATE = 16000
FRAME = 1600  # samples per 100 ms frame
GROUP = 5  # frames per sentence


def frame_pcm(index: int, frame: int = FRAME) -> bytes:
    """A frame whose first two samples hold ``index + 1`` (32 bits); zeros are padding.

    The other samples are loud (1000): the session must treat these frames as audio
    that could hold words, never as silence it may commit unheard."""
    pcm = bytearray(_loud(frame))
    pcm[0:4] = (index + 1).to_bytes(4, "little")
    return bytes(pcm)


@functools.cache
def _loud(frame: int) -> bytes:
    """``frame`` samples of 1000 (speech-loud, not silence); made once per size (soaks
    make tens of thousands of frames)."""
    return np.full(frame, 1000, dtype="<i2").tobytes()


@dataclass
class Behaviour:
    """What one connection does. Counts are frames received in that task."""

    reject: int | None = None  # HTTP status at the upgrade
    fail_after: int | None = None
    fail_code: str = "InternalError"
    close_after: int | None = None
    mute_after: int | None = (
        None  # keep reading, never send anything again (not even task-finished)
    )
    deaf_after: int | None = None  # stop reading (pings go unanswered)
    never_finish: bool = False
    never_start: bool = False
    pauses: dict[int, float] = field(default_factory=dict)  # after frame n: stop reading for s


@dataclass
class Connection:
    number: int
    opened_at: float
    closed_at: float | None = None
    units: list[int] = field(default_factory=list)  # decoded frame indices, -1 = padding
    received: int = 0  # real (non-padding) frames
    frame_times: list[float] = field(default_factory=list)
    run_task: m.RunTaskRequested | None = None


class ContentServer:
    def __init__(self, *behaviours: Behaviour, frame: int = FRAME) -> None:
        self.behaviours = list(behaviours) or [Behaviour()]
        self.connections: list[Connection] = []
        self.frame = frame  # samples per encoded frame
        self.keep_history = True  # per-connection unit logs (off for soaks)

    def behaviour(self, number: int) -> Behaviour:
        return self.behaviours[min(number, len(self.behaviours) - 1)]

    @property
    def dial(self) -> Dialer:
        """The session's dialer: :meth:`open_websocket` through the real WebSocket edge."""
        return websocket_dialer(self.open_websocket)

    @contextlib.asynccontextmanager
    async def open_websocket(
        self, url: str, headers: list[tuple[bytes, bytes]], *, connect_timeout: float
    ) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        number = len(self.connections)
        conn = Connection(number, trio.current_time())
        self.connections.append(conn)
        behaviour = self.behaviour(number)
        client_stream, server_stream = trio.testing.memory_stream_pair()

        async def serve() -> None:
            request = await trio_websocket.wrap_server_stream(nursery, server_stream)  # type: ignore[arg-type]
            if behaviour.reject is not None:
                await request.reject(behaviour.reject, body=b"{}")
                return
            ws = await request.accept()
            try:
                await self.converse(WebSocketTransport(ws), conn, behaviour)
            finally:
                conn.closed_at = trio.current_time()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    client_stream,
                    "sim",
                    "/api-ws/v1/inference",
                    extra_headers=headers,  # type: ignore[arg-type]
                )
                try:
                    yield ws
                finally:
                    with trio.move_on_after(2.0):
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        except* trio_websocket.ConnectionRejected as group:
            raise group.exceptions[0] from None

    async def converse(self, ws: ServerEnd, conn: Connection, b: Behaviour) -> None:
        core = InferenceServer()
        pending = bytearray()
        task_ms = 0
        seen: dict[int, int] = {}  # frame index -> task ms where it began
        while True:
            try:
                data = await ws.receive()
            except Disconnected:
                return
            core.receive_data(data)
            for event in core.events():
                match event:
                    case m.RunTaskRequested():
                        conn.run_task = event
                        if b.never_start:
                            await trio.sleep_forever()
                        await ws.send(core.send(m.StartTask()))
                    case m.AudioReceived(pcm):
                        pending += pcm
                        unit_bytes = 2 * self.frame
                        while len(pending) >= unit_bytes:
                            index = int.from_bytes(pending[0:4], "little") - 1
                            del pending[:unit_bytes]
                            conn.received += index >= 0
                            if self.keep_history:
                                conn.units.append(index)
                                conn.frame_times.append(trio.current_time())
                            if index >= 0:
                                seen[index] = task_ms
                                seen.pop(index - 2 * GROUP, None)  # bounded
                            task_ms += self.frame * 1000 // RATE
                            await self.after_unit(ws, core, conn, b, index, seen, task_ms)
                    case m.FinishRequested():
                        muted = b.mute_after is not None and conn.received >= b.mute_after
                        if b.never_finish or muted:
                            continue
                        await ws.send(core.send(m.FinishTaskReply({"duration": 1})))
                    case m.ConnectionClosed():
                        return

    async def after_unit(
        self,
        ws: ServerEnd,
        core: InferenceServer,
        conn: Connection,
        b: Behaviour,
        index: int,
        seen: dict[int, int],
        task_ms: int,
    ) -> None:
        received = conn.received
        if index >= 0 and received in b.pauses:
            await trio.sleep(b.pauses[received])  # the transport's queue fills meanwhile
        if b.fail_after is not None and received >= b.fail_after:
            await ws.send(core.send(m.FailTask(b.fail_code, "scripted failure")))
            await ws.aclose()
            await trio.sleep_forever()
        if b.close_after is not None and received >= b.close_after:
            await ws.aclose(1011)
            await trio.sleep_forever()
        if b.deaf_after is not None and received >= b.deaf_after:
            await trio.sleep_forever()  # stop reading: trio-websocket's queue fills, pongs stop
        if b.mute_after is not None and received >= b.mute_after:
            return
        if index < 0:
            return
        group = index // GROUP
        first = group * GROUP
        if index == first:
            await ws.send(core.send(m.SendResult(_sentence(group, seen[first], None, "group"))))
        if index % GROUP == GROUP - 1 and all(i in seen for i in range(first, index + 1)):
            await ws.send(
                core.send(m.SendResult(_sentence(group, seen[first], task_ms, f"group {group}")))
            )


def _sentence(group: int, begin: int, end: int | None, text: str) -> dict[str, Any]:
    return {
        "sentence": {
            "sentence_id": group + 1,
            "begin_time": begin,
            "end_time": end,
            "text": text,
            "sentence_end": end is not None,
            "heartbeat": False,
            "words": [],
        }
    }


def config(**kw: Any) -> SessionConfig:
    base: dict[str, Any] = {
        "stream": "s",
        "model": "paraformer-realtime-v2",
        "url": "ws://sim/api-ws/v1/inference",
        "api_key": Secret("sk-test"),
        "seed": 7,
    }
    return SessionConfig(**(base | kw))


async def run_stream(
    server: ContentServer,
    frames: int,
    *,
    cfg: SessionConfig | None = None,
    pause: tuple[int, float] | None = None,
    limiter: StartLimiter | None = None,
    drain: trio.Event | None = None,
    lane: bool = True,
) -> list[Event]:
    """Feed ``frames`` paced frames (optionally pausing ``pause[1]`` s before frame ``pause[0]``).

    ``lane``: through the session's inbox with its synchronous lane (as a stream
    builds it), else through a plain memory channel (the awaited lane only).
    """
    frames_send: Inlet | trio.MemorySendChannel[AudioFrame]
    frames_recv: Inbox | trio.MemoryReceiveChannel[AudioFrame]
    if lane:
        frames_send, frames_recv = open_inlet(16)
    else:
        frames_send, frames_recv = trio.open_memory_channel[AudioFrame](16)
    events_send, events_recv = trio.open_memory_channel[Event](1000)
    out: list[Event] = []

    async def feed() -> None:
        async with frames_send:
            t0 = trio.current_time()
            shift = 0.0
            for i in range(frames):
                if pause is not None and i == pause[0]:
                    shift = pause[1]
                await trio.sleep_until(t0 + shift + i * 0.1)
                await frames_send.send(AudioFrame(i * FRAME, frame_pcm(i), RATE))

    async def collect() -> None:
        async for event in events_recv:
            out.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        nursery.start_soon(collect)
        await session.run(
            inbox=frames_recv,
            outbox=events_send,
            config=cfg or config(),
            dial=server.dial,
            limiter=limiter,
            drain=drain,
        )
    return out


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def expected_finals(frames: int) -> list[tuple[str, int, int]]:
    return [
        (f"group {g}", g * GROUP * FRAME, (g + 1) * GROUP * FRAME) for g in range(frames // GROUP)
    ]


@pytest.fixture(name="server")
def _server() -> ContentServer:  # pragma: no cover - convenience
    return ContentServer()


class ChannelServer(ContentServer):
    """A ContentServer reached over the in-memory transport (no WebSocket framing cost).

    For long virtual-time soaks, where wsproto's pure-Python framing would dominate;
    its transport has a fast lane (``send_nowait``), so the session's synchronous
    lane carries the live frames. ``buffer``: the messages each direction holds.
    """

    buffer = 64

    @property
    def dial(self) -> Dialer:
        return self._dial_memory

    @contextlib.asynccontextmanager
    async def _dial_memory(
        self, url: str, headers: Headers, *, connect_timeout: float
    ) -> AsyncIterator[Transport]:
        number = len(self.connections)
        conn = Connection(number, trio.current_time())
        self.connections.append(conn)
        behaviour = self.behaviour(number)
        if behaviour.reject is not None:
            raise rejected(url, behaviour.reject)
        client, server = memory_transport_pair(self.buffer)
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                try:
                    await self.converse(server, conn, behaviour)
                finally:
                    conn.closed_at = trio.current_time()
                    await server.aclose()

            nursery.start_soon(serve)
            try:
                yield client
            finally:
                await client.aclose()
                nursery.cancel_scope.cancel()


ServerEnd = WebSocketTransport | MemoryTransport
