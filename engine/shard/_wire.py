"""The messages between a ``steno`` parent and its worker processes, and their framing.

Sans-IO: :class:`Framer` turns messages into bytes and bytes back into messages;
it never touches a pipe, a clock or trio.

Each message is one frame: a 4-byte big-endian length, then the message as
msgpack (a tagged msgspec Struct, tag field ``type``). The parent writes
:data:`ToWorker` messages to the worker's stdin; the worker writes
:data:`FromWorker` messages to the pipe that was its stdout. Events ride inside
:class:`Out` as the engine's own :data:`~engine.events.EventUnion`, so the
parent's console prints exactly what it would have printed for a stream of its
own.

The API key travels in :class:`Setup` (``template.session.api_key``), on the
pipe: never in argv, where ``ps`` shows it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Final

import msgspec

from engine.config import Secret
from engine.events import EventUnion, StreamEnded
from engine.pipeline import FileStreamConfig
from engine.policy import RateLimit

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "MAX_FRAME_BYTES",
    "Drain",
    "Finished",
    "Framer",
    "FromWorker",
    "Hello",
    "Job",
    "NoMore",
    "Out",
    "ProtocolViolation",
    "Setup",
    "Stop",
    "ToWorker",
    "Want",
]

MAX_FRAME_BYTES: Final = 16 << 20
"""The largest frame either side accepts; a longer length is a broken peer."""

_HEADER: Final = struct.Struct(">I")


class ProtocolViolation(Exception):
    """The peer sent bytes that are not a frame of an expected message."""


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag=True, forbid_unknown_fields=True):
    """Base of every message (tag field ``type`` = class name)."""


# ----------------------------------------------------------- parent -> worker


class Setup(_Message, frozen=True):
    """The first message to a worker: how to run every file it will be given.

    Attributes:
        template: every file's settings but its own (``path``, ``session.stream``
            and ``output_stem`` are filled in by each :class:`Job`); it carries the
            endpoint and the API key.
        jobs: files the worker streams at once (its part of ``--jobs``).
        log_json: log JSON lines (else the console renderer), as the parent does.
        log_level: the least severe level logged (``logging.INFO`` …).
        console_tty: the parent's console draws a status line (a terminal): off
            one, the worker sends up only what the console prints
            (:func:`engine.actors.console.shown`), not every partial.
        translate: the console is in translation mode (what it prints differs).
        start_limits: the run's task-start budgets per model family, before the
            worker's share (``STENO_RATE_SHARE``); None: the service's.
    """

    template: FileStreamConfig
    jobs: int
    log_json: bool
    log_level: int
    console_tty: bool = True
    translate: bool = False
    start_limits: dict[str, RateLimit] | None = None


class Job(_Message, frozen=True):
    """Stream this file (the ``index``-th of the command line) now."""

    index: int
    path: str
    stream: str
    stem: str


class Drain(_Message, frozen=True):
    """Finish every stream gracefully (the first Ctrl-C); no more files will come."""


class NoMore(_Message, frozen=True):
    """No more files: finish the ones you have, then say goodbye and exit."""


class Stop(_Message, frozen=True):
    """Stop at once (the second Ctrl-C): cancel every stream and exit."""


ToWorker = Setup | Job | Drain | NoMore | Stop

# ----------------------------------------------------------- worker -> parent


class Hello(_Message, frozen=True):
    """The worker is up (its imports done) and waits for :class:`Setup`."""

    pid: int


class Want(_Message, frozen=True):
    """The worker can take ``n`` more files (its first one says it is ready)."""

    n: int


class Out(_Message, frozen=True):
    """One event of a stream for the parent's console."""

    event: EventUnion


class Finished(_Message, frozen=True):
    """File ``index`` is over; every :class:`Out` of it came before this."""

    index: int
    ended: StreamEnded


FromWorker = Hello | Want | Out | Finished


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Secret):
        return obj.reveal()
    raise NotImplementedError(f"cannot send {type(obj).__name__}")


def _dec_hook(kind: type, obj: Any) -> Any:
    if kind is Secret and isinstance(obj, str):
        return Secret(obj)
    raise NotImplementedError(f"cannot receive {kind.__name__}")


class Framer:
    """Frames outgoing messages and parses incoming bytes into messages of ``kind``.

    Args:
        kind: the union of messages this side receives (:data:`ToWorker` or
            :data:`FromWorker`).

    :meth:`receive_data` may be fed any split of the byte stream; :meth:`messages`
    yields every message completed so far. ``receive_data(b"")`` or ``None`` is the
    end of the stream: a frame left half-read is then a violation.
    """

    def __init__(self, kind: Any) -> None:
        self._encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(
            kind, dec_hook=_dec_hook
        )
        self._buffer = bytearray()
        self._closed = False

    def frame(self, message: ToWorker | FromWorker) -> bytes:
        """``message`` as one frame, ready to write."""
        body = self._encoder.encode(message)
        if len(body) > MAX_FRAME_BYTES:
            raise ProtocolViolation(f"a {type(message).__name__} of {len(body)} bytes is too big")
        return _HEADER.pack(len(body)) + body

    def receive_data(self, data: bytes | bytearray | None) -> None:
        """Take bytes from the peer; empty or None means it closed its end."""
        if not data:
            self._closed = True
            return
        self._buffer += data

    @property
    def closed(self) -> bool:
        """The peer closed its end (every whole message before it is still yielded)."""
        return self._closed

    def messages(self) -> Iterator[Any]:
        """Every message completed so far, in order.

        Raises:
            ProtocolViolation: a length over :data:`MAX_FRAME_BYTES`, a body that
                does not decode, or a frame cut off by the end of the stream.
        """
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > MAX_FRAME_BYTES:
                raise ProtocolViolation(f"a frame of {size} bytes announced")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            try:
                yield self._decoder.decode(body)
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                raise ProtocolViolation(f"a message that does not decode: {exc}") from None
        if self._closed and self._buffer:
            raise ProtocolViolation(f"the stream ended inside a frame ({len(self._buffer)} bytes)")
