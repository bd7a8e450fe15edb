"""The WebSocket connection core: client and server cores wired together, and hostile peers."""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.websocket import (
    CLIENT,
    SERVER,
    Close,
    ConnectionLost,
    Message,
    Ping,
    Pong,
    State,
    Violation,
    WebSocketCore,
)
from adapters.websocket.frames import Opcode, build_frame
from engine.errors import LocalProtocolError

MASK = b"\x0a\x0b\x0c\x0d"


class Pair:
    """A client core and a server core; what one sends the other receives."""

    def __init__(self, max_message_size: int = 1 << 20) -> None:
        self.client = WebSocketCore(CLIENT, max_message_size=max_message_size)
        self.server = WebSocketCore(SERVER, max_message_size=max_message_size)

    def to_server(self, data: bytes) -> list[object]:
        self.server.receive_data(data)
        return list(self.server.events())

    def to_client(self, data: bytes) -> list[object]:
        self.client.receive_data(data)
        return list(self.client.events())


message_data = st.one_of(st.binary(max_size=2000), st.text(max_size=500))


class TestPair:
    @given(st.lists(message_data, max_size=10), st.randoms(use_true_random=False))
    def test_messages_both_ways_under_any_split(
        self, messages: list[bytes | str], rnd: random.Random
    ) -> None:
        """Messages sent by either side arrive whole and in order, however the bytes are cut."""
        pair = Pair()
        up = b"".join(pair.client.send_message(m) for m in messages)
        down = b"".join(pair.server.send_message(m) for m in messages)
        for wire, receive in ((up, pair.to_server), (down, pair.to_client)):
            got: list[object] = []
            at = 0
            while at < len(wire):
                step = rnd.randint(1, 700)
                got.extend(receive(wire[at : at + step]))
                at += step
            assert got == [Message(m) for m in messages]

    def test_client_frames_are_masked_with_fresh_keys(self) -> None:
        """Every client frame is masked, with a different key each time."""
        pair = Pair()
        frames = [pair.client.send_message(b"x" * 10) for _ in range(50)]
        assert all(f[1] & 0x80 for f in frames)
        assert len({f[2:6] for f in frames}) > 45
        assert pair.server.send_message(b"x")[1] & 0x80 == 0

    def test_ping_pong(self) -> None:
        """A ping arrives as Ping; the pong built from it arrives as Pong with the payload."""
        pair = Pair()
        (ping,) = pair.to_server(pair.client.ping(b"abc"))
        assert ping == Ping(b"abc")
        assert pair.to_client(pair.server.pong(b"abc")) == [Pong(b"abc")]

    def test_close_handshake(self) -> None:
        """Close, the echo, and both sides CLOSED; data after it is refused."""
        pair = Pair()
        assert pair.to_server(pair.client.close(1000, "bye")) == [Close(1000, "bye")]
        assert pair.client.state is State.CLOSE_SENT
        assert pair.server.state is State.CLOSE_RECEIVED
        with pytest.raises(LocalProtocolError):
            pair.server.send_message(b"late")
        assert pair.to_client(pair.server.close(1000)) == [Close(1000, "")]
        assert pair.client.state is State.CLOSED
        assert pair.server.state is State.CLOSED
        with pytest.raises(LocalProtocolError):
            pair.client.send_message("late")

    def test_data_still_arrives_after_our_close(self) -> None:
        """After sending close, the peer's messages in flight are still delivered."""
        pair = Pair()
        pair.client.close()
        assert pair.to_client(pair.server.send_message("in flight")) == [Message("in flight")]

    def test_close_without_status_and_1005(self) -> None:
        """An empty close payload reads as 1005; close(1005) sends an empty payload."""
        pair = Pair()
        frame = pair.client.close(1005)
        assert frame[1] & 0x7F == 0
        assert pair.to_server(frame) == [Close(1005, "")]

    def test_invalid_close_code_is_refused_locally(self) -> None:
        """We never send a code reserved for local use."""
        with pytest.raises(ValueError, match="1006"):
            WebSocketCore(CLIENT).close(1006)

    def test_long_reason_is_cut_to_fit(self) -> None:
        """A reason over 123 bytes is cut at a character boundary."""
        pair = Pair()
        (event,) = pair.to_server(pair.client.close(1000, "é" * 100))
        assert isinstance(event, Close)
        assert event.reason == "é" * 61

    def test_eof_without_close(self) -> None:
        """EOF on an open connection is ConnectionLost (1006), once."""
        core = WebSocketCore(CLIENT)
        core.receive_data(None)
        assert list(core.events()) == [ConnectionLost()]
        assert core.state is State.CLOSED
        assert list(core.events()) == []

    def test_eof_after_close_handshake_is_quiet(self) -> None:
        """EOF after a clean close yields nothing."""
        pair = Pair()
        pair.to_server(pair.client.close())
        pair.to_client(pair.server.close())
        pair.client.receive_data(None)
        assert list(pair.client.events()) == []

    def test_send_via_the_one_verb(self) -> None:
        """send(event) frames commands like the verbs do."""
        pair = Pair()
        wire = b"".join(
            pair.client.send(e) for e in (Message("a"), Ping(b"p"), Pong(b"q"), Close(1001, "x"))
        )
        assert pair.to_server(wire) == [Message("a"), Ping(b"p"), Pong(b"q"), Close(1001, "x")]


