"""The server role of RFC 6455 framing, sans-IO: client frames in, server frames out.

Theory of operation
-------------------
:class:`FrameReader` takes the bytes a client sent (:meth:`FrameReader.receive_data`)
and yields whole :class:`Message`, :class:`Ping`, :class:`Pong` and :class:`Close`
events (:meth:`FrameReader.next_event`). It keeps one buffer and an offset into it,
so a 3,200-byte audio frame costs one header parse and one unmask (numpy, a
vectorized XOR over 32-bit words), not a pass of Python per byte. Fragmented
messages are joined; control frames may arrive between fragments.

A client that breaks the protocol gets a :class:`FrameError` carrying the close
code to answer with: 1002 (unmasked frame, reserved bits, unknown opcode, bad
control frame or continuation), 1007 (text that is not UTF-8), 1009 (a message
over the size limit). After a :class:`FrameError` or a :class:`Close` the reader
is done: every later call raises (the error is sticky).

:func:`server_frame` builds one unmasked server frame; :func:`close_payload` the
body of a close frame. No I/O, no clock, no trio.
"""

from __future__ import annotations

import struct
from typing import Final, final

import msgspec
import numpy as np

__all__ = [
    "Close",
    "FrameError",
    "FrameReader",
    "Message",
    "Ping",
    "Pong",
    "close_payload",
    "server_frame",
]

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_DATA: Final = frozenset({OP_CONT, OP_TEXT, OP_BINARY})
_CONTROL: Final = frozenset({OP_CLOSE, OP_PING, OP_PONG})
_COMPACT_AT: Final = 1 << 16  # drop consumed bytes from the buffer past this offset
# Close codes a peer may send (RFC 6455 §7.4.1, §7.4.2; 1005, 1006, 1015 never go on the wire).
_RESERVED_CODES: Final = frozenset({1004, 1005, 1006, 1015})


class Message(msgspec.Struct, frozen=True):
    """A whole data message: ``str`` for text, ``bytes`` for binary."""

    data: bytes | str


class Ping(msgspec.Struct, frozen=True):
    payload: bytes


class Pong(msgspec.Struct, frozen=True):
    payload: bytes


class Close(msgspec.Struct, frozen=True):
    """The client's close frame; ``code`` 1005 when it carried none."""

    code: int
    reason: str


Event = Message | Ping | Pong | Close


class FrameError(Exception):
    """The client broke the framing; close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(payload: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (RFC 6455 §5.3)."""
    n = len(payload)
    if n < 32:
        return bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    words = n >> 2
    head = np.frombuffer(payload, dtype=np.uint32, count=words)
    out: bytes = (head ^ np.frombuffer(key, dtype=np.uint32)[0]).tobytes()
    if n & 3:
        tail = bytes(payload[words << 2 :])
        out += bytes(b ^ key[i] for i, b in enumerate(tail))
    return out


@final
class FrameReader:
    """Parses client frames into events.

    Args:
        max_message_bytes: the largest data message accepted (1009 above it).
    """

    def __init__(self, max_message_bytes: int) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max = max_message_bytes
        self._parts: list[bytes] = []  # fragments of the message being joined
        self._parts_size = 0
        self._opcode: int | None = None  # the opcode of that message
        self._done: FrameError | None = None
        self._closed = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes the client sent."""
        if self._pos and self._pos >= len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > _COMPACT_AT:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Event | None:
        """The next whole event, or None until more bytes arrive.

        Raises:
            FrameError: the client broke the framing (sticky).
        """
        if self._done is not None:
            raise self._done
        if self._closed:
            return None
        try:
            while True:
                frame = self._next_frame()
                if frame is None:
                    return None
                event = self._event(*frame)
                if event is not None:
                    return event
        except FrameError as exc:
            self._done = exc
            raise

    def _next_frame(self) -> tuple[int, bool, bytes] | None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 2:
            return None
        b0, b1 = buf[pos], buf[pos + 1]
        if b0 & 0x70:
            raise FrameError(1002, "reserved bits set (no extension was negotiated)")
        if not b1 & 0x80:
            raise FrameError(1002, "client frames must be masked")
        n = b1 & 0x7F
        head = 2
        if n == 126:
            if avail < 4:
                return None
            (n,) = struct.unpack_from("!H", buf, pos + 2)
            head = 4
        elif n == 127:
            if avail < 10:
                return None
            (n,) = struct.unpack_from("!Q", buf, pos + 2)
            head = 10
        opcode, fin = b0 & 0x0F, bool(b0 & 0x80)
        if opcode in _CONTROL:
            if n > 125 or not fin:
                raise FrameError(1002, "control frames must be unfragmented and ≤ 125 bytes")
        elif opcode not in _DATA:
            raise FrameError(1002, f"unknown opcode {opcode:#x}")
        elif n + self._parts_size > self._max:
            raise FrameError(1009, f"message over {self._max} bytes")
        if avail < head + 4 + n:
            return None
        start = pos + head + 4
        key = bytes(buf[start - 4 : start])
        payload = unmask(memoryview(buf)[start : start + n], key)
        self._pos = start + n
        return opcode, fin, payload

    def _event(self, opcode: int, fin: bool, payload: bytes) -> Event | None:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode == OP_CLOSE:
            self._closed = True
            return _parse_close(payload)
        if opcode == OP_CONT:
            if self._opcode is None:
                raise FrameError(1002, "continuation frame without a message to continue")
        elif self._opcode is not None:
            raise FrameError(1002, "new message before the last one ended")
        else:
            self._opcode = opcode
        if not fin:
            self._parts.append(payload)
            self._parts_size += len(payload)
            return None
        if self._parts:
            self._parts.append(payload)
            payload = b"".join(self._parts)
            self._parts, self._parts_size = [], 0
        kind, self._opcode = self._opcode, None
        if kind == OP_BINARY:
            return Message(payload)
        try:
            return Message(payload.decode("utf-8"))
        except UnicodeDecodeError:
            raise FrameError(1007, "text message is not valid UTF-8") from None


def _parse_close(payload: bytes) -> Close:
    if not payload:
        return Close(1005, "")
    if len(payload) == 1:
        raise FrameError(1002, "close frame with a 1-byte body")
    (code,) = struct.unpack_from("!H", payload)
    if code < 1000 or code in _RESERVED_CODES or 1016 <= code < 3000 or code >= 5000:
        raise FrameError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(1007, "close reason is not valid UTF-8") from None
    return Close(code, reason)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def close_payload(code: int, reason: str | None) -> bytes:
    """A close frame's body; code 1005 means none (an empty body)."""
    if code == 1005:
        return b""
    return struct.pack("!H", code) + (reason or "").encode()[:123]
