"""The simulator's side of the WebSocket upgrade: read the request head, accept or reject.

:func:`read_upgrade` reads one HTTP/1.1 request head with h11 (at most ``_MAX_HEAD``
bytes) and hands back an :class:`UpgradeRequest`; the server looks at its path and
headers and answers it once: :meth:`UpgradeRequest.reject` with an HTTP error (the
connection ends), or :meth:`UpgradeRequest.accept` with ``101 Switching Protocols``,
which builds the connection (:class:`~.websocket.ServerWebSocket`) over the same
stream, with any bytes the client sent after the head already in its parser.

This module imports :mod:`.websocket` (the connection it builds); that module never
imports this one, so the two form no cycle.

Cancellation: every call here is a plain read or write of the stream; cancelled, the
stream is left mid-request and the caller closes it.

Errors: a client that left raises :class:`~.websocket.WebSocketClosed` (1006) from
:meth:`~UpgradeRequest.accept` and :meth:`~UpgradeRequest.reject`; :func:`read_upgrade`
answers a malformed head ``400`` and returns None.
"""

from __future__ import annotations

import base64
import hashlib
import http
from typing import TYPE_CHECKING, Final, final

import h11
import trio

from adapters.websocket import SERVER, WebSocketCore

from .websocket import ServerWebSocket, WebSocketClosed

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["UpgradeRequest", "read_upgrade"]

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_READ: Final = 1 << 16
_MAX_HEAD: Final = 1 << 16
_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


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
