"""One HTTP/1.1 server loop on trio and h11, for the simulator's REST API and the daemon's status.

:func:`serve_http` serves the requests of one connection in order (keep-alive, with
an idle deadline, unless a response says ``connection: close``), each answered by an
async :data:`Handler`; every read and every write has a deadline. The handler gets a
nursery that outlives the connection's requests, so work a request starts (a batch
task) keeps running after the client has gone, until the server stops.
:func:`serve_listeners` accepts connections on listeners, at most ``max_connections``
at once (more are closed at once), and serves each with :func:`serve_http`.

A ``HEAD`` request gets the response's head only. The errors the loop answers
itself (a malformed request, a body over the limit, a handler that crashed) get a
body from the server's :data:`ErrorBody` (JSON, DashScope style, by default).

Only this package and the simulator's WebSocket sniffing import h11.
"""

from __future__ import annotations

import functools
import http
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, NoReturn, TypeVar

import h11
import msgspec
import structlog
import trio

__all__ = [
    "ErrorBody",
    "Handler",
    "HttpLimits",
    "HttpRequest",
    "HttpResponse",
    "json_error",
    "json_response",
    "serve_http",
    "serve_listeners",
]

_log = structlog.get_logger()

StreamT = TypeVar("StreamT", bound=trio.abc.Stream)

_MAX_HEAD: Final = 1 << 16
_READ: Final = 1 << 16


class HttpLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Deadlines and sizes of the HTTP server.

    Attributes:
        head_timeout_s: a request head (and body) must arrive within this.
        keep_alive_s: an idle keep-alive connection is closed after this.
        send_timeout_s: a response must be written within this (a client that
            stops reading is dropped).
        max_body_bytes: a larger request body gets HTTP 413.
        connection_timeout_s: the whole connection, every request on it, must
            be done within this (None: no limit beyond the others).
    """

    head_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    send_timeout_s: float = 60.0
    max_body_bytes: int = 1 << 20
    connection_timeout_s: float | None = None


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
    """One response; ``headers`` are sent after content-type and content-length.

    A ``("connection", "close")`` header ends the connection after this response.
    """

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, payload: object) -> HttpResponse:
    return HttpResponse(status, msgspec.json.encode(payload))


Handler = Callable[[HttpRequest, trio.Nursery], Awaitable[HttpResponse]]
"""Answers one request; may start work in the nursery it is given."""

ErrorBody = Callable[[int, str], HttpResponse]
"""The response to an error the server answers itself: ``(status, message)``."""

_ERROR_CODES: Final = {400: "BadRequest", 413: "InvalidParameter", 500: "InternalError"}


def json_error(status: int, message: str) -> HttpResponse:
    """DashScope's error body: ``{"code": …, "message": …}``."""
    return json_response(
        status, {"code": _ERROR_CODES.get(status, "BadRequest"), "message": message}
    )


async def serve_listeners(
    listeners: Sequence[trio.abc.Listener[StreamT]],
    handler: Handler,
    limits: HttpLimits,
    *,
    max_connections: int,
    error_body: ErrorBody = json_error,
) -> NoReturn:
    """Accept connections on ``listeners`` until cancelled; serve each with :func:`serve_http`.

    Resource handling:
        A connection beyond ``max_connections`` open at once is closed at once,
        unanswered, so a flood of clients holds nothing.

    Error handling:
        As :func:`serve_http`; nothing a client does stops the server.
    """
    limiter = trio.CapacityLimiter(max_connections)

    async def serve_one(stream: StreamT) -> None:
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            await trio.aclose_forcefully(stream)
            return
        try:
            await serve_http(stream, handler, limits, error_body=error_body)
        finally:
            limiter.release()

    await trio.serve_listeners(serve_one, list(listeners))


async def serve_http(
    stream: trio.abc.Stream,
    handler: Handler,
    limits: HttpLimits,
    *,
    error_body: ErrorBody = json_error,
) -> None:
    """Serve HTTP/1.1 requests on ``stream`` until the client is done, then close it.

    The handler's nursery stays open after the stream is closed: this returns
    once the work the handler started there has ended.

    Resource handling:
        ``stream`` is owned from the call on and always closed.

    Error handling:
        A malformed request gets 400, a too-large body 413, a head that does
        not arrive within ``head_timeout_s`` closes the connection, and so does
        ``connection_timeout_s`` passing; an exception of the handler becomes
        500 (and is logged). Error bodies come from ``error_body``.
    """
    serve = functools.partial(_serve, stream, handler, limits, error_body)
    async with trio.open_nursery() as nursery:
        try:
            with trio.move_on_after(_or_inf(limits.connection_timeout_s)):
                await serve(nursery)
        finally:
            await trio.aclose_forcefully(stream)


def _or_inf(seconds: float | None) -> float:
    return float("inf") if seconds is None else seconds


async def _serve(
    stream: trio.abc.Stream,
    handler: Handler,
    limits: HttpLimits,
    error_body: ErrorBody,
    nursery: trio.Nursery,
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    first = True
    while True:
        request: HttpRequest | HttpResponse | None = None
        with trio.move_on_after(limits.head_timeout_s if first else limits.keep_alive_s):
            request = await _read_request(conn, stream, limits, error_body)
        first = False
        if request is None:
            return
        head_only = False
        if isinstance(request, HttpResponse):
            response = request
        else:
            head_only = request.method == "HEAD"
            try:
                response = await handler(request, nursery)
            except Exception:
                _log.exception("http.handler_crashed", path=request.path)
                response = error_body(500, "crashed")
        sent = False
        with trio.move_on_after(limits.send_timeout_s):
            sent = await _send_response(conn, stream, response, head_only=head_only)
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
    conn: h11.Connection, stream: trio.abc.Stream, limits: HttpLimits, error_body: ErrorBody
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
                    return error_body(413, "too big")
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return None
    except h11.RemoteProtocolError as exc:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return None
        return error_body(exc.error_status_hint, str(exc))
    headers = tuple((name.lower(), value) for name, value in event.headers)
    return HttpRequest(
        event.method.decode("ascii"), event.target.decode("latin-1"), headers, bytes(body)
    )


async def _send_response(
    conn: h11.Connection, stream: trio.abc.Stream, response: HttpResponse, *, head_only: bool
) -> bool:
    """Write one response (its head only for HEAD); False if the client is gone."""
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        *response.headers,
    ]
    if conn.their_state is not h11.DONE:
        headers.append(("connection", "close"))  # the rest of the request was never read
    try:
        reason = http.HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    try:
        data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        if response.body and not head_only:
            data = (data or b"") + (conn.send(h11.Data(data=response.body)) or b"")
        data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError:
        return False
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True
