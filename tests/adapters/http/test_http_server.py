"""The shared HTTP/1.1 server loop (adapters/http/server.py) over memory streams, in virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from conftest import deadline

from adapters.http.server import (
    HttpLimits,
    HttpRequest,
    HttpResponse,
    json_response,
    serve_http,
    serve_listeners,
)

PLAIN = b"GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\n\r\n"


async def read_all(stream: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


async def echo(request: HttpRequest, nursery: trio.Nursery) -> HttpResponse:
    if request.path == "/crash":
        raise RuntimeError("boom")
    if request.path == "/close":
        return HttpResponse(200, b"bye\n", "text/plain", headers=(("connection", "close"),))
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

    @deadline(10)
    async def test_head_gets_the_head_only(self, autojump_clock: trio.testing.MockClock) -> None:
        """HEAD is answered with the GET response's headers and no body; keep-alive goes on."""
        async with served(HttpLimits(keep_alive_s=1)) as client:
            await client.send_all(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n" + PLAIN)
            data = await read_all(client)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"content-length: 23" in head.lower()
        assert rest.startswith(b"HTTP/1.1 200 OK")  # the next response, no body in between

    @deadline(10)
    async def test_connection_close_ends_the_connection(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A response that says connection: close is the connection's last, at once."""
        async with served(HttpLimits(keep_alive_s=5)) as client:
            await client.send_all(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n" + PLAIN)
            start = trio.current_time()
            data = await read_all(client)
            assert trio.current_time() == start
        assert data.count(b"HTTP/1.1 200 OK") == 1
        assert data.endswith(b"bye\n")

    @deadline(10)
    async def test_the_connection_deadline_bounds_every_request(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """connection_timeout_s closes a connection however busy or slow it keeps itself."""
        limits = HttpLimits(head_timeout_s=10, keep_alive_s=10, connection_timeout_s=3)
        async with served(limits) as client:
            await client.send_all(b"GET / HTTP/1.1\r\n")
            start = trio.current_time()
            assert await read_all(client) == b""
            assert trio.current_time() - start == pytest.approx(3)

    @deadline(10)
    async def test_error_bodies_come_from_the_server_s_choice(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """error_body shapes the 400/413/500 the loop answers itself."""
        client, server = trio.testing.memory_stream_pair()

        def text(status: int, message: str) -> HttpResponse:
            return HttpResponse(status, f"{status} {message}\n".encode(), "text/plain")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: serve_http(server, echo, HttpLimits(keep_alive_s=1), error_body=text)
            )
            await client.send_all(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await read_all(client)
        assert data.startswith(b"HTTP/1.1 500")
        assert data.endswith(b"500 crashed\n")


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """Hands out the server ends of memory stream pairs made by :meth:`connect`."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](0)

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class TestServeListeners:
    @deadline(10)
    async def test_connections_beyond_the_limit_are_closed_at_once(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With max_connections=1 a second client is closed unanswered; the first is served."""
        listener = MemoryListener()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: serve_listeners([listener], echo, HttpLimits(), max_connections=1)
            )
            first = await listener.connect()
            await trio.testing.wait_all_tasks_blocked()
            second = await listener.connect()
            assert await read_all(second) == b""
            await first.send_all(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_all(first)).endswith(b"bye\n")
            nursery.cancel_scope.cancel()