def server_frame(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    return build_frame(opcode, payload, fin=fin)


class TestFragmentation:
    def test_fragments_with_control_frames_between(self) -> None:
        """A fragmented text message reassembles around an interleaved ping."""
        core = WebSocketCore(CLIENT)
        core.receive_data(
            server_frame(Opcode.TEXT, "hé".encode()[:2], fin=False)
            + server_frame(Opcode.PING, b"!")
            + server_frame(Opcode.CONTINUATION, "hé".encode()[2:], fin=False)
            + server_frame(Opcode.CONTINUATION, b"llo")
        )
        assert list(core.events()) == [Ping(b"!"), Message("héllo")]

    def test_continuation_without_start(self) -> None:
        """A continuation with nothing to continue is a 1002 violation."""
        core = WebSocketCore(CLIENT)
        core.receive_data(server_frame(Opcode.CONTINUATION, b"x"))
        assert list(core.events()) == [
            Violation(1002, "a continuation frame with no message to continue")
        ]
        assert core.state is State.FAILED

    def test_new_message_inside_a_fragmented_one(self) -> None:
        """A data frame before the fragmented message ended is a 1002 violation."""
        core = WebSocketCore(CLIENT)
        core.receive_data(
            server_frame(Opcode.BINARY, b"a", fin=False) + server_frame(Opcode.BINARY, b"b")
        )
        (event,) = core.events()
        assert isinstance(event, Violation)
        assert event.code == 1002

    def test_fragmented_message_over_the_bound(self) -> None:
        """Fragments adding up past the bound are a 1009 violation."""
        core = WebSocketCore(CLIENT, max_message_size=100)
        core.receive_data(
            server_frame(Opcode.BINARY, bytes(60), fin=False)
            + server_frame(Opcode.CONTINUATION, bytes(60))
        )
        (event,) = core.events()
        assert isinstance(event, Violation)
        assert event.code == 1009


class TestHostilePeer:
    @pytest.mark.parametrize(
        ("wire", "code"),
        [
            (build_frame(Opcode.TEXT, b"\xff\xfe"), 1007),
            (build_frame(Opcode.CLOSE, b"\x03"), 1002),
            (build_frame(Opcode.CLOSE, struct.pack("!H", 1006)), 1002),
            (build_frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
            (build_frame(Opcode.BINARY, b"x", mask=MASK), 1002),
            (b"\x82\x7f" + struct.pack("!Q", 1 << 40), 1009),
        ],
    )
    def test_violations_fail_the_connection(self, wire: bytes, code: int) -> None:
        """Each violation is one Violation event with the RFC's code; nothing follows it."""
        core = WebSocketCore(CLIENT)
        core.receive_data(wire + build_frame(Opcode.TEXT, b"after"))
        events = list(core.events())
        assert len(events) == 1
        assert isinstance(events[0], Violation)
        assert events[0].code == code
        assert core.state is State.FAILED
        core.close(code)  # our close with the violation's code is still allowed
        assert core.state is State.CLOSED

    @given(st.binary(max_size=400))
    def test_garbage_never_raises(self, garbage: bytes) -> None:
        """Any bytes give events or a Violation, never an exception."""
        for role in (CLIENT, SERVER):
            core = WebSocketCore(role, max_message_size=256)
            core.receive_data(garbage)
            core.receive_data(None)
            events = list(core.events())
            assert all(not isinstance(e, Violation) for e in events[:-1])
            assert core.state in (State.CLOSED, State.FAILED, State.CLOSE_RECEIVED)


class TestFragmentationProperty:
    @given(
        message_data,
        st.lists(st.integers(min_value=0), max_size=6),
        st.lists(st.booleans(), max_size=6),
        st.integers(min_value=1, max_value=97),
    )
    def test_any_fragmentation_with_pings_between_reassembles(
        self, data: bytes | str, cuts: list[int], pings: list[bool], step: int
    ) -> None:
        """A message cut into any fragments, pings between them, fed in any chunk size,
        arrives as the pings then the one whole message."""
        raw = data.encode() if isinstance(data, str) else data
        first = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
        points = sorted({c % (len(raw) + 1) for c in cuts})
        pieces = [raw[a:b] for a, b in itertools.pairwise([0, *points, len(raw)])]
        wire = b""
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            wire += build_frame(first if i == 0 else Opcode.CONTINUATION, piece, fin=last)
            if not last and i < len(pings) and pings[i]:
                wire += build_frame(Opcode.PING, b"%d" % i)
        core = WebSocketCore(CLIENT)
        got: list[object] = []
        for at in range(0, len(wire), step):
            core.receive_data(wire[at : at + step])
            got.extend(core.events())
        expected_pings = [
            Ping(b"%d" % i) for i in range(len(pieces) - 1) if i < len(pings) and pings[i]
        ]
        assert got == [*expected_pings, Message(data)]


reads = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda op, payload, masked, fin: build_frame(
                op, payload, mask=MASK if masked else None, fin=fin
            ),
            st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION, Opcode.PING]),
            st.one_of(st.binary(max_size=300), st.just(b"\xff\xfe"), st.just(b"ok" * 80)),
            st.booleans(),
            st.booleans(),
        ),
    ),
    max_size=8,
)


