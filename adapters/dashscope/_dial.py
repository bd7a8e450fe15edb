"""Dialing a WebSocket whose byte stream is closed when the connection ends, however it ends.

trio-websocket 0.12 leaves a client connection's byte stream open in two cases:

* the peer ended the connection first (a close frame, an EOF or a reset): the
  reader records a close reason, and ``WebSocketConnection.aclose()`` then
  returns at once, because the connection is already "closed", without ever
  closing the stream;
* the upgrade was refused, or timed out: ``open_websocket`` never gets hold of
  the connection it created, so nobody closes its stream.

Either way the socket stays open (in CLOSE-WAIT after the peer's FIN) until the
cyclic garbage collector happens to free the dead connection, with its reader
task's frames, its wsproto core and buffers. A reconnecting daemon piles them
up: a file descriptor and a dead connection's memory per reconnect, for as long
as a full collection does not come.

So this module opens the byte stream itself and runs the WebSocket client over
it with ``trio_websocket.wrap_client_stream``: the stream is ours, and it is
closed in a ``finally`` the moment the connection is over, whoever ended it.

One more cycle sits in wsproto: its frame parser is a generator that references
the parser's owner, and it only finishes on a received close frame. A dropped
connection never gets one, so :func:`release_frame_parser` closes it.
"""

from __future__ import annotations

import ssl
import types
import urllib.parse
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import trio
import trio_websocket

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "DISCONNECT_TIMEOUT_S",
    "MESSAGE_QUEUE_SIZE",
    "open_client",
    "open_tcp",
    "parse_ws_url",
    "release_frame_parser",
]

# Result events are small; a queue of a few lets the reader run ahead of us while
# pings are still answered by trio-websocket's own reader task.
MESSAGE_QUEUE_SIZE: Final = 16
DISCONNECT_TIMEOUT_S: Final = 2.0  # the close handshake; a half-open peer never answers


@asynccontextmanager
async def open_tcp(
    url: str, headers: list[tuple[bytes, bytes]], *, connect_timeout: float
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """The real opener (``ws.WebSocketOpener`` of ``ws.dial_tcp``): TCP, TLS for ``wss://``.

    Raises:
        trio_websocket.ConnectionTimeout: no connection and upgrade within
            ``connect_timeout``.
        trio_websocket.HandshakeError: the TCP or TLS connect failed (the
            ``OSError`` is its ``__cause__``).
        trio_websocket.ConnectionRejected: the upgrade was refused.
        ValueError: not a ``ws://`` or ``wss://`` URL.

    Resource handling:
        The socket is closed when the block is left, whoever ended the connection.
    """
    host, port, resource, use_tls = parse_ws_url(url)
    with trio.move_on_after(connect_timeout) as scope:
        try:
            stream: trio.abc.Stream = (
                await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=ssl.create_default_context(), https_compatible=True
                )
                if use_tls
                else await trio.open_tcp_stream(host, port)
            )
        except OSError as exc:
            raise trio_websocket.HandshakeError from exc
    if scope.cancelled_caught:
        raise trio_websocket.ConnectionTimeout
    remaining = max(0.0, scope.deadline - trio.current_time())
    authority = host if port in (80, 443) else f"{host}:{port}"
    async with open_client(
        stream, authority, resource, headers, connect_timeout=remaining
    ) as connection:
        yield connection


@asynccontextmanager
async def open_client(
    stream: trio.abc.Stream,
    authority: str,
    resource: str,
    headers: list[tuple[bytes, bytes]],
    *,
    connect_timeout: float,
    disconnect_timeout: float = DISCONNECT_TIMEOUT_S,
    message_queue_size: int = MESSAGE_QUEUE_SIZE,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A WebSocket client over ``stream`` (any trio byte stream), for an ``async with``.

    Args:
        stream: the byte stream; owned from the call on, and always closed.
        authority: the ``Host`` header.
        resource: the request target (path and query).
        headers: extra request headers.
        connect_timeout: deadline for the upgrade.
        disconnect_timeout: deadline for the close handshake on the way out.
        message_queue_size: received messages trio-websocket may queue.

    Raises:
        trio_websocket.ConnectionTimeout: no upgrade within ``connect_timeout``.
        trio_websocket.ConnectionRejected: the upgrade was refused.

    Resource handling:
        Leaving the block tries the close handshake for ``disconnect_timeout``
        (unless the peer already ended the connection, or the block was
        cancelled), then closes ``stream`` and stops the reader task. A refused or timed-out upgrade closes
        ``stream`` before raising.

    Error handling:
        An exception of the body propagates as itself (never wrapped in an
        exception group), also if the reader task failed meanwhile.
    """
    body_error: BaseException | None = None
    connection: trio_websocket.WebSocketConnection | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.move_on_after(connect_timeout) as scope:
                    connection = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,  # type: ignore[arg-type]  # typed for sockets; any Stream works
                        authority,
                        resource,
                        extra_headers=headers,
                        message_queue_size=message_queue_size,
                    )
                if connection is None or scope.cancelled_caught:
                    raise trio_websocket.ConnectionTimeout
                try:
                    yield connection
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    # Cancelled, this closes at once, without the handshake.
                    with trio.move_on_after(disconnect_timeout):
                        await connection.aclose()
            finally:
                # The point of this module: trio-websocket does not close it (see above).
                await trio.aclose_forcefully(stream)
                nursery.cancel_scope.cancel()  # the reader, if the peer is still talking
                if connection is not None:
                    release_frame_parser(connection)
    except BaseExceptionGroup as group:
        chosen = _chosen(group, body_error)
        if chosen is None:
            raise
    else:
        return
    # Raised outside the except clause, so the group does not become its context.
    raise chosen


def release_frame_parser(connection: trio_websocket.WebSocketConnection) -> None:
    """Close the wsproto frame parser of a connection that is over (not a checkpoint).

    The parser (``FrameProtocol._parse_more``) is a generator holding its owner:
    a reference cycle that ends only when it parses a close frame, so a dropped
    connection's protocol core (and its receive buffer) would wait for the cyclic
    garbage collector. Closing the generator ends the cycle. These are private
    attributes of trio-websocket 0.12 and wsproto 1.x: if they move, nothing happens.
    """
    core = getattr(getattr(connection, "_wsproto", None), "connection", None)
    parser = getattr(getattr(core, "_proto", None), "_parse_more", None)
    if isinstance(parser, types.GeneratorType):
        parser.close()


def _chosen(
    group: BaseExceptionGroup[BaseException], body_error: BaseException | None
) -> BaseException | None:
    """The exception to raise for a failed nursery: the body's, else the one real error."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if body_error is not None and any(leaf is body_error for leaf in leaves):
        return body_error
    real = [leaf for leaf in leaves if not isinstance(leaf, trio.Cancelled)]
    return real[0] if len(real) == 1 else None


def parse_ws_url(url: str) -> tuple[str, int, str, bool]:
    """Host, port, request target and whether TLS is used, from a ``ws://`` or ``wss://`` URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url.split('?', 1)[0]!r}")
    use_tls = parts.scheme == "wss"
    port = parts.port if parts.port is not None else (443 if use_tls else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, resource, use_tls
