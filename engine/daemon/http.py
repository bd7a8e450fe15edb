"""The daemon's status endpoints (/healthz, /readyz, /metrics) served over HTTP/1.1.

The application is a plain synchronous function ``(method, path) -> Response``
(:meth:`engine.daemon.manager.Daemon.http_app`), so the routing is tested without
sockets. This module adds what every answer of it shares — only GET and HEAD
(else 405 with ``Allow``), ``connection: close``, ``cache-control: no-store``, an
application crash as a logged 500 — and serves it with the shared h11 loop of
:mod:`adapters.http.server`: one request per connection, the whole exchange under
one deadline, at most ``max_connections`` at once (more are closed at once), so a
slow or hostile client can hold nothing for long.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NoReturn

import structlog
import trio

from adapters.http.server import HttpLimits, HttpResponse, serve_listeners

if TYPE_CHECKING:
    from adapters.http.server import HttpRequest

__all__ = ["Response", "answer", "serve_status"]

log = structlog.get_logger("steno.daemon.http")

App = Callable[[str, str], "Response"]
"""The routes: ``(method, path) -> Response``, synchronous."""

_TEXT: Final = "text/plain; charset=utf-8"
_HEADERS: Final = (("connection", "close"), ("cache-control", "no-store"))
_MAX_BODY: Final = 4096  # a status endpoint reads no body; a short one is read and ignored


class Response:
    """Status, content type and body of one answer."""

    __slots__ = ("body", "content_type", "status")

    def __init__(self, status: int, body: bytes, content_type: str = _TEXT):
        self.status = status
        self.body = body
        self.content_type = content_type


async def serve_status(
    host: str,
    port: int,
    app: App,
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
    limits = HttpLimits(
        head_timeout_s=timeout_s,
        keep_alive_s=timeout_s,
        send_timeout_s=timeout_s,
        max_body_bytes=_MAX_BODY,
        connection_timeout_s=timeout_s,
    )

    async def handler(request: HttpRequest, nursery: trio.Nursery) -> HttpResponse:
        await trio.lowlevel.checkpoint()
        return answer(app, request.method, request.path)

    log.info("daemon.http.listening", host=host, port=bound)
    task_status.started(bound)
    await serve_listeners(
        listeners, handler, limits, max_connections=max_connections, error_body=_text_error
    )


def answer(app: App, method: str, path: str) -> HttpResponse:
    """The response to ``method path``: 405 unless GET or HEAD, 500 if ``app`` raises."""
    if method not in ("GET", "HEAD"):
        return HttpResponse(
            405, b"method not allowed\n", _TEXT, (*_HEADERS, ("allow", "GET, HEAD"))
        )
    try:
        response = app(method, path)
    except Exception:
        log.exception("daemon.http.handler_crashed", path=path)
        return _text_error(500, "internal error")
    return HttpResponse(response.status, response.body, response.content_type, _HEADERS)


def _text_error(status: int, message: str) -> HttpResponse:
    body = b"bad request\n" if status == 400 else f"{message}\n".encode()
    return HttpResponse(status, body, _TEXT, _HEADERS)
