"""The simulator's server-side WebSocket: one accepted connection, with a fast lane.

The upgrade handshake that builds it (:func:`~.upgrade.read_upgrade`,
:class:`~.upgrade.UpgradeRequest`) is :mod:`.upgrade`; it imports this module, never
the other way round.

Why not trio-websocket here: its reader task, one-message channel and wsproto's per-frame
work cost ~100 µs of CPU per received audio frame, the simulator's whole budget several
times over (tools/bench/simulator.py). This connection has no task of its own:
:meth:`ServerWebSocket.get_message` reads and parses in the caller's task (the
connection's reader, which always reads, so pings are answered in order), and the framing
is the project's sans-IO codec (:mod:`adapters.websocket`, C masking).

The fast lane: on a plain TCP socket (no fault plan may cut it), bytes are read with a
non-blocking ``os.read``, waiting (``wait_readable``) only when nothing is there (known
without a failing read when the last read emptied the buffer); a frame is written with a
non-blocking ``os.write`` when nothing else is being sent, and only the tail the kernel
did not take goes to the awaited path (``send_all`` under the send lock, in order). On any
other stream (memory streams, a fault plan's switchable stream) all I/O goes through it.

:meth:`ServerWebSocket.message_nowait` is the synchronous reader for the process-wide
hub (:mod:`._hub`): one non-blocking read, data messages out, anything else kept for
:meth:`ServerWebSocket.get_message`.

Checkpoints: :meth:`ServerWebSocket.get_message` is a checkpoint whenever it waits, and at
least every 16th message when it never has to (a flooding client cannot starve the other
connections); :meth:`ServerWebSocket.send_message` only when it has to wait (the caller's
loop checkpoints in ``get_message``).

Errors: a closed or broken connection raises :class:`WebSocketClosed` (with the
close code: the client's, ours, or 1006 when the bytes stopped); a client that
breaks the framing is answered with a close frame (1002, 1007 or 1009) first.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Final, NoReturn, final

import trio

from adapters.websocket import (
    Close,
    ConnectionLost,
    Message,
    Ping,
    Violation,
    WebSocketCore,
    WebSocketEvent,
)
from engine.errors import LocalProtocolError

__all__ = ["ServerWebSocket", "WebSocketClosed", "WouldAwait"]

_READ: Final = 1 << 16
_YIELD_EVERY: Final = 16  # messages returned without waiting before a forced checkpoint
_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


def _read_nowait(fd: int) -> bytes | None:
    """One non-blocking read: the bytes (``b""`` at EOF or once the socket broke), or None
    when there are none yet."""
    try:
        return os.read(fd, _READ)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class WouldAwait(Exception):
    """:meth:`ServerWebSocket.message_nowait`: the next event needs the awaited path."""


class WebSocketClosed(Exception):
    """The connection is closed (or broken: code 1006)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"{code} {reason}".strip())
        self.code = code
        self.reason = reason


