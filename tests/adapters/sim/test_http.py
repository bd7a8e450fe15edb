"""The simulator's HTTP layer (adapters/sim/http.py) over memory streams, in virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from conftest import deadline

from adapters.sim.http import (
    HttpLimits,
    HttpRequest,
    HttpResponse,
    PrefixStream,
    json_response,
    serve_http,
    sniff,
)

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


async def echo(request: HttpRequest, nursery: trio.Nursery) -> HttpResponse:
    if request.path == "/crash":
        raise RuntimeError("boom")
    return json_response(200, {"path": request.path, "body": request.body.decode()})


@asynccontextmanager
async def served(limits: HttpLimits | None = None) -> AsyncIterator[trio.abc.Stream]:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_http, server, echo, limits or HttpLimits())
        yield client
        nursery.cancel_scope.cancel()


class TestServe:
    @deadline(10)
    async def test_keep_alive(self, autojump_clock: trio.testing.MockClock) -> None:
        """Two requests on one connection, then the idle deadline closes it."""
        async with served(HttpLimits(keep_alive_s=3)) as client:
            await client.send_all(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            await client.send_all(PLAIN)
            start = trio.current_time()
            data = await read_all(client)
            assert trio.current_time() - start == pytest.approx(3)
        assert data.count(b"HTTP/1.1 200 OK") == 2
        assert b'{"path":"/a","body":"hi"}' in data
        assert b'{"path":"/api/v1/tasks","body":""}' in data

    @pytest.mark.parametrize(
        ("request_bytes", "status"),
        [
            (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
            (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n" + b"x" * 50, b"413"),
            (b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n", b"500"),
        ],
    )
    @deadline(10)
    async def test_errors(
        self, autojump_clock: trio.testing.MockClock, request_bytes: bytes, status: bytes
    ) -> None:
        """Malformed 400, too big 413, a crashing handler 500; the connection then closes."""
        async with served(HttpLimits(max_body_bytes=10, keep_alive_s=1)) as client:
            await client.send_all(request_bytes)
            data = await read_all(client)
        assert data.startswith(b"HTTP/1.1 " + status)

    @deadline(10)
    async def test_slow_head(self, autojump_clock: trio.testing.MockClock) -> None:
        """A head that never completes is dropped after head_timeout_s."""
        async with served(HttpLimits(head_timeout_s=2)) as client:
            await client.send_all(b"GET / HTTP/1.1\r\n")
            start = trio.current_time()
            assert await read_all(client) == b""
            assert trio.current_time() - start == pytest.approx(2)
