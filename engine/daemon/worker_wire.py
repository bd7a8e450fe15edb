"""The pipes between the daemon and its worker processes: typed msgspec messages, framed.

Each worker has three pipes to the parent::

    parent ──stdin──►  worker    Start, then Reload / Drain / Cancel      (control)
    parent ◄─stdout──  worker    Report every second, Stopped at the end  (state)
    parent ◄─stderr──  worker    its JSON log lines, relayed to the daemon's one stdout

A message on the first two is one frame: a 4-byte big-endian length, then the
message as msgpack (a tagged union, so :class:`FrameReader` returns the right
Struct). A frame longer than :data:`MAX_FRAME` is refused (a bound, not a buffer:
the sender is broken).

Why pushed snapshots on pipes rather than an endpoint per worker that the parent
scrapes: the parent learns of a dead worker by end of file at once and of a hung
one by the missing report, a worker learns of a dead parent the same way (rule 2
of ``adapters.children``), nothing listens on a port, and /healthz answers from
memory without waiting on N scrapes. The cost, measured (CPU time, one report):
300 streams in a worker, 0.27 MB, the worker ~4.4 ms (building the snapshot 3.8,
encoding 0.7) and the parent ~2.6 ms to decode, under 0.5 % of a core each at one
report a second; 1,000 streams, 0.9 MB, ~23 ms and ~18 ms (about 2 %).

The API key travels in :class:`Start` and :class:`Reload`, never in an argument or
the environment (which other users' ``ps`` could see); their ``repr`` hides it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

import msgspec

from engine.daemon.config import DaemonConfig
from engine.daemon.metrics import DaemonSnapshot
from engine.errors import StenoError

if TYPE_CHECKING:
    import trio

__all__ = [
    "MAX_FRAME",
    "Cancel",
    "Drain",
    "FrameReader",
    "Message",
    "Reload",
    "Report",
    "Start",
    "Stopped",
    "WireError",
    "encode",
]

MAX_FRAME: Final = 64 * 1024 * 1024
_HEADER: Final = struct.Struct(">I")


class WireError(StenoError):
    """A worker pipe carried something that is not a frame of ours (a broken peer)."""


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of every message on a worker pipe."""


class Start(_Message, frozen=True):
    """The worker's first instruction: run these streams (parent -> worker)."""

    worker: int
    workers: int
    config: DaemonConfig  # the daemon's file with this worker's streams only
    url: str
    api_key: str

    def __repr__(self) -> str:
        return f"Start(worker={self.worker}, workers={self.workers}, url={self.url!r}, api_key=***)"


class Reload(_Message, frozen=True):
    """Apply a new configuration by stream id (parent -> worker; SIGHUP)."""

    config: DaemonConfig
    url: str
    api_key: str

    def __repr__(self) -> str:
        return f"Reload(url={self.url!r}, api_key=***)"


class Drain(_Message, frozen=True):
    """Finish every stream within the drain deadline, then exit (parent -> worker)."""


class Cancel(_Message, frozen=True):
    """Stop now, without finish-task (parent -> worker; a second signal)."""


class Report(_Message, frozen=True):
    """The worker's state (worker -> parent, every second and at the end)."""

    snapshot: DaemonSnapshot


class Stopped(_Message, frozen=True):
    """The worker's daemon has ended; ``clean``: every stream drained in time."""

    clean: bool


Message = Start | Reload | Drain | Cancel | Report | Stopped

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    """One frame: the length, then the msgpack of ``message``."""
    body = _ENCODER.encode(message)
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Reads frames from one byte stream (a pipe).

    Not safe for two tasks at once (neither is the stream).
    """

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = await self._stream.receive_some(max(65536, size - len(self._buffer)))
            if not chunk:
                return False
            self._buffer += chunk
        return True

    async def receive(self) -> Message | None:
        """The next message, or None at a clean end of file (between frames).

        Cancellation: a cancelled receive may leave a partial frame buffered; the
        next call continues it.

        Raises:
            WireError: end of file inside a frame, a frame above :data:`MAX_FRAME`,
                or bytes that are not one of our messages.
        """
        if not await self._fill(_HEADER.size):
            if self._buffer:
                raise WireError("the pipe ended inside a frame header")
            return None
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > MAX_FRAME:
            raise WireError(f"a frame of {size} bytes (the bound is {MAX_FRAME})")
        if not await self._fill(_HEADER.size + size):
            raise WireError("the pipe ended inside a frame")
        body = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
        del self._buffer[: _HEADER.size + size]
        try:
            return _DECODER.decode(body)
        except msgspec.DecodeError as exc:
            raise WireError(f"not a worker message: {exc}") from None
