"""ServerSocket's synchronous send: a frame the kernel takes only part of, and its tail."""

from __future__ import annotations

import socket

import trio
from conftest import deadline

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import SimConfig
from adapters.sim.context import ConnectionContext
from adapters.sim.server_socket import ServerSocket
from adapters.sim.websocket import ServerWebSocket
from adapters.websocket import CLIENT, SERVER, Message, WebSocketCore

BIG = "x" * 300_000  # more than a small socket buffer takes at once


def _server_socket(sock: socket.socket) -> ServerSocket:
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    ws = ServerWebSocket(stream, WebSocketCore(SERVER), fd=sock.fileno())
    return ServerSocket(ws, ConnectionContext(1, SimConfig(), ScriptedRecognizer.tone()))


async def _messages(sock: trio.socket.SocketType, count: int) -> list[str]:
    core = WebSocketCore(CLIENT)
    out: list[str] = []
    while len(out) < count:
        core.receive_data(await sock.recv(1 << 16))
        while (event := core.next_event()) is not None:
            assert isinstance(event, Message)
            assert isinstance(event.data, str)
            out.append(event.data)
    return out


class TestSendNowait:
    @deadline(10)
    async def test_tail_is_owed_and_goes_before_the_next_frame(self) -> None:
        """A partly written frame's tail is written first by the next send; order holds."""
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        a.setblocking(False)
        peer = trio.socket.from_stdlib_socket(b)
        with peer:
            server = _server_socket(a)
            assert server.send_nowait(lambda: BIG) is True
            assert server.owes_tail
            assert server.send_nowait(lambda: "refused") is None  # nothing made meanwhile
            got: list[str] = []
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    got.extend(await _messages(peer, 2))

                nursery.start_soon(read)
                assert await server.send(lambda: "after")
            assert got == [BIG, "after"]
            assert not server.owes_tail
            a.close()

    @deadline(10)
    async def test_flush_writes_the_tail(self) -> None:
        """flush() finishes the owed frame; with nothing owed it returns at once."""
        a, b = socket.socketpair()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        a.setblocking(False)
        peer = trio.socket.from_stdlib_socket(b)
        with peer:
            server = _server_socket(a)
            assert server.send_nowait(lambda: BIG) is True
            got: list[str] = []
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    got.extend(await _messages(peer, 1))

                nursery.start_soon(read)
                assert await server.flush()
            assert got == [BIG]
            assert await server.flush()
            a.close()

    async def test_refused_while_closing_and_none_dropped(self) -> None:
        """After shutdown nothing is made; a frame maker saying None sends nothing."""
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            server = _server_socket(a)
            assert server.send_nowait(lambda: None) is True
            server.shutdown()
            assert server.send_nowait(lambda: "late") is None
            a.close()