@final
class ServerWebSocket:
    """One accepted connection (server role).

    Build it with :meth:`.upgrade.UpgradeRequest.accept`.

    Resource handling:
        The stream stays the caller's: :meth:`aclose` does the close handshake
        but does not close it. The descriptor must not be used once the stream
        is closed, so every call must have returned by then.
    """

    def __init__(self, stream: trio.abc.Stream, core: WebSocketCore, *, fd: int | None) -> None:
        self._stream = stream
        self._core = core
        self._fd = fd
        self._send_lock = trio.StrictFIFOLock()
        # (code, reason) once closed: a fresh exception is raised each time, never a stored
        # one, whose traceback would keep this connection's frames alive (#17).
        self._closed: tuple[int, str] | None = None
        self._close_sent = False
        self._broken = False  # a write was cancelled midway: no byte may follow
        self._unyielded = 0
        self._drained = False  # the last read took less than asked: the buffer was empty
        self._held: WebSocketEvent | None = None  # taken by message_nowait, not handled
        # A read's messages after the one returned (≤ 64 KiB): before _held and the core's.
        self._ready: deque[bytes | str] = deque()

    @property
    def closed(self) -> WebSocketClosed | None:
        """Why the connection is closed, or None while it is open."""
        return None if self._closed is None else WebSocketClosed(*self._closed)

    async def get_message(self) -> bytes | str:
        """The next message (``str`` for text); pings are answered on the way.

        Raises:
            WebSocketClosed: the client closed (its close frame is echoed), the
                connection broke, or the client broke the framing (answered
                with a close frame).
        """
        if self._ready:
            return self._ready.popleft()
        while True:
            event, self._held = self._held, None
            if event is None:
                event = self._core.next_event()
            if event is None:
                if self._closed is not None:
                    raise WebSocketClosed(*self._closed)
                await self._receive()
                continue
            if isinstance(event, Message):
                self._unyielded += 1
                if self._unyielded >= _YIELD_EVERY:
                    self._unyielded = 0
                    await trio.lowlevel.checkpoint()
                return event.data
            if isinstance(event, Ping):
                try:
                    await self._write(self._core.pong(event.payload))
                except (WebSocketClosed, LocalProtocolError):
                    pass  # closing, or the next read tells
            elif isinstance(event, Close | Violation):
                # the client's close is echoed; a violation is answered with its code
                self._closed = (event.code, event.reason)
                await self._send_close(event.code, event.reason)
                raise WebSocketClosed(*self._closed)
            elif isinstance(event, ConnectionLost):
                self._closed = self._closed or (event.code, "connection lost")
                raise WebSocketClosed(*self._closed)

    @property
    def fd(self) -> int | None:
        """The socket's descriptor on the fast lane (None off it)."""
        return self._fd

    def message_nowait(self, *, read: bool) -> bytes | str | None:
        """The next data message if there is one without waiting; never a checkpoint.

        For a reader called when the socket is readable (:mod:`._hub`): with ``read``,
        one non-blocking read is made when the parsed bytes hold no whole message.

        Returns:
            The message (``str`` for text), or None if none is ready (or there is no
            fast lane). Anything else the client sent — a ping, its close, a framing
            error, end of file — is kept for :meth:`get_message` and raises.

        Raises:
            WouldAwait: the next event needs :meth:`get_message` (it is kept for it).
        """
        if self._ready:
            return self._ready.popleft()
        if self._held is not None or self._closed is not None:
            raise WouldAwait  # get_message raises WebSocketClosed for a closed one
        core = self._core
        event = core.next_event() if core.pending else None  # bytes parsed before go first
        if event is None:
            fd = self._fd
            if not read or fd is None:
                return None
            data = _read_nowait(fd)
            self._drained = data is None or len(data) < _READ
            if data is None:
                return None
            if data:  # whole messages (a paced client's one, or a backlog): no buffering
                messages = core.receive_messages(data)
                if messages:
                    self._ready.extend(messages[1:])
                    return messages[0]
            else:
                core.receive_data(None)
            event = core.next_event()
            if event is None:
                return None
        if type(event) is Message:
            return event.data
        self._held = event
        raise WouldAwait

    async def _receive(self) -> None:
        """Read more bytes into the reader; EOF or a broken stream closes (1006)."""
        data: bytes | bytearray = b""
        fd = self._fd
        if fd is not None:
            if self._drained:
                # The last read emptied the kernel's buffer: wait before reading, not after
                # a read that would fail (a paced client's frames come one per wake, so this
                # saves a failing syscall and an exception per frame). Level-triggered:
                # bytes that came meanwhile make the wait return at once.
                self._unyielded = 0
                await trio.lowlevel.wait_readable(fd)
            while (read := _read_nowait(fd)) is None:
                self._unyielded = 0
                await trio.lowlevel.wait_readable(fd)
            data = read
            self._drained = len(data) < _READ
        else:
            self._unyielded = 0
            try:
                data = await self._stream.receive_some(_READ)
            except _STREAM_ERRORS:
                data = b""
        self._core.receive_data(data or None)  # None: EOF, the core says ConnectionLost

    async def send_message(self, message: bytes | str) -> None:
        """Send one message: text for ``str``, binary for ``bytes``.

        Raises:
            WebSocketClosed: the connection is closed or broke.
        """
        if self._closed is not None or self._close_sent:
            raise WebSocketClosed(*(self._closed or (1000, "closing")))
        await self._write(self._core.send_message(message))

    def send_message_nowait(self, message: bytes | str) -> bytes:
        """Write one message's frame now, as far as the kernel takes it; never a checkpoint.

        Returns:
            The tail of the frame that was not written (``b""``: all of it went).
            A caller given a tail must hand it to :meth:`send_tail` before anything
            else is sent on this connection; until then no other byte may follow. Off
            the fast lane (no descriptor, or a write already waiting), nothing is
            written and the whole frame comes back.

        Raises:
            WebSocketClosed: the connection is closed or broke.
        """
        if self._closed is not None or self._close_sent or self._broken:
            raise WebSocketClosed(*(self._closed or (1000, "closing")))
        frame = self._core.send_message(message)
        fd = self._fd
        if fd is None or self._send_lock.locked():
            return frame
        try:
            sent = os.write(fd, frame)
        except BlockingIOError:
            return frame
        except OSError:
            self._lost()
        return frame[sent:] if sent < len(frame) else b""

    async def send_tail(self, tail: bytes) -> None:
        """Write the rest of a frame :meth:`send_message_nowait` could not finish.

        Cancellation: a write cancelled midway breaks the connection (nothing may
        follow a partial frame); shield it to finish it.

        Raises:
            WebSocketClosed: the connection broke.
        """
        await self._write(tail)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """The close handshake: send our close frame, wait for the client's.

        Bound it with a deadline: a client that never answers keeps this waiting.
        Never raises; the stream stays open (the caller closes it).
        """
        await self._send_close(code, reason)
        while self._closed is None:
            try:
                await self.get_message()
            except WebSocketClosed:
                break

    async def _send_close(self, code: int, reason: str | None) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        try:
            frame = self._core.close(code, reason or "")
        except (LocalProtocolError, ValueError):
            return  # the core is past closing (or the code may not travel): nothing to say
        try:
            await self._write(frame)
        except WebSocketClosed:
            pass

    async def _write(self, frame: bytes) -> None:
        if self._broken:
            raise WebSocketClosed(1006, "a write was abandoned")
        fd = self._fd
        if fd is not None and not self._send_lock.locked():
            try:
                sent = os.write(fd, frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._lost()
            if sent == len(frame):
                return
            frame = frame[sent:]
        try:
            async with self._send_lock:
                await self._stream.send_all(frame)
        except _STREAM_ERRORS:
            self._lost()
        except BaseException:
            # Cancelled (a send deadline, say) with part of a frame perhaps written:
            # nothing may follow it on this connection.
            self._broken = True
            self._closed = self._closed or (1006, "a write was abandoned")
            raise

    def _lost(self) -> NoReturn:
        self._closed = self._closed or (1006, "connection lost")
        raise WebSocketClosed(*self._closed)
