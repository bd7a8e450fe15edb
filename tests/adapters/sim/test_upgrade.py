"""The simulator's side of the WebSocket upgrade over memory streams: read, accept, reject."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from conftest import deadline

from adapters.sim.upgrade import read_upgrade
from adapters.sim.websocket import WebSocketClosed

UPGRADE = (
    b"GET /api-ws/v1/inference?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
MASKED_HI = bytes((0x81, 0x82, 0, 0, 0, 0)) + b"hi"  # a text frame "hi", zero mask


async def response_head(client: trio.abc.Stream) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        head += await client.receive_some()
    return head


class TestReadUpgrade:
    @deadline(5)
    async def test_a_request_head_is_read(self) -> None:
        """The path keeps its query; header names come lower-case."""
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(UPGRADE)
        upgrade = await read_upgrade(server, max_message_bytes=10)
        assert upgrade is not None
        assert upgrade.path == "/api-ws/v1/inference?x=1"
        assert (b"sec-websocket-version", b"13") in upgrade.headers
        assert upgrade.problem is None

    @deadline(5)
    async def test_bad_upgrade_headers_are_a_problem(self) -> None:
        """No key, or a version other than 13, is no valid upgrade."""
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n")
        upgrade = await read_upgrade(server, max_message_bytes=10)
        assert upgrade is not None
        assert upgrade.problem == "missing Sec-WebSocket-Key"
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(UPGRADE.replace(b"Version: 13", b"Version: 8"))
        upgrade = await read_upgrade(server, max_message_bytes=10)
        assert upgrade is not None
        assert upgrade.problem == "Sec-WebSocket-Version must be 13"

    @deadline(5)
    async def test_garbage_is_answered_400(self) -> None:
        """A malformed head is answered 400 and yields no request."""
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(b"\x00\x01 not http\r\n\r\n")
        assert await read_upgrade(server, max_message_bytes=10) is None
        assert (await client.receive_some()).startswith(b"HTTP/1.1 400 ")

    @deadline(5)
    async def test_a_client_that_leaves_is_no_request(self) -> None:
        """End of stream before a whole head: None (the 400 it is owed finds nobody)."""
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(UPGRADE[:20])
        await client.aclose()
        assert await read_upgrade(server, max_message_bytes=10) is None


class TestAnswer:
    @deadline(5)
    async def test_accept_answers_101_and_keeps_bytes_sent_after_the_head(self) -> None:
        """The accept value is RFC 6455's; a frame that came with the head is the first message."""
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(UPGRADE + MASKED_HI)
        upgrade = await read_upgrade(server, max_message_bytes=10)
        assert upgrade is not None
        ws = await upgrade.accept()
        head = await response_head(client)
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
        assert await ws.get_message() == "hi"

    @deadline(5)
    async def test_reject_answers_the_status_with_its_body(self) -> None:
        """An HTTP error with the given headers and body; the connection is to close."""
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(UPGRADE)
        upgrade = await read_upgrade(server, max_message_bytes=10)
        assert upgrade is not None
        await upgrade.reject(401, extra_headers=[(b"x-why", b"key")], body=b"no")
        reply = b""
        while not reply.endswith(b"no"):
            reply += await client.receive_some()
        assert reply.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        assert b"\r\nx-why: key\r\n" in reply
        assert b"\r\nconnection: close\r\n" in reply

    @deadline(5)
    async def test_a_client_gone_before_the_answer_is_1006(self) -> None:
        """Accepting for a client that left raises WebSocketClosed 1006."""
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(UPGRADE)
        upgrade = await read_upgrade(server, max_message_bytes=10)
        assert upgrade is not None
        await client.aclose()
        with pytest.raises(WebSocketClosed) as caught:
            await upgrade.accept()
        assert caught.value.code == 1006
