"""The server-role RFC 6455 framing (sans-IO) and the simulator's WebSocket over memory streams."""

from __future__ import annotations

import os
import struct

import pytest
import trio
import trio.testing
from conftest import deadline
from hypothesis import given
from hypothesis import strategies as st

from adapters.sim._wsframes import (
    Close,
    FrameError,
    FrameReader,
    Message,
    Ping,
    Pong,
    close_payload,
    server_frame,
    unmask,
)
from adapters.sim.websocket import ServerWebSocket, WebSocketClosed, read_upgrade

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


def events(reader: FrameReader) -> list[object]:
    out = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    return out


class TestUnmask:
    @given(payload=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4))
    def test_matches_the_rfc(self, payload: bytes, key: bytes) -> None:
        """Every length (the word-wise XOR and the tail) gives the byte-wise XOR."""
        assert unmask(payload, key) == bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class TestFrameReader:
    @given(
        payload=st.binary(max_size=70_000),
        cuts=st.lists(st.integers(min_value=0, max_value=70_020), max_size=5),
    )
    def test_any_chunking(self, payload: bytes, cuts: list[int]) -> None:
        """A binary message arrives whole however its bytes are split."""
        data = client_frame(0x2, payload)
        reader = FrameReader(1 << 20)
        got: list[object] = []
        last = 0
        for cut in [*sorted(c for c in cuts if c < len(data)), len(data)]:
            reader.receive_data(data[last:cut])
            last = cut
            got += events(reader)
        assert got == [Message(payload)]

    def test_text_fragments_and_control_frames_between(self) -> None:
        """Fragments join into one text message; a ping between them comes first."""
        reader = FrameReader(1024)
        reader.receive_data(
            client_frame(0x1, "héllo ".encode()[:3], fin=False)
            + client_frame(0x9, b"p")
            + client_frame(0x0, "héllo ".encode()[3:], fin=False)
            + client_frame(0x0, b"world")
            + client_frame(0xA, b"q")
        )
        assert events(reader) == [Ping(b"p"), Message("héllo world"), Pong(b"q")]

    def test_many_messages_in_one_read(self) -> None:
        reader = FrameReader(1024)
        reader.receive_data(b"".join(client_frame(0x2, bytes([i]) * 40) for i in range(50)))
        assert events(reader) == [Message(bytes([i]) * 40) for i in range(50)]

    @pytest.mark.parametrize(
        ("data", "code"),
        [
            (client_frame(0x2, b"x", key=None), 1002),
            (client_frame(0x2, b"x", rsv=0x40), 1002),
            (client_frame(0x3, b"x"), 1002),
            (client_frame(0x9, b"x" * 126), 1002),
            (client_frame(0x9, b"x", fin=False), 1002),
            (client_frame(0x0, b"x"), 1002),
            (client_frame(0x1, b"a", fin=False) + client_frame(0x1, b"b"), 1002),
            (client_frame(0x1, b"\xff\xfe"), 1007),
            (client_frame(0x2, b"x" * 101), 1009),
            (client_frame(0x2, b"x" * 60, fin=False) + client_frame(0x0, b"x" * 60), 1009),
            (client_frame(0x8, b"\x03"), 1002),
            (client_frame(0x8, struct.pack("!H", 1005)), 1002),
            (client_frame(0x8, struct.pack("!H", 1000) + b"\xff"), 1007),
        ],
    )
    def test_protocol_errors_name_the_close_code(self, data: bytes, code: int) -> None:
        """Each violation gives its close code, and the error is sticky."""
        reader = FrameReader(100)
        reader.receive_data(data)
        with pytest.raises(FrameError) as caught:
            events(reader)
        assert caught.value.code == code
        with pytest.raises(FrameError):
            reader.next_event()

    def test_close_ends_the_stream(self) -> None:
        """A close frame is the last event: later bytes are not parsed."""
        reader = FrameReader(100)
        reader.receive_data(client_frame(0x8, close_payload(1001, "bye")) + b"\xff\xff")
        assert events(reader) == [Close(1001, "bye")]
        reader.receive_data(client_frame(0x8, b""))
        assert reader.next_event() is None

    def test_empty_close_is_1005(self) -> None:
        reader = FrameReader(100)
        reader.receive_data(client_frame(0x8, b""))
        assert events(reader) == [Close(1005, "")]


class TestServerFrame:
    @pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
    def test_lengths(self, n: int) -> None:
        """Server frames are final and unmasked, with the shortest length encoding."""
        frame = server_frame(0x1, b"a" * n)
        assert frame[0] == 0x81
        assert not frame[1] & 0x80
        head = 2 if n < 126 else 4 if n < 65536 else 10
        assert len(frame) == head + n


# ------------------------------------------------------------------ the connection


async def upgraded(
    server: trio.abc.Stream, client: trio.abc.Stream, max_bytes: int = 1 << 20
) -> ServerWebSocket:
    request = (
        b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await client.send_all(request)
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
        await client.send_all(client_frame(0x2, os.urandom(11)))
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
    async def test_bad_upgrade_headers_are_a_problem(self) -> None:
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n")
        upgrade = await read_upgrade(server, max_message_bytes=10)
        assert upgrade is not None
        assert upgrade.problem == "missing Sec-WebSocket-Key"

    @deadline(5)
    async def test_garbage_is_answered_400(self) -> None:
        client, server = trio.testing.memory_stream_pair()
        await client.send_all(b"\x00\x01 not http\r\n\r\n")
        assert await read_upgrade(server, max_message_bytes=10) is None
        assert (await client.receive_some()).startswith(b"HTTP/1.1 400 ")
