"""A connection over a socket pair (the fast transport, so the read hub reads it), MockClock-safe.

A ``socket.socketpair`` delivers inside the kernel at once, so trio's MockClock
(autojump) never jumps while bytes are on their way: the liveness timings of a
real socket connection can be tested in virtual time. The server end speaks the
codec's server role (no HTTP upgrade: the pair is connected already) and the
inference protocol's server core, scripted per test.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from adapters.dashscope import messages as m
from adapters.dashscope._fast_transport import FastTransport
from adapters.dashscope._pipes import SocketPipe
from adapters.dashscope.connection import LinkSettings
from adapters.dashscope.inference import InferenceServer
from adapters.dashscope.inference_connection import InferenceConnection
from adapters.dashscope.transport import Headers, Transport
from adapters.websocket import CLIENT, SERVER, Message, Ping, WebSocketCore
from engine.errors import Disconnected


class SocketServer:
    """The server end: WebSocket server role and inference server core over a trio socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self.ws = WebSocketCore(SERVER)
        self.core = InferenceServer()
        self.audio = 0
        self.pings = 0

    async def receive(self) -> bytes | str:
        """The next message (pings answered); ``Disconnected`` at the end."""
        while True:
            event = self.ws.next_event()
            if event is None:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                self.ws.receive_data(data or None)
                continue
            if isinstance(event, Message):
                return event.data
            if isinstance(event, Ping):
                self.pings += 1
                await self.stream.send_all(self.ws.pong(event.payload))
                continue
            raise Disconnected(f"the client ended: {event!r}")

    async def expect(self, kind: type[Any]) -> Any:
        """Read until a server event of ``kind`` (audio counted and skipped)."""
        while True:
            try:
                data: bytes | str | None = await self.receive()
            except Disconnected:
                data = None
            self.core.receive_data(data)
            for event in self.core.events():
                if isinstance(event, m.AudioReceived):
                    self.audio += len(event.pcm) // 2
                    continue
                assert isinstance(event, kind), event
                return event

    def frame(self, command: Any) -> bytes:
        """The wire bytes of a server command (a whole WebSocket frame)."""
        return self.ws.send_message(self.core.send(command))

    async def send(self, command: Any) -> None:
        await self.stream.send_all(self.frame(command))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def drain(self) -> None:
        """Read (answering pings) until the client goes."""
        with contextlib.suppress(Disconnected):
            while True:
                await self.receive()


Script = Callable[[SocketServer], Awaitable[None]]


def socket_dialer(script: Script) -> Any:
    """A ``Dialer`` of the fast transport over a socket pair whose far end runs ``script``."""

    @contextlib.asynccontextmanager
    async def dial(
        url: str, headers: Headers, *, connect_timeout: float
    ) -> AsyncIterator[Transport]:
        ours, theirs = socket.socketpair()
        pipe = SocketPipe(ours)
        server = SocketServer(theirs)
        transport = FastTransport(pipe, WebSocketCore(CLIENT), url)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(script, server)
                try:
                    yield transport
                finally:
                    await transport.aclose(grace_s=0.5)
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await pipe.aclose()
                await server.stream.aclose()

    return dial


def sentence(sid: int, begin: int, end: int | None, text: str) -> dict[str, Any]:
    s = {"sentence_id": sid, "begin_time": begin, "end_time": end, "text": text, "words": []}
    return {"sentence": s | {"sentence_end": end is not None, "heartbeat": False}}


def socket_link(script: Script, *, task_id: str = "t1", **settings: Any) -> InferenceConnection:
    base: dict[str, Any] = {"url": "ws://pair/", "api_key": "sk", "user_agent": "t", "rate": 16000}
    return InferenceConnection(
        settings=LinkSettings(**(base | settings)),
        dial=socket_dialer(script),
        task_id=task_id,
        model="paraformer-realtime-v2",
        parameters={"format": "pcm"},
    )


async def start_task(server: SocketServer) -> None:
    await server.expect(m.RunTaskRequested)
    await server.send(m.StartTask())
