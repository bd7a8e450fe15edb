"""A tiny HTTP/1.1 GET server on trio and h11 for /healthz and /metrics.

One request per connection (``Connection: close``), the whole exchange — head
in, response out — under one deadline, and at most ``max_connections`` at once
(more are closed at once), so a slow or hostile client can hold nothing for
long. Only GET and HEAD; the application is a plain synchronous function
``(method, path) -> Response``, so the routing is tested without sockets.

h11 is already in the environment (trio-websocket → wsproto → h11); the daemon
imports it directly, so it belongs in the project's dependencies.
"""

from __future__ import annotations

import contextlib
import http
from typing import TYPE_CHECKING, Final, NoReturn

import h11
import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Response", "serve_http"]

log = structlog.get_logger("steno.daemon.http")

_MAX_HEAD: Final = 8192
_READ: Final = 4096
_BAD_REQUEST: Final = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n"
    b"connection: close\r\n\r\nbad request\n"
)


class Response:
    """Status, content type and body of one answer."""

    __slots__ = ("body", "content_type", "status")

    def __init__(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"):
        self.status = status
        self.body = body
        self.content_type = content_type


async def serve_http(
    host: str,
    port: int,
    app: Callable[[str, str], Response],
    *,
    timeout_s: float = 5.0,
    max_connections: int = 16,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``app`` on ``host:port`` until cancelled; ``task_status`` gets the bound port.

    Error handling: a malformed request gets 400; a client that is too slow is
    disconnected; an exception of ``app`` becomes 500 and is logged. Nothing a
    client does stops the server.

    Raises:
        OSError: the address cannot be bound (before ``task_status.started``).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound: int = listeners[0].socket.getsockname()[1]
    limiter = trio.CapacityLimiter(max_connections)

    async def handler(stream: trio.SocketStream) -> None:
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            await trio.aclose_forcefully(stream)
            return
        try:
            with trio.move_on_after(timeout_s):
                await _exchange(stream, app)
        finally:
            limiter.release()
            await trio.aclose_forcefully(stream)

    log.info("daemon.http.listening", host=host, port=bound)
    task_status.started(bound)
    await trio.serve_listeners(handler, listeners)


async def _exchange(stream: trio.abc.Stream, app: Callable[[str, str], Response]) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
    try:
        request = await _read_head(conn, stream)
    except h11.RemoteProtocolError:
        # No request to answer in h11's terms: a fixed reply, then the connection closes.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(_BAD_REQUEST)
        return
    if request is None:
        return
    method = request.method.decode("ascii", "replace")
    path = request.target.decode("latin-1").split("?", 1)[0]
    await _send(conn, stream, _call(app, method, path), head_only=method == "HEAD")


async def _read_head(conn: h11.Connection, stream: trio.abc.Stream) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            return event
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(_READ)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            conn.receive_data(bytes(data))
            continue
        return None  # the client closed (ConnectionClosed) before a request


def _call(app: Callable[[str, str], Response], method: str, path: str) -> Response:
    if method not in ("GET", "HEAD"):
        return Response(405, b"method not allowed\n")
    try:
        return app(method, path)
    except Exception:
        log.exception("daemon.http.handler_crashed", path=path)
        return Response(500, b"internal error\n")


async def _send(
    conn: h11.Connection, stream: trio.abc.Stream, response: Response, *, head_only: bool
) -> None:
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        ("connection", "close"),
        ("cache-control", "no-store"),
    ]
    if response.status == 405:
        headers.append(("allow", "GET, HEAD"))
    try:
        reason = http.HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    try:
        data = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        if not head_only and response.body:
            data = (data or b"") + (conn.send(h11.Data(data=response.body)) or b"")
        data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError:  # pragma: no cover - only with a broken response
        return
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
