"""RFC 6455 frames: building them, and an incremental parser (sans-IO, no trio).

Section 5 of the RFC, for both roles. A client masks every frame it sends and
must fail a connection that receives a masked frame; a server does the
opposite. No extension is negotiated, so the three reserved bits must be zero.

The parser is fed bytes in pieces of any size (:meth:`FrameParser.feed`) and
hands back whole frames (:meth:`FrameParser.next_frame`), unmasked. It checks
everything a single frame can violate: reserved bits, unknown opcodes, control
frames fragmented or longer than 125 bytes, the mask bit of the wrong role, and
a declared length over the parser's bound (checked from the header, before the
payload is buffered). Each violation raises :class:`FrameError` with the close
code the RFC asks for (1002, or 1009 for a frame that is too big). What needs
more than one frame (continuations, UTF-8 of text, close payloads) is the
connection's business (``protocol.py``).
"""

from __future__ import annotations

import enum
import os
import struct
import threading
from collections.abc import Callable
from typing import Final

import msgspec

from ._mask import apply_mask

__all__ = [
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_PROTOCOL_ERROR",
    "MAX_CONTROL_PAYLOAD",
    "Frame",
    "FrameError",
    "FrameParser",
    "MaskSource",
    "Opcode",
    "RandomMasks",
    "build_frame",
    "masked_binary_frame",
    "thread_masks",
]

MAX_CONTROL_PAYLOAD: Final = 125
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_MESSAGE_TOO_BIG: Final = 1009


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8


_OPCODES: Final = {int(op): op for op in Opcode}


class Frame(msgspec.Struct, frozen=True):
    """One received frame, its payload already unmasked."""

    opcode: Opcode
    payload: bytes
    fin: bool = True


