"""The least HTTP client: one ``GET`` on a fresh connection, for a probe of a local server.

:func:`get` answers ``(status, body)`` or None, never raising for the server's sake:
a refused connection, a broken or oversized answer are all "no answer". The caller
puts the deadline around it (``trio.move_on_after``).
"""

from __future__ import annotations

from typing import Final

import h11
import trio

__all__ = ["MAX_BODY", "get"]

#: The largest body :func:`get` reads; a bigger answer is no answer.
MAX_BODY: Final = 64 * 1024


class _TooLarge(Exception):
    """The body is over :data:`MAX_BODY`."""


async def get(host: str, port: int, target: str) -> tuple[int, bytes] | None:
    """``GET target`` with ``Connection: close``: (status, body), or None (no answer).

    Cancellation: safe; the connection is closed.
    """
    try:
        return await _get(host, port, target)
    except (OSError, trio.BrokenResourceError, h11.ProtocolError, _TooLarge):
        return None


async def _get(host: str, port: int, target: str) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET", target=target, headers=[("Host", f"{host}:{port}"), ("Connection", "close")]
    )
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        status, body = 0, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(MAX_BODY))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _TooLarge
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, bytes(body)
