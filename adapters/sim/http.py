"""Plain HTTP beside the WebSockets on the simulator's one port: sniffing, and an h11 server.

:func:`sniff` reads a new connection's request head and says whether it is a
WebSocket upgrade (``Upgrade: websocket``) — those go to trio-websocket as
before — or a plain request for :func:`serve_http`. On a TCP socket the head is
only *peeked* (``MSG_PEEK``), so the WebSocket layer gets the untouched socket
(fault plans still reset it abortively); on any other stream the bytes read are
replayed through :class:`PrefixStream`.

:func:`serve_http` is h11's trio server loop: requests in order on one
connection (keep-alive, with an idle deadline), each answered by an async
handler; every read has a deadline. The handler gets a nursery that outlives
the connection's requests, so work a request starts (a batch task) keeps
running after the client has gone, until the server stops.
"""

from __future__ import annotations

import http
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Final, final

import h11
import msgspec
import structlog
import trio

__all__ = [
    "HttpLimits",
    "HttpRequest",
    "HttpResponse",
    "PrefixStream",
    "json_response",
    "serve_http",
    "sniff",
]

_log = structlog.get_logger()

_MAX_HEAD: Final = 1 << 16
_PEEK_POLL_S: Final = 0.005  # only while a head arrives in pieces: a peek cannot wait for more
_READ: Final = 1 << 16


class HttpLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Deadlines and sizes of the HTTP server.

    Attributes:
        head_timeout_s: a request head (and body) must arrive within this.
        keep_alive_s: an idle keep-alive connection is closed after this.
        send_timeout_s: a response must be written within this (a client that
            stops reading is dropped).
        max_body_bytes: a larger request body gets HTTP 413.
    """

    head_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    send_timeout_s: float = 60.0
    max_body_bytes: int = 1 << 20


class HttpRequest(msgspec.Struct, frozen=True):
    """One request; header names are lower-case."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urllib.parse.urlsplit(self.target).query

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        key = name.lower().encode("latin-1")
        for header, value in self.headers:
            if header == key:
                return value.decode("latin-1")
        return None


class HttpResponse(msgspec.Struct, frozen=True):
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"


def json_response(status: int, payload: object) -> HttpResponse:
    return HttpResponse(status, msgspec.json.encode(payload))


Handler = Callable[[HttpRequest, trio.Nursery], Awaitable[HttpResponse]]


# ------------------------------------------------------------------ sniffing


@final
class PrefixStream(trio.abc.Stream):
    """A stream that first returns ``prefix``, then reads on from ``inner``."""

    def __init__(self, prefix: bytes, inner: trio.abc.Stream) -> None:
        self._prefix = prefix
        self.inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            n = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def sniff(stream: trio.abc.Stream, timeout_s: float) -> tuple[trio.abc.Stream, bool] | None:
    """Look at a new connection's request head without taking it away.

    Returns:
        The stream to serve (``stream`` itself on TCP, else a :class:`PrefixStream`
        replaying what was read) and whether the request is a WebSocket upgrade;
        None if the client sent no head within ``timeout_s`` or left — then
        ``stream`` is already closed.

    Resource handling:
        ``stream`` is closed here when None is returned or on cancellation;
        otherwise the returned stream owns it.
    """
    head = b""
    try:
        with trio.move_on_after(timeout_s):
            if isinstance(stream, trio.SocketStream):
                head = await _peek_head(stream)
            else:
                head = await _read_head(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        head = b""
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    if not head:
        await trio.aclose_forcefully(stream)
        return None
    served = stream if isinstance(stream, trio.SocketStream) else PrefixStream(head, stream)
    return served, _is_upgrade(head)


async def _peek_head(stream: trio.SocketStream) -> bytes:
    sock = stream.socket
    while True:
        data = await sock.recv(_MAX_HEAD, socket.MSG_PEEK)
        if not data or b"\r\n\r\n" in data or len(data) >= _MAX_HEAD:
            return data
        await trio.sleep(_PEEK_POLL_S)


async def _read_head(stream: trio.abc.Stream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < _MAX_HEAD:
        chunk = await stream.receive_some(_READ)
        if not chunk:
            break
        data += chunk
    return data


def _is_upgrade(head: bytes) -> bool:
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    for line in lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


# ------------------------------------------------------------------ serving


async def serve_http(stream: trio.abc.Stream, handler: Handler, limits: HttpLimits) -> None:
    """Serve HTTP/1.1 requests on ``stream`` until the client is done, then close it.

    The handler's nursery stays open after the stream is closed: this returns
    once the work the handler started there has ended.

    Resource handling:
        ``stream`` is owned from the call on and always closed.

    Error handling:
        A malformed request gets 400, a too-large body 413, a head that does
        not arrive within ``head_timeout_s`` closes the connection; an
        exception of the handler becomes 500 (and is logged).
    """
    async with trio.open_nursery() as nursery:
        try:
            await _serve(stream, handler, limits, nursery)
        finally:
            await trio.aclose_forcefully(stream)


async def _serve(
    stream: trio.abc.Stream, handler: Handler, limits: HttpLimits, nursery: trio.Nursery
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    first = True
    while True:
        request: HttpRequest | HttpResponse | None = None
        with trio.move_on_after(limits.head_timeout_s if first else limits.keep_alive_s):
            request = await _read_request(conn, stream, limits)
        first = False
        if request is None:
            return
        if isinstance(request, HttpResponse):
            response = request
        else:
            try:
                response = await handler(request, nursery)
            except Exception:
                _log.exception("http.handler_crashed", path=request.path)
                response = json_response(500, {"code": "InternalError", "message": "crashed"})
        sent = False
        with trio.move_on_after(limits.send_timeout_s):
            sent = await _send_response(conn, stream, response)
        if not sent:
            return
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive_some(_READ)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        conn.receive_data(bytes(data))


async def _read_request(
    conn: h11.Connection, stream: trio.abc.Stream, limits: HttpLimits
) -> HttpRequest | HttpResponse | None:
    """The next request, an error response to send instead, or None when the client left."""
    try:
        event = await _next_event(conn, stream)
        if not isinstance(event, h11.Request):
            return None
        body = bytearray()
        while True:
            part = await _next_event(conn, stream)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > limits.max_body_bytes:
                    return json_response(413, {"code": "InvalidParameter", "message": "too big"})
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return None
    except h11.RemoteProtocolError as exc:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return None
        return json_response(exc.error_status_hint, {"code": "BadRequest", "message": str(exc)})
    headers = tuple((name.lower(), value) for name, value in event.headers)
    return HttpRequest(
        event.method.decode("ascii"), event.target.decode("latin-1"), headers, bytes(body)
    )


async def _send_response(
    conn: h11.Connection, stream: trio.abc.Stream, response: HttpResponse
) -> bool:
    """Write one response; False if the client is gone."""
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
    ]
    if conn.their_state is not h11.DONE:
        headers.append(("connection", "close"))  # the rest of the request was never read
    try:
        reason = http.HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    try:
        data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        data = (data or b"") + (conn.send(h11.Data(data=response.body)) or b"")
        data += conn.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError:
        return False
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True
