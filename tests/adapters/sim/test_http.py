"""The simulator's WebSocket-or-HTTP sniffing (adapters/sim/http.py) over memory streams."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from conftest import deadline

from adapters.sim.http import PrefixStream, sniff

UPGRADE = (
    b"GET /api-ws/v1/inference HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
PLAIN = b"GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\n\r\n"


async def read_all(stream: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


class TestSniff:
    @pytest.mark.parametrize(("head", "upgrade"), [(UPGRADE, True), (PLAIN, False)])
    @deadline(10)
    async def test_route_and_replay(
        self, autojump_clock: trio.testing.MockClock, head: bytes, upgrade: bool
    ) -> None:
        """Upgrade or not, and every byte read is replayed to whoever serves the stream."""
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(head[:10])
        await client.send_all(head[10:] + b"BODY")
        await client.send_eof()
        routed = await sniff(server, 5)
        assert routed is not None
        stream, is_upgrade = routed
        assert is_upgrade is upgrade
        assert isinstance(stream, PrefixStream)
        assert await read_all(stream) == head + b"BODY"

    @deadline(10)
    async def test_silent_client(self, autojump_clock: trio.testing.MockClock) -> None:
        """No head within the timeout: None, and the stream is closed."""
        client, server = trio.testing.memory_stream_pair()
        start = trio.current_time()
        assert await sniff(server, 5) is None
        assert trio.current_time() - start == pytest.approx(5)
        assert await client.receive_some() == b""

    @deadline(10)
    async def test_client_left(self, autojump_clock: trio.testing.MockClock) -> None:
        client, server = trio.testing.memory_stream_pair()
        await client.aclose()
        assert await sniff(server, 5) is None

    @deadline(10)
    async def test_cancelled_closes(self, autojump_clock: trio.testing.MockClock) -> None:
        """Cancelled while waiting: the stream is closed, not leaked."""
        client, server = trio.testing.memory_stream_pair()
        with trio.move_on_after(1):
            await sniff(server, 5)
        assert await client.receive_some() == b""
