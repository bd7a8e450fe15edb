"""The simulator's server-side WebSocket: the upgrade and one connection, with a fast lane.

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

import base64
import hashlib
import http
import os
from typing import TYPE_CHECKING, Final, NoReturn, final

import h11
import trio

from adapters.websocket import (
    SERVER,
    Close,
    ConnectionLost,
    Message,
    Ping,
    Violation,
    WebSocketCore,
    WebSocketEvent,
)
from engine.errors import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ServerWebSocket", "UpgradeRequest", "WebSocketClosed", "WouldAwait", "read_upgrade"]

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_READ: Final = 1 << 16
_MAX_HEAD: Final = 1 << 16
_YIELD_EVERY: Final = 16  # messages returned without waiting before a forced checkpoint
_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


class WouldAwait(Exception):
    """:meth:`ServerWebSocket.message_nowait`: the next event needs the awaited path."""


class WebSocketClosed(Exception):
    """The connection is closed (or broken: code 1006)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"{code} {reason}".strip())
        self.code = code
        self.reason = reason


# ------------------------------------------------------------------ the upgrade


@final
class UpgradeRequest:
    """A client's upgrade request, to :meth:`accept` or :meth:`reject` once.

    Attributes:
        path: the request target (path and query; the query may hold an api_key:
            never log it).
        headers: the request headers, names lower-case.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        request: h11.Request,
        max_message_bytes: int,
    ) -> None:
        self._stream = stream
        self._conn = conn
        self.path = request.target.decode("latin-1")
        self.headers: list[tuple[bytes, bytes]] = [(n.lower(), v) for n, v in request.headers]
        self._key = _header(self.headers, b"sec-websocket-key")
        self._max = max_message_bytes

    @property
    def problem(self) -> str | None:
        """Why this is no valid WebSocket upgrade, or None if it is."""
        if self._key is None:
            return "missing Sec-WebSocket-Key"
        if _header(self.headers, b"sec-websocket-version") != b"13":
            return "Sec-WebSocket-Version must be 13"
        return None

    async def reject(
        self, status: int, *, extra_headers: Sequence[tuple[bytes, bytes]] = (), body: bytes = b""
    ) -> None:
        """Answer with an HTTP error response; the connection ends.

        Raises:
            WebSocketClosed: the client left.
        """
        headers = [*extra_headers, (b"content-length", str(len(body)).encode())]
        headers.append((b"connection", b"close"))
        response = h11.Response(status_code=status, headers=headers, reason=_reason(status))
        data = self._conn.send(response) or b""
        if body:
            data += self._conn.send(h11.Data(data=body)) or b""
        data += self._conn.send(h11.EndOfMessage()) or b""
        try:
            await self._stream.send_all(data)
        except _STREAM_ERRORS:
            raise WebSocketClosed(1006, "client left") from None

    async def accept(self, *, fd: int | None = None) -> ServerWebSocket:
        """Answer 101 and return the connection.

        Args:
            fd: the descriptor of the TCP socket under the stream, for the fast
                lane; only when nothing else (a fault plan) may switch the stream.

        Raises:
            WebSocketClosed: the client left.
        """
        assert self._key is not None, "accept() of an invalid upgrade"
        digest = hashlib.sha1(self._key.strip() + _GUID).digest()
        response = h11.InformationalResponse(
            status_code=101,
            reason=b"Switching Protocols",
            headers=[
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", base64.b64encode(digest)),
            ],
        )
        data = self._conn.send(response) or b""
        try:
            await self._stream.send_all(data)
        except _STREAM_ERRORS:
            raise WebSocketClosed(1006, "client left") from None
        core = WebSocketCore(SERVER, max_message_size=self._max)
        trailing, _ = self._conn.trailing_data
        if trailing:
            core.receive_data(trailing)
        return ServerWebSocket(self._stream, core, fd=fd)


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


async def read_upgrade(stream: trio.abc.Stream, *, max_message_bytes: int) -> UpgradeRequest | None:
    """Read a request head from ``stream``.

    Returns:
        The request, or None if the client left or sent no HTTP request (a
        malformed one is answered 400 first).
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            try:
                data = conn.send(h11.Response(status_code=400, headers=[(b"connection", b"close")]))
                await stream.send_all((data or b"") + (conn.send(h11.EndOfMessage()) or b""))
            except (h11.LocalProtocolError, *_STREAM_ERRORS):
                pass
            return None
        if isinstance(event, h11.Request):
            return UpgradeRequest(stream, conn, event, max_message_bytes)
        if event is not h11.NEED_DATA:
            return None
        try:
            conn.receive_data(bytes(await stream.receive_some(_READ)))
        except _STREAM_ERRORS:
            conn.receive_data(b"")


# ------------------------------------------------------------------ the connection


@final
class ServerWebSocket:
    """One accepted connection (server role). Build it with :meth:`UpgradeRequest.accept`.

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
        self._held: WebSocketEvent | None = (
            None  # taken from the core by message_nowait, not handled
        )

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
        if self._held is not None or self._closed is not None:
            raise WouldAwait  # get_message raises WebSocketClosed for a closed one
        event = self._core.next_event()
        if event is None:
            fd = self._fd
            if not read or fd is None:
                return None
            try:
                data = os.read(fd, _READ)
            except BlockingIOError:
                self._drained = True
                return None
            except OSError:
                data = b""
            self._drained = len(data) < _READ
            self._core.receive_data(data or None)
            event = self._core.next_event()
            if event is None:
                return None
        if isinstance(event, Message):
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
            while True:
                try:
                    data = os.read(fd, _READ)
                    break
                except BlockingIOError:
                    self._unyielded = 0
                    await trio.lowlevel.wait_readable(fd)
                except OSError:
                    data = b""
                    break
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
