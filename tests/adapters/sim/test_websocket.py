"""The simulator's server-side WebSocket over memory streams: messages, pings, closes.

(The framing itself is adapters/websocket's, tested in tests/adapters/websocket; the
upgrade is tests/adapters/sim/test_upgrade.py's.)"""

from __future__ import annotations

import os
import struct

import pytest
import trio
import trio.testing
from conftest import deadline

from adapters.sim.upgrade import read_upgrade
from adapters.sim.websocket import ServerWebSocket, WebSocketClosed

KEY = b"\x37\xfa\x21\x3d"


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, key: bytes | None = KEY, rsv: int = 0
) -> bytes:
    """A client frame as RFC 6455 §5.2 lays it out (masked unless ``key`` is None)."""
    head = bytearray([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if key is not None else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head += struct.pack("!BH", mask_bit | 126, n)
    else:
        head += struct.pack("!BQ", mask_bit | 127, n)
    if key is None:
        return bytes(head) + payload
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


UPGRADE = (
    b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """A short unmasked final server frame."""
    assert len(payload) < 126
    return bytes((0x80 | opcode, len(payload))) + payload


def close_payload(code: int, reason: str) -> bytes:
    return struct.pack("!H", code) + reason.encode()


# ------------------------------------------------------------------ the connection


async def upgraded(
    server: trio.abc.Stream, client: trio.abc.Stream, max_bytes: int = 1 << 20
) -> ServerWebSocket:
    await client.send_all(UPGRADE)
    upgrade = await read_upgrade(server, max_message_bytes=max_bytes)
    assert upgrade is not None
    assert upgrade.problem is None
    ws = await upgrade.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        head += await client.receive_some()
    # RFC 6455 §1.3's example key and its accept value
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    return ws


class TestServerWebSocket:
    @deadline(5)
    async def test_messages_pings_and_close(self) -> None:
        """Messages come in order, a ping is answered, a close is echoed and ends reads."""
        client, server = trio.testing.memory_stream_pair()
        ws = await upgraded(server, client)
        await client.send_all(
            client_frame(0x9, b"hi") + client_frame(0x1, b"one") + client_frame(0x2, b"two")
        )
        assert await ws.get_message() == "one"
        assert await ws.get_message() == b"two"
        assert await client.receive_some() == server_frame(0xA, b"hi")
        await ws.send_message("out")
        assert await client.receive_some() == server_frame(0x1, b"out")
        await client.send_all(client_frame(0x8, close_payload(1000, "done")))
        with pytest.raises(WebSocketClosed) as caught:
            await ws.get_message()
        assert (caught.value.code, caught.value.reason) == (1000, "done")
        assert await client.receive_some() == server_frame(0x8, close_payload(1000, "done"))
        with pytest.raises(WebSocketClosed):
            await ws.send_message("late")

    @deadline(5)
    async def test_a_violation_is_answered_with_its_close_code(self) -> None:
        client, server = trio.testing.memory_stream_pair()
        ws = await upgraded(server, client, max_bytes=10)
        await client.send_all(client_frame(0x2, os.urandom(11)))  # over max_bytes
        with pytest.raises(WebSocketClosed) as caught:
            await ws.get_message()
        assert caught.value.code == 1009
        reply = await client.receive_some()
        assert reply[0] == 0x88
        assert struct.unpack_from("!H", reply, 2) == (1009,)

    @deadline(5)
    async def test_eof_is_1006(self) -> None:
        client, server = trio.testing.memory_stream_pair()
        ws = await upgraded(server, client)
        await client.aclose()
        with pytest.raises(WebSocketClosed) as caught:
            await ws.get_message()
        assert caught.value.code == 1006

    @deadline(5)
    async def test_a_write_cancelled_midway_ends_the_connection(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A send abandoned by its deadline (the peer reads nothing) may have left part of a
        frame behind: every later send raises instead of writing after it."""
        client, server = trio.testing.lockstep_stream_pair()  # a write waits for a read
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, UPGRADE)
            upgrade = await read_upgrade(server, max_message_bytes=1 << 20)
        assert upgrade is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.receive_some)  # the 101 response
            ws = await upgrade.accept()
        with trio.move_on_after(0.5) as waited:  # nobody reads the client side now
            await ws.send_message(b"x" * (1 << 20))
        assert waited.cancelled_caught
        assert ws.closed is not None
        assert ws.closed.code == 1006
        with pytest.raises(WebSocketClosed):
            await ws.send_message("late")


# ------------------------------------------------------------------ the synchronous send lane


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connected TCP pair over loopback (the fast lane needs a real descriptor)."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client_sock = trio.socket.socket()
    with listener:
        await client_sock.connect(listener.getsockname())
        server_sock, _ = await listener.accept()
    return trio.SocketStream(client_sock), trio.SocketStream(server_sock)


async def read_frames(stream: trio.abc.Stream, count: int) -> list[bytes]:
    """The payloads of ``count`` unmasked server frames (any length)."""
    buf = b""
    out: list[bytes] = []
    while len(out) < count:
        buf += await stream.receive_some()
        while len(buf) >= 2:
            n, at = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                (n,), at = struct.unpack("!H", buf[2:4]), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                (n,), at = struct.unpack("!Q", buf[2:10]), 10
            if len(buf) < at + n:
                break
            out.append(buf[at : at + n])
            buf = buf[at + n :]
    return out


class TestSendLane:
    @deadline(10)
    async def test_a_frame_the_kernel_takes_whole_goes_at_once(self) -> None:
        client, server = await tcp_pair()
        async with client, server:
            await client.send_all(UPGRADE)
            upgrade = await read_upgrade(server, max_message_bytes=1 << 20)
            assert upgrade is not None
            ws = await upgrade.accept(fd=server.socket.fileno())
            head = b""
            while b"\r\n\r\n" not in head:
                head += await client.receive_some()
            assert ws.send_message_nowait('{"a":1}') == b""
            assert await read_frames(client, 1) == [b'{"a":1}']

    @deadline(10)
    async def test_the_tail_is_written_by_send_tail_and_nothing_comes_between(self) -> None:
        """A frame bigger than the socket buffers leaves a tail; send_tail finishes it while
        the peer reads, and a later message follows it whole."""
        client, server = await tcp_pair()
        async with client, server:
            await client.send_all(UPGRADE)
            upgrade = await read_upgrade(server, max_message_bytes=1 << 20)
            assert upgrade is not None
            ws = await upgrade.accept(fd=server.socket.fileno())
            head = b""
            while b"\r\n\r\n" not in head:
                head += await client.receive_some()
            big = os.urandom(16 << 20)  # more than loopback's buffers take at once
            tail = ws.send_message_nowait(big)
            assert 0 < len(tail) < len(big)
            got: list[bytes] = []

            async def reader() -> None:
                got.extend(await read_frames(client, 2))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await ws.send_tail(tail)
                await ws.send_message(b"after")
            assert got == [big, b"after"]

    @deadline(5)
    async def test_a_closed_connection_refuses(self) -> None:
        client, server = trio.testing.memory_stream_pair()
        ws = await upgraded(server, client)
        assert ws.send_message_nowait("x") != b""  # no descriptor: nothing written
        await client.send_all(client_frame(0x8, close_payload(1000, "")))
        with pytest.raises(WebSocketClosed):
            await ws.get_message()
        with pytest.raises(WebSocketClosed):
            ws.send_message_nowait("late")

    @deadline(10)
    async def test_server_socket_sends_keep_core_order_across_a_tail(self) -> None:
        """ServerSocket.send: the first frame goes by the fast lane and leaves a tail; a
        second sender arriving meanwhile waits for it (the lock), so both arrive whole."""
        from types import SimpleNamespace
        from typing import cast

        from adapters.sim.config import SimConfig
        from adapters.sim.context import ConnectionContext
        from adapters.sim.server_socket import ServerSocket

        client, server = await tcp_pair()
        async with client, server:
            await client.send_all(UPGRADE)
            upgrade = await read_upgrade(server, max_message_bytes=1 << 20)
            assert upgrade is not None
            ws = await upgrade.accept(fd=server.socket.fileno())
            head = b""
            while b"\r\n\r\n" not in head:
                head += await client.receive_some()
            ctx = cast("ConnectionContext", SimpleNamespace(faults=None, config=SimConfig()))
            sock = ServerSocket(ws, ctx)
            big = "x" * (16 << 20)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sock.send, lambda: big)
                await trio.testing.wait_all_tasks_blocked()  # its tail waits for the reader
                nursery.start_soon(sock.send, lambda: "second")
                await trio.testing.wait_all_tasks_blocked()  # it waits for the lock
                assert await read_frames(client, 2) == [big.encode(), b"second"]

    @deadline(10)
    async def test_a_paced_message_costs_no_failing_read(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a read that emptied the buffer the reader waits first: a message that comes
        alone is read by one successful read, never after an EAGAIN."""
        import adapters.sim.websocket as module

        failed = 0
        real_read = os.read

        def counting_read(fd: int, n: int) -> bytes:
            nonlocal failed
            try:
                return real_read(fd, n)
            except BlockingIOError:
                failed += 1
                raise

        client, server = await tcp_pair()
        async with client, server:
            await client.send_all(UPGRADE)
            upgrade = await read_upgrade(server, max_message_bytes=1 << 20)
            assert upgrade is not None
            ws = await upgrade.accept(fd=server.socket.fileno())
            monkeypatch.setattr(module.os, "read", counting_read)
            for k in range(5):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ws.get_message)
                    await trio.testing.wait_all_tasks_blocked()  # the reader waits
                    await client.send_all(client_frame(0x2, bytes([k]) * 3200))
            assert failed <= 1  # at most the first read, before any read emptied the buffer


class TestReadLane:
    @deadline(10)
    async def test_frames_that_queued_come_out_of_one_read_in_order(self) -> None:
        """A read holding several whole frames and a ping gives the messages one by one
        without another read, then hands the ping to get_message, which answers it."""
        from adapters.sim.websocket import WouldAwait

        client, server = await tcp_pair()
        async with client, server:
            await client.send_all(UPGRADE)
            upgrade = await read_upgrade(server, max_message_bytes=1 << 20)
            assert upgrade is not None
            ws = await upgrade.accept(fd=server.socket.fileno())
            head = b""
            while b"\r\n\r\n" not in head:
                head += await client.receive_some()
            frames = [client_frame(0x2, bytes([k]) * 3200) for k in range(3)]
            ping = client_frame(0x9, b"hi")
            await client.send_all(b"".join([*frames, ping, client_frame(0x1, b"after")]))
            with trio.fail_after(5):
                while (first := ws.message_nowait(read=True)) is None:
                    await trio.lowlevel.wait_readable(server.socket)
            assert first == bytes(3200)
            assert ws.message_nowait(read=False) == b"\x01" * 3200
            assert ws.message_nowait(read=False) == b"\x02" * 3200
            with pytest.raises(WouldAwait):
                ws.message_nowait(read=False)
            assert await ws.get_message() == "after"
            assert await read_frames(client, 1) == [b"hi"]  # the pong
