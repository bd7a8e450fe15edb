"""The sans-IO RFC 6455 connection core for both roles (after the handshake).

Feed it what the socket read (:meth:`WebSocketCore.receive_data`, ``None`` at
EOF), take the events out (:meth:`WebSocketCore.next_event` or
:meth:`WebSocketCore.events`), and write what its send verbs return. It never
does I/O, never reads a clock, never logs and imports no trio.

Events (frozen msgspec Structs, union :data:`WebSocketEvent`):

* :class:`Message`: a whole text (``str``) or binary (``bytes``) message,
  reassembled from its fragments (control frames may come in between);
* :class:`Ping` / :class:`Pong`: the shell answers a ping with
  :meth:`WebSocketCore.pong` (the core does not write on its own);
* :class:`Close`: the peer's close frame (code 1005 when it carried none); the
  shell answers with :meth:`WebSocketCore.close` unless it closed first;
* :class:`Violation`: the peer broke the protocol (a bad frame 1002, invalid
  UTF-8 1007, a message over the bound 1009); the shell sends
  ``close(violation.code)`` and drops the connection. Nothing follows it;
* :class:`ConnectionLost`: the byte stream ended without a close handshake (1006).

Bounds: a message (all its fragments) may hold at most ``max_message_size``
bytes (:data:`DEFAULT_MAX_MESSAGE_SIZE`); more is a :class:`Violation` with code
1009, detected from the frame header before the payload is buffered.

Errors: a send verb the state does not allow raises ``LocalProtocolError``
(see ``_state.py``); nothing else raises.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Final, NoReturn

import msgspec

from engine.errors import LocalProtocolError

from ._state import TRANSITIONS, Input, State
from .frames import (
    CLOSE_MESSAGE_TOO_BIG,
    MAX_CONTROL_PAYLOAD,
    Frame,
    FrameError,
    FrameParser,
    Opcode,
    RandomMasks,
    build_frame,
    masked_binary_frame,
    thread_masks,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Close",
    "ConnectionLost",
    "Message",
    "Ping",
    "Pong",
    "Role",
    "State",
    "Violation",
    "WebSocketCore",
    "WebSocketEvent",
]

DEFAULT_MAX_MESSAGE_SIZE: Final = 4 * 1024 * 1024  # DashScope's largest: realtime audio deltas
CLOSE_NO_STATUS: Final = 1005
CLOSE_ABNORMAL: Final = 1006
CLOSE_INVALID_DATA: Final = 1007
_U16: Final = struct.Struct("!H")


class Role(msgspec.Struct, frozen=True):
    """Which end we are: a client masks what it sends, a server unmasks what it receives."""

    client: bool


CLIENT: Final = Role(client=True)
SERVER: Final = Role(client=False)


class Message(msgspec.Struct, frozen=True, tag=True):
    data: bytes | str


class Ping(msgspec.Struct, frozen=True, tag=True):
    payload: bytes = b""


class Pong(msgspec.Struct, frozen=True, tag=True):
    payload: bytes = b""


class Close(msgspec.Struct, frozen=True, tag=True):
    code: int = CLOSE_NO_STATUS
    reason: str = ""


class Violation(msgspec.Struct, frozen=True, tag=True):
    code: int
    reason: str


class ConnectionLost(msgspec.Struct, frozen=True, tag=True):
    code: int = CLOSE_ABNORMAL


WebSocketEvent = Message | Ping | Pong | Close | Violation | ConnectionLost


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may travel in a close frame (RFC 6455 7.4; 1004-1006, 1015 may not)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or (
        3000 <= code <= 4999
    )


class WebSocketCore:
    """One WebSocket connection's protocol state, for either role.

    Args:
        role: :data:`CLIENT` or :data:`SERVER`.
        max_message_size: the bound on a received message, in bytes.
        random_bytes: the entropy source of a client's masks (``os.urandom``;
            tests may pass a seeded one).
    """

    __slots__ = (
        "_eof",
        "_fragments",
        "_masks",
        "_opcode",
        "_parser",
        "_size",
        "client",
        "state",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.client = role.client
        self.state = State.OPEN
        self._parser = FrameParser(masked=not role.client, max_payload=max_message_size)
        self._masks: RandomMasks | None = None
        if role.client:  # os.urandom's pool is the thread's (1 KB less per connection)
            self._masks = (
                thread_masks() if random_bytes is os.urandom else RandomMasks(random_bytes)
            )
        self._opcode: Opcode | None = None  # of the fragmented message being received
        self._fragments: list[bytes] = []
        self._size = 0
        self._eof = False

    @property
    def max_message_size(self) -> int:
        return self._parser.max_payload

    # ------------------------------------------------------------ sending

    def send_message(self, data: bytes | str) -> bytes:
        """The frame of one whole message (``str``: text, ``bytes``: binary).

        Raises:
            LocalProtocolError: not OPEN (a close went out or came in).
        """
        if self.state is not State.OPEN:  # the table's only SEND_DATA row, inlined: hot path
            self._refuse(Input.SEND_DATA)
        if isinstance(data, str):
            return self._frame(Opcode.TEXT, data.encode())
        masks = self._masks
        if masks is not None:  # a client's binary message (every audio frame): one call
            return masked_binary_frame(data, masks())
        return self._frame(Opcode.BINARY, data)

    def ping(self, payload: bytes = b"") -> bytes:
        """A ping frame (payload at most 125 bytes)."""
        self._control(Input.SEND_PING, payload)
        return self._frame(Opcode.PING, payload)

    def pong(self, payload: bytes = b"") -> bytes:
        """A pong frame, the answer to a :class:`Ping` with its payload."""
        self._control(Input.SEND_PONG, payload)
        return self._frame(Opcode.PONG, payload)

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """Our close frame: to start the handshake, or to answer the peer's.

        ``code`` 1005 (no status) sends an empty close payload. An invalid code
        is refused (``ValueError``); a reason is cut to fit the 125-byte limit.
        """
        if code == CLOSE_NO_STATUS:
            payload = b""
        elif valid_close_code(code):
            payload = _U16.pack(code) + _fit_reason(reason)
        else:
            raise ValueError(f"{code} may not be sent in a close frame")
        self._apply(Input.SEND_CLOSE)
        return self._frame(Opcode.CLOSE, payload)

    def send(self, event: Message | Ping | Pong | Close) -> bytes:
        """The frame of ``event`` (the one verb of house rule R1, over the verbs above)."""
        match event:
            case Message(data):
                return self.send_message(data)
            case Ping(payload):
                return self.ping(payload)
            case Pong(payload):
                return self.pong(payload)
            case Close(code, reason):
                return self.close(code, reason)
        raise TypeError(f"not a WebSocket command: {event!r}")  # pragma: no cover

    def _frame(self, opcode: Opcode, payload: bytes) -> bytes:
        masks = self._masks
        return build_frame(opcode, payload, mask=masks() if masks is not None else None)

    def _control(self, what: Input, payload: bytes) -> None:
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError("a control frame's payload is at most 125 bytes")
        self._apply(what)

    def _apply(self, what: Input) -> None:
        following = TRANSITIONS.get((self.state, what))
        if following is None:
            self._refuse(what)
        self.state = following

    def _refuse(self, what: Input) -> NoReturn:
        raise LocalProtocolError(
            f"cannot {what.value.replace('-', ' ')} in state {self.state.value}"
        )

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: bytes | bytearray | memoryview | None) -> None:
        """Bytes the socket read; ``None`` when it reached EOF (not a checkpoint)."""
        if data is None:
            self._eof = True
        elif self.state is not State.CLOSED and not self._eof:
            self._parser.feed(data)

    def receive_messages(self, data: bytes) -> list[bytes | str]:
        """:meth:`receive_data` for a read that may hold whole messages (a paced peer's):
        the leading whole, final text or binary frames (nothing buffered) come back as
        :meth:`next_event`\\ 's :class:`Message` data would, in order, unbuffered; the
        rest is taken as :meth:`receive_data` takes it, for :meth:`next_event`."""
        messages: list[bytes | str] = []
        if self.state is State.OPEN and self._opcode is None and not self._eof:
            taken = 0
            for opcode, payload, end in self._parser.take_wholes(data):
                message = _data_of(opcode, payload)
                if message is None:
                    break  # text that is not UTF-8: the general path answers it (1007)
                messages.append(message)
                taken = end
            if taken:
                if taken == len(data):
                    return messages
                data = data[taken:]
        self.receive_data(data)
        return messages

    @property
    def pending(self) -> bool:
        """Whether :meth:`next_event` may have an event without new bytes."""
        return self._parser.buffered >= 2 or (self._eof and self.state is not State.CLOSED)

    def events(self) -> Iterator[WebSocketEvent]:
        """Every event the received bytes complete, in order."""
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> WebSocketEvent | None:
        """The next event, or None until more bytes arrive."""
        if self.state is State.OPEN and self._opcode is None:
            whole = self._parser.next_whole()  # a whole unfragmented message: the short way
            if whole is not None:
                if (message := _data_of(*whole)) is None:
                    return self._violation(CLOSE_INVALID_DATA, "a text message that is not UTF-8")
                return Message(message)
        while self.state is State.OPEN or self.state is State.CLOSE_SENT:
            try:
                frame = self._parser.next_frame()
            except FrameError as exc:
                return self._violation(exc.code, exc.reason)
            if frame is None:
                break
            event = self._on_frame(frame)
            if event is not None:
                return event
        if self._eof and self.state is not State.CLOSED:
            lost = self.state is State.OPEN or self.state is State.CLOSE_SENT
            self.state = State.CLOSED
            if lost:
                return ConnectionLost()
        return None

    def _on_frame(self, frame: Frame) -> WebSocketEvent | None:
        opcode = frame.opcode
        if opcode is Opcode.CLOSE:
            return self._on_close(frame.payload)
        if opcode is Opcode.PING:
            return Ping(frame.payload)
        if opcode is Opcode.PONG:
            return Pong(frame.payload)
        # a data frame: a whole message, the first fragment, or a continuation
        if opcode is Opcode.CONTINUATION:
            if self._opcode is None:
                return self._violation(1002, "a continuation frame with no message to continue")
            self._size += len(frame.payload)
            if self._size > self._parser.max_payload:
                return self._violation(
                    CLOSE_MESSAGE_TOO_BIG,
                    f"a message over the limit of {self._parser.max_payload} bytes",
                )
            self._fragments.append(frame.payload)
            if not frame.fin:
                return None
            payload = b"".join(self._fragments)
            opcode = self._opcode
            self._fragments = []
            self._opcode = None
            self._size = 0
        elif self._opcode is not None:
            return self._violation(1002, "a new message before the fragmented one ended")
        elif not frame.fin:
            self._opcode = opcode
            self._fragments = [frame.payload]
            self._size = len(frame.payload)
            return None
        else:
            payload = frame.payload
        if opcode is Opcode.TEXT:
            try:
                return Message(payload.decode())
            except UnicodeDecodeError:
                return self._violation(CLOSE_INVALID_DATA, "a text message that is not UTF-8")
        return Message(payload)

    def _on_close(self, payload: bytes) -> WebSocketEvent:
        if not payload:
            code, reason = CLOSE_NO_STATUS, ""
        elif len(payload) == 1:
            return self._violation(1002, "a close frame with a 1-byte payload")
        else:
            (code,) = _U16.unpack_from(payload)
            if not valid_close_code(code):
                return self._violation(1002, f"a close frame with the invalid code {code}")
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                return self._violation(CLOSE_INVALID_DATA, "a close reason that is not UTF-8")
        self.state = TRANSITIONS[(self.state, Input.RECV_CLOSE)]
        return Close(code, reason)

    def _violation(self, code: int, reason: str) -> Violation:
        self.state = TRANSITIONS[(self.state, Input.RECV_VIOLATION)]
        self._fragments = []
        return Violation(code, reason)


def _data_of(opcode: int, payload: bytes) -> bytes | str | None:
    """A whole message's data: ``bytes`` for binary, ``str`` for text (None: not UTF-8)."""
    if opcode == Opcode.BINARY:
        return payload
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return None


def _fit_reason(reason: str) -> bytes:
    """``reason`` in UTF-8, cut at a character boundary to fit a close frame (123 bytes)."""
    raw = reason.encode()
    if len(raw) <= MAX_CONTROL_PAYLOAD - 2:
        return raw
    return raw[: MAX_CONTROL_PAYLOAD - 2].decode(errors="ignore").encode()
