"""One connection's side of the read hub (``_hub_reader.py``): messages taken in the hub's
task, and everything that needs an await handed back to the reader task."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import structlog
import structlog.testing
import trio
import trio.testing
from conftest import deadline

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import SimConfig
from adapters.sim._hub import ReadHub
from adapters.sim._hub_reader import HubReader
from adapters.sim.context import ConnectionContext
from adapters.sim.server_socket import ServerSocket
from adapters.sim.upgrade import read_upgrade

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from adapters.sim._hub_reader import Follow
    from adapters.sim.websocket import ServerWebSocket

UPGRADE = (
    b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def frame(opcode: int, payload: bytes) -> bytes:
    """A short final client frame, masked with a zero key."""
    assert len(payload) < 126
    return bytes((0x80 | opcode, 0x80 | len(payload))) + bytes(4) + payload


async def accepted(client: trio.SocketStream, server: trio.SocketStream) -> ServerWebSocket:
    await client.send_all(UPGRADE)
    upgrade = await read_upgrade(server, max_message_bytes=1 << 10)
    assert upgrade is not None
    ws = await upgrade.accept(fd=server.socket.fileno())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await client.receive_some()
    return ws


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected TCP pair over loopback (the hub needs a real descriptor)."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client_sock = trio.socket.socket()
    with listener:
        await client_sock.connect(listener.getsockname())
        server_sock, _ = await listener.accept()
    return trio.SocketStream(client_sock), trio.SocketStream(server_sock)


class Rig:
    """A hub, one fast-lane connection and a ``take`` that keeps what it is given."""

    def __init__(self, client: trio.SocketStream, ws: ServerWebSocket, hub: ReadHub) -> None:
        self.client = client
        self.hub = hub
        self.taken: list[bytes | str] = []
        ctx = ConnectionContext(1, SimConfig(), ScriptedRecognizer.tone())
        self.reader = HubReader(ws, ServerSocket(ws, ctx), hub, take=self.take, receive=receive)

    def take(self, data: bytes | str, now: float) -> Follow | None:
        assert now <= trio.current_time()
        self.taken.append(data)
        if data == b"boom":
            raise ValueError("a bug in take")
        return None if isinstance(data, bytes) else text_follow


async def receive() -> bool:
    return True  # pragma: no cover - only compared, never awaited here


async def text_follow() -> bool:
    return True  # pragma: no cover - only compared, never awaited here


@pytest.fixture(name="rig")
async def _rig() -> AsyncIterator[Rig]:
    client, server = await tcp_pair()
    async with client, server, trio.open_nursery() as nursery:
        hub = ReadHub(min_round_s=0)
        await nursery.start(hub.run)
        yield Rig(client, await accepted(client, server), hub)
        nursery.cancel_scope.cancel()


class TestHubReader:
    @deadline(10)
    async def test_data_is_taken_in_place_until_a_follow_up(self, rig: Rig) -> None:
        """Binary messages are handled by take in the hub's task; take's follow-up ends the
        hub's turn, comes out of wait() and the socket leaves the hub."""
        async with trio.open_nursery() as nursery:
            got: list[Follow | None] = []

            async def waiter() -> None:
                got.append(await rig.reader.wait())

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert len(rig.hub) == 1  # parked: the hub reads for it
            await rig.client.send_all(frame(0x2, b"a") + frame(0x2, b"b") + frame(0x1, b"t"))
        assert rig.taken == [b"a", b"b", "t"]
        assert got == [text_follow]
        assert len(rig.hub) == 0

    @deadline(10)
    async def test_a_ping_hands_back_the_awaited_receive(self, rig: Rig) -> None:
        """A control frame needs the awaited path: wait() returns ``receive``."""
        await rig.client.send_all(frame(0x2, b"a") + frame(0x9, b"p"))
        follow = await rig.reader.wait()
        assert follow is receive
        assert rig.taken == [b"a"]
        assert len(rig.hub) == 0

    @deadline(10)
    async def test_a_crash_in_take_is_raised_in_the_reader_task(self, rig: Rig) -> None:
        """An exception from take never reaches the hub: the follow-up raises it."""
        await rig.client.send_all(frame(0x2, b"boom"))
        with structlog.testing.capture_logs() as logs:
            follow = await rig.reader.wait()
        assert logs == []  # the hub saw no crash
        assert follow is not None
        with pytest.raises(ValueError, match="a bug in take"):
            await follow()
        assert len(rig.hub) == 0

    @deadline(10)
    async def test_cancelled_while_parked_the_socket_leaves_the_hub(self, rig: Rig) -> None:
        """Cancellation takes the descriptor out of the hub; nothing was taken."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rig.reader.wait)
            await trio.testing.wait_all_tasks_blocked()
            assert len(rig.hub) == 1
            nursery.cancel_scope.cancel()
        assert len(rig.hub) == 0
        assert rig.taken == []


class TestConstruction:
    @deadline(10)
    async def test_a_connection_off_the_fast_lane_is_refused(self) -> None:
        """No descriptor, no hub."""
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(UPGRADE)
        upgrade = await read_upgrade(server, max_message_bytes=1 << 10)
        assert upgrade is not None
        ws = await upgrade.accept()
        ctx = ConnectionContext(1, SimConfig(), ScriptedRecognizer.tone())
        with pytest.raises(ValueError, match="fast lane"):
            HubReader(
                ws, ServerSocket(ws, ctx), ReadHub(), take=lambda _data, _now: None, receive=receive
            )