class TestReceiveMessages:
    @given(reads, st.booleans())
    def test_same_as_receive_data_and_events(self, chunks: list[bytes], client: bool) -> None:
        """Whatever is read, receive_messages gives the messages, events and state that
        receive_data and next_event give (its fast path only skips the buffering)."""
        role = CLIENT if client else SERVER
        fast = WebSocketCore(role, max_message_size=200)
        slow = WebSocketCore(role, max_message_size=200)
        got: list[object] = []
        want: list[object] = []
        for chunk in chunks:
            got.extend(Message(message) for message in fast.receive_messages(chunk))
            got.extend(fast.events())
            slow.receive_data(chunk)
            want.extend(slow.events())
        assert got == want
        assert fast.state is slow.state

    def test_a_whole_frame_comes_back_without_an_event(self) -> None:
        """One whole masked binary or text frame (a paced client's read) is its message."""
        core = WebSocketCore(SERVER)
        assert core.receive_messages(build_frame(Opcode.BINARY, b"\x01" * 3200, mask=MASK)) == [
            b"\x01" * 3200
        ]
        assert core.receive_messages(build_frame(Opcode.TEXT, "héllo".encode(), mask=MASK)) == [
            "héllo"
        ]
        assert not core.pending
        assert list(core.events()) == []

    def test_frames_that_queued_come_back_in_one_read(self) -> None:
        """A read of several whole frames gives their messages in order; what follows the
        last whole one (a ping, half a frame) is buffered for next_event."""
        core = WebSocketCore(SERVER)
        frames = [build_frame(Opcode.BINARY, bytes([k]) * 3200, mask=MASK) for k in range(3)]
        ping = build_frame(Opcode.PING, b"p", mask=MASK)
        half = build_frame(Opcode.TEXT, b"late", mask=MASK)
        assert core.receive_messages(b"".join([*frames, ping, half[:4]])) == [
            bytes([k]) * 3200 for k in range(3)
        ]
        assert core.pending
        assert list(core.events()) == [Ping(b"p")]
        assert core.receive_messages(half[4:]) == []
        assert list(core.events()) == [Message("late")]

    def test_bytes_left_buffered_take_the_general_path(self) -> None:
        """With part of a frame buffered, a whole frame read next is parsed after it."""
        core = WebSocketCore(SERVER)
        first = build_frame(Opcode.BINARY, b"a", mask=MASK)
        assert core.receive_messages(first[:3]) == []
        assert core.pending
        assert core.receive_messages(first[3:] + build_frame(Opcode.BINARY, b"b", mask=MASK)) == []
        assert list(core.events()) == [Message(b"a"), Message(b"b")]

    def test_end_of_file_is_pending(self) -> None:
        """After EOF, pending says next_event has the ConnectionLost to give."""
        core = WebSocketCore(SERVER)
        core.receive_data(None)
        assert core.pending
        assert core.next_event() == ConnectionLost()
        assert not core.pending