class FrameError(Exception):
    """The peer sent a frame the RFC forbids; fail the connection with ``code``."""

    def __init__(self, reason: str, code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


_HEAD: Final = struct.Struct("!BB")
_HEAD16: Final = struct.Struct("!BBH")
_HEAD64: Final = struct.Struct("!BBQ")
_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")
_MAX_LENGTH: Final = (1 << 63) - 1  # the RFC: the most significant bit of the 64-bit length is 0


def build_frame(
    opcode: Opcode, payload: bytes, *, mask: bytes | None = None, fin: bool = True
) -> bytes:
    """One frame: header, the 4-byte ``mask`` if given (a client's), the (masked) payload.

    The length uses the shortest of the three encodings, as the RFC requires.
    The caller checks the control-frame limits (``protocol.py`` does).
    """
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    maskbit = 0x80 if mask is not None else 0
    if n < 126:
        head = _HEAD.pack(first, maskbit | n)
    elif n < 65536:
        head = _HEAD16.pack(first, maskbit | 126, n)
    else:
        head = _HEAD64.pack(first, maskbit | 127, n)
    if mask is None:
        return head + payload
    return b"".join((head, mask, apply_mask(payload, mask)))


def masked_binary_frame(payload: bytes, mask: bytes) -> bytes:
    """``build_frame(Opcode.BINARY, payload, mask=mask)``, the same bytes, fewer steps.

    A client sends every audio frame this way: one final binary frame, masked.
    """
    n = len(payload)
    if n < 126:
        head = _HEAD.pack(0x82, 0x80 | n)
    elif n < 65536:
        head = _HEAD16.pack(0x82, 0xFE, n)
    else:
        head = _HEAD64.pack(0x82, 0xFF, n)
    return b"".join((head, mask, apply_mask(payload, mask)))


class FrameParser:
    """Incremental frame parser for one direction of one connection.

    Args:
        masked: whether the peer's frames must be masked (True for a server).
        max_payload: the largest payload accepted, in bytes; a header declaring
            more raises :class:`FrameError` (code 1009) before anything is buffered.

    Buffering: at most one frame header plus ``max_payload`` bytes are kept,
    plus whatever one :meth:`feed` brought beyond the frame being parsed (the
    caller bounds its reads).
    """

    __slots__ = ("_buf", "_masked", "_pos", "max_payload")

    def __init__(self, *, masked: bool, max_payload: int) -> None:
        self._masked = masked
        self.max_payload = max_payload
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes (not a checkpoint: nothing here is async)."""
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None until more bytes arrive.

        Raises:
            FrameError: the frame breaks the RFC; the parser is unusable after it.
        """
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 2:
            return None
        first, second = _HEAD.unpack_from(buf, pos)
        if first & 0x70:
            raise FrameError("reserved bits set without a negotiated extension")
        opcode = _OPCODES.get(first & 0x0F)
        if opcode is None:
            raise FrameError(f"unknown opcode {first & 0x0F:#x}")
        fin = bool(first & 0x80)
        if bool(second & 0x80) is not self._masked:
            raise FrameError(
                "an unmasked frame from a client"
                if self._masked
                else "a masked frame from a server"
            )
        length = second & 0x7F
        at = pos + 2
        if length == 126:
            if avail < 4:
                return None
            (length,) = _U16.unpack_from(buf, at)
            at += 2
        elif length == 127:
            if avail < 10:
                return None
            (length,) = _U64.unpack_from(buf, at)
            at += 8
            if length > _MAX_LENGTH:
                raise FrameError("a 64-bit length with its most significant bit set")
        if opcode >= 0x8:
            if not fin:
                raise FrameError("a fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                raise FrameError("a control frame longer than 125 bytes")
        elif length > self.max_payload:
            raise FrameError(
                f"a frame of {length} bytes exceeds the limit of {self.max_payload}",
                CLOSE_MESSAGE_TOO_BIG,
            )
        mask_at = at
        if self._masked:
            at += 4
        end = at + length
        if len(buf) < end:
            return None
        payload = bytes(buf[at:end])
        if self._masked:
            payload = apply_mask(payload, bytes(buf[mask_at:at]))
        self._consumed(end)
        return Frame(opcode, payload, fin)

    def _consumed(self, end: int) -> None:
        """The buffer up to ``end`` is parsed: drop it when all of it is, or once it is long."""
        buf = self._buf
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > 65536:  # drop a long consumed prefix once, not per frame
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end

    def take_wholes(self, data: bytes) -> list[tuple[int, bytes, int]]:
        """The whole, final text or binary frames at the start of ``data``, without buffering.

        The fast path of a reader whose peer sends one message per read (a paced
        client), or a few that queued while the reader was busy: with nothing buffered,
        each leading final text (opcode 1) or binary (opcode 2) frame of the expected
        masking, within ``max_payload``, comes back as ``(opcode, payload, end)`` —
        unmasked, ``end`` the offset in ``data`` just past it — until a frame that is
        anything else (a fragment, a control frame, anything the RFC forbids) or not all
        there. The parser is left as it was: :meth:`feed` it ``data[end:]`` past the last
        frame taken (or all of ``data`` if none was), and :meth:`next_frame` parses the
        rest (and reports any violation).
        """
        if self._pos != len(self._buf):
            return []
        masked = self._masked
        max_payload = self.max_payload
        size = len(data)
        frames: list[tuple[int, bytes, int]] = []
        pos = 0
        while pos < size:
            found = _simple_frame(data, pos, masked, max_payload)
            if found is None or found[2] > size:
                break
            opcode, at, end = found
            if masked:
                payload = apply_mask(memoryview(data)[at:end], data[at - 4 : at])
            else:
                payload = data[at:end]
            frames.append((opcode, payload, end))
            pos = end
        return frames

    def next_whole(self) -> tuple[int, bytes] | None:
        """The next frame if it is a whole, final text or binary one: its opcode and payload.

        :meth:`next_frame`'s fast path for what a paced peer sends (no :class:`Frame`
        is built). None when the next frame is anything else or not all there yet,
        with nothing consumed: :meth:`next_frame` then parses it (and reports any
        violation).
        """
        buf = self._buf
        pos = self._pos
        found = _simple_frame(buf, pos, self._masked, self.max_payload)
        if found is None or found[2] > len(buf):
            return None
        opcode, at, end = found
        if self._masked:
            with memoryview(buf) as view:
                payload = apply_mask(view[at:end], bytes(view[at - 4 : at]))
        else:
            payload = bytes(buf[at:end])
        self._consumed(end)
        return opcode, payload


def _simple_frame(
    data: bytes | bytearray, pos: int, masked: bool, max_payload: int
) -> tuple[int, int, int] | None:
    """``(opcode, payload start, payload end)`` of a final text or binary frame at ``pos``.

    None if the header there is not all in ``data``, or belongs to any other frame: a
    fragment, a control frame, reserved bits, the wrong masking, a payload over
    ``max_payload`` or 64 KiB (the general parser handles those, and the errors).
    The payload may extend past ``data`` (not all received yet); the mask, when
    ``masked``, is the 4 bytes before the payload's start.
    """
    n = len(data) - pos
    if n < 2:
        return None
    first = data[pos]
    if first != 0x82 and first != 0x81:  # FIN, no reserved bits, binary or text
        return None
    second = data[pos + 1]
    if (second >= 0x80) is not masked:
        return None
    length = second & 0x7F
    at = pos + 2
    if length == 126:
        if n < 4:
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        at += 2
    elif length == 127:
        return None  # over 64 KiB: rare, the general path
    if length > max_payload:
        return None
    if masked:
        at += 4
        if at > len(data):
            return None
    return first & 0x0F, at, at + length


MaskSource = Callable[[], bytes]
"""Returns a fresh 4-byte mask each call."""


class RandomMasks:
    """Masks from the OS's CSPRNG, read in batches (RFC 6455 5.3: unpredictable masks).

    ``os.urandom`` per frame is a system call; one read of ``4 * batch`` bytes
    serves ``batch`` frames, and every mask is still unpredictable.
    """

    __slots__ = ("_at", "_pool", "_random_bytes", "_size")

    def __init__(self, random_bytes: Callable[[int], bytes], batch: int = 256) -> None:
        self._random_bytes = random_bytes
        self._size = 4 * batch
        self._pool = b""
        self._at = 0

    def __call__(self) -> bytes:
        at = self._at
        if at >= len(self._pool):
            self._pool = self._random_bytes(self._size)
            at = 0
        self._at = at + 4
        return self._pool[at : at + 4]


_THREAD = threading.local()


def thread_masks() -> RandomMasks:
    """This thread's :class:`RandomMasks` from ``os.urandom``, shared by its connections.

    A pool is 1 KB: one per thread instead of one per connection (a thousand
    streams of one trio run hold one). Masks stay unpredictable: each comes from
    the CSPRNG and is handed out once. Per thread, because the pool is not locked.
    """
    masks: RandomMasks | None = getattr(_THREAD, "masks", None)
    if masks is None:
        masks = _THREAD.masks = RandomMasks(os.urandom)
    return masks
