"""The RFC 6455 frame codec: building, incremental parsing, masking, the per-frame rules."""

from __future__ import annotations

import itertools
import os
import struct
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.websocket import apply_mask, apply_mask_python
from adapters.websocket.frames import (
    Frame,
    FrameError,
    FrameParser,
    Opcode,
    RandomMasks,
    build_frame,
    masked_binary_frame,
    thread_masks,
)
from adapters.websocket.protocol import CLIENT, WebSocketCore

MASK = b"\x01\x02\x03\x04"


def parse_all(parser: FrameParser) -> list[Frame]:
    frames = []
    while (frame := parser.next_frame()) is not None:
        frames.append(frame)
    return frames


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


class TestMask:
    @given(st.binary(max_size=5000), st.binary(min_size=4, max_size=4))
    def test_c_and_python_agree(self, data: bytes, mask: bytes) -> None:
        """The chosen routine and the pure-Python fallback give the same bytes."""
        assert apply_mask(data, mask) == apply_mask_python(data, mask)

    @given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
    def test_is_an_involution(self, data: bytes, mask: bytes) -> None:
        """Masking twice gives the payload back, and matches the RFC's byte loop."""
        assert apply_mask(apply_mask(data, mask), mask) == data
        assert apply_mask_python(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class TestBuild:
    @pytest.mark.parametrize(
        ("size", "head"),
        [
            (0, b"\x82\x00"),
            (125, b"\x82\x7d"),
            (126, b"\x82\x7e\x00\x7e"),
            (65535, b"\x82\x7e\xff\xff"),
        ],
    )
    def test_shortest_length_encoding(self, size: int, head: bytes) -> None:
        """Lengths use the shortest of the 7-bit, 16-bit and 64-bit forms."""
        assert build_frame(Opcode.BINARY, bytes(size)).startswith(head)

    def test_64_bit_length(self) -> None:
        """65,536 bytes and more take the 64-bit form."""
        frame = build_frame(Opcode.BINARY, bytes(65536))
        assert frame[:10] == b"\x82\x7f" + struct.pack("!Q", 65536)

    def test_masked_frame_carries_the_key(self) -> None:
        """A client's frame sets the mask bit, carries the key and the masked payload."""
        frame = build_frame(Opcode.TEXT, b"hello", mask=MASK)
        assert frame[:2] == b"\x81\x85"
        assert frame[2:6] == MASK
        assert apply_mask(frame[6:], MASK) == b"hello"

    def test_fin_bit(self) -> None:
        """A non-final fragment has FIN clear."""
        assert build_frame(Opcode.TEXT, b"a", fin=False)[0] == 0x01

    @pytest.mark.parametrize("size", [0, 1, 125, 126, 3200, 65535, 65536])
    def test_the_audio_shortcut_builds_the_same_bytes(self, size: int) -> None:
        """masked_binary_frame (a client's audio frame) == build_frame, at every length form."""
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        assert masked_binary_frame(payload, MASK) == build_frame(Opcode.BINARY, payload, mask=MASK)


class TestParser:
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.PING]), st.binary(max_size=300)
            ),
            max_size=8,
        ),
        st.lists(st.integers(min_value=0), max_size=20),
        st.booleans(),
    )
    def test_round_trip_under_any_split(
        self, frames: list[tuple[Opcode, bytes]], cuts: list[int], masked: bool
    ) -> None:
        """Frames built, concatenated and cut anywhere parse back to the same frames."""
        frames = [(op, p[:125] if op is Opcode.PING else p) for op, p in frames]
        wire = b"".join(
            build_frame(op, p, mask=os.urandom(4) if masked else None) for op, p in frames
        )
        parser = FrameParser(masked=masked, max_payload=1 << 20)
        got: list[Frame] = []
        for piece in split(wire, cuts):
            parser.feed(piece)
            got.extend(parse_all(parser))
        assert [(f.opcode, f.payload, f.fin) for f in got] == [(op, p, True) for op, p in frames]
        assert parser.buffered == 0

    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=12),
                st.builds(
                    lambda op, payload, masked, fin: build_frame(
                        op, payload, mask=MASK if masked else None, fin=fin
                    ),
                    st.sampled_from(list(Opcode)),
                    st.binary(max_size=300),
                    st.booleans(),
                    st.booleans(),
                ),
            ),
            max_size=6,
        ),
        st.lists(st.integers(min_value=0), max_size=10),
        st.booleans(),
    )
    def test_next_whole_is_next_frame_for_whole_messages(
        self, pieces: list[bytes], cuts: list[int], masked: bool
    ) -> None:
        """Whatever arrives, next_whole gives exactly what next_frame gives for a final
        text or binary frame, and consumes nothing otherwise."""
        wire = b"".join(pieces)
        fast = FrameParser(masked=masked, max_payload=200)
        slow = FrameParser(masked=masked, max_payload=200)
        for piece in split(wire, cuts):
            fast.feed(piece)
            slow.feed(piece)
            while True:
                before = fast.buffered
                whole = fast.next_whole()
                try:
                    frame = slow.next_frame()
                except FrameError:
                    assert whole is None
                    return
                if whole is None:
                    assert fast.buffered == before
                    if frame is None:
                        break
                    assert not (frame.fin and frame.opcode in (Opcode.TEXT, Opcode.BINARY)) or (
                        len(frame.payload) > 200
                    )
                    assert fast.next_frame() == frame
                else:
                    assert frame == Frame(Opcode(whole[0]), whole[1], True)
                assert fast.buffered == slow.buffered

    def test_large_frame_byte_by_byte(self) -> None:
        """A 70,000-byte frame fed one byte at a time parses once, whole."""
        wire = build_frame(Opcode.BINARY, bytes(range(256)) * 273 + b"x" * 112, mask=MASK)
        parser = FrameParser(masked=True, max_payload=1 << 20)
        got = []
        for i in range(len(wire)):
            parser.feed(wire[i : i + 1])
            got.extend(parse_all(parser))
        assert len(got) == 1
        assert len(got[0].payload) == 70000

    @pytest.mark.parametrize(
        ("wire", "masked", "match"),
        [
            (b"\xc2\x00", False, "reserved bits"),
            (b"\x83\x00", False, "unknown opcode"),
            (b"\x09\x00", False, "fragmented control"),
            (b"\x89\x7e\x00\x7e", False, "longer than 125"),
            (b"\x82\x80" + MASK, False, "masked frame from a server"),
            (b"\x82\x00", True, "unmasked frame from a client"),
            (b"\x82\x7f\x80" + bytes(7), False, "most significant bit"),
        ],
    )
    def test_protocol_errors(self, wire: bytes, masked: bool, match: str) -> None:
        """Each per-frame violation raises FrameError with close code 1002."""
        parser = FrameParser(masked=masked, max_payload=1 << 20)
        parser.feed(wire)
        with pytest.raises(FrameError, match=match) as caught:
            parser.next_frame()
        assert caught.value.code == 1002

    def test_too_big_is_refused_from_the_header(self) -> None:
        """A declared length over the bound fails with 1009 before the payload arrives."""
        parser = FrameParser(masked=False, max_payload=1000)
        parser.feed(b"\x82\x7e" + struct.pack("!H", 1001))
        with pytest.raises(FrameError) as caught:
            parser.next_frame()
        assert caught.value.code == 1009

    def test_consumed_prefix_is_dropped(self) -> None:
        """A long run of frames never drained whole keeps the buffer bounded."""
        parser = FrameParser(masked=False, max_payload=1 << 20)
        frame = build_frame(Opcode.BINARY, bytes(3200))
        for _ in range(100):
            parser.feed(frame + frame[:10])
            assert parser.next_frame() is not None
            parser.feed(frame[10:])
            assert parser.next_frame() is not None
            assert len(parser._buf) < 65536 + 2 * len(frame)


class TestRandomMasks:
    def test_masks_come_from_the_source_in_batches(self) -> None:
        """Each call takes the next 4 bytes; the source is read once per batch."""
        reads: list[int] = []

        def source(n: int) -> bytes:
            reads.append(n)
            return bytes((len(reads) * 16 + i) % 256 for i in range(n))

        masks = RandomMasks(source, batch=3)
        got = [masks() for _ in range(7)]
        assert all(len(m) == 4 for m in got)
        assert reads == [12, 12, 12]
        assert len(set(got)) == 7

    def test_a_thread_shares_one_urandom_pool(self) -> None:
        """Clients of one thread draw from one pool; another thread has its own."""
        a, b = WebSocketCore(CLIENT), WebSocketCore(CLIENT)
        assert a._masks is b._masks is thread_masks()
        assert WebSocketCore(CLIENT, random_bytes=lambda n: bytes(n))._masks is not a._masks
        other: list[RandomMasks] = []
        thread = threading.Thread(target=lambda: other.append(thread_masks()))
        thread.start()
        thread.join(timeout=10)
        assert other and other[0] is not thread_masks()
        assert len({thread_masks()() for _ in range(600)}) > 590  # consecutive, fresh bytes
