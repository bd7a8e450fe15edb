"""The trio-websocket edge: dialing, and a transport whose errors are ours.

Everything trio-websocket (or the OS) raises is mapped here, at the edge, to the
families of ``engine.errors`` (house rule R10): a rejected upgrade becomes
:class:`AuthError` (401/403) or :class:`ConnectFailed` with the HTTP status; a
refused or timed-out connect becomes :class:`ConnectFailed`; a closed socket
becomes :class:`Disconnected`.

The dialer is injectable so tests (and the load tools) can connect over
in-memory streams to the simulator under trio's MockClock.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol

import trio
import trio_websocket
import wsproto.utilities

from engine._util import unwrap_single_group
from engine.errors import AuthError, ConnectFailed, Disconnected

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

__all__ = ["Dialer", "Transport", "connect", "dial_tcp"]


class Dialer(Protocol):
    """Opens a WebSocket client connection (an async context manager)."""

    def __call__(
        self, url: str, headers: list[tuple[bytes, bytes]], *, connect_timeout: float
    ) -> AbstractAsyncContextManager[trio_websocket.WebSocketConnection]: ...


def dial_tcp(
    url: str, headers: list[tuple[bytes, bytes]], *, connect_timeout: float
) -> AbstractAsyncContextManager[trio_websocket.WebSocketConnection]:
    """The real dialer: TCP (TLS for ``wss://``) through trio-websocket."""
    return trio_websocket.open_websocket_url(
        url,
        extra_headers=headers,
        connect_timeout=connect_timeout,
        disconnect_timeout=2.0,
        # Result events are small; a queue of a few lets the reader run ahead of us
        # while pings are still answered by trio-websocket's own reader task.
        message_queue_size=16,
    )


class Transport:
    """One WebSocket connection; send and receive raise only ``engine.errors`` types."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        self._send_lock = trio.Lock()

    async def send(self, frame: bytes | str) -> None:
        """Send one frame. The only send path: serialised by a lock.

        Raises:
            Disconnected: the connection is closed.
        """
        async with self._send_lock:
            try:
                await self._ws.send_message(frame)
            except trio_websocket.ConnectionClosed as exc:
                raise _disconnected(exc) from exc
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise Disconnected(f"send failed: {exc or type(exc).__name__}") from exc

    async def receive(self) -> bytes | str:
        """The next frame.

        Raises:
            Disconnected: the connection closed (its close code is on the error).
        """
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise _disconnected(exc) from exc

    async def ping(self) -> None:
        """Send a ping and wait for its pong (put a deadline around this)."""
        try:
            await self._ws.ping()
        except trio_websocket.ConnectionClosed as exc:
            raise _disconnected(exc) from exc

    async def aclose(self, code: int = 1000, *, grace_s: float = 2.0) -> None:
        """Close with the handshake, giving up after ``grace_s`` (a half-open peer never answers)."""
        with (
            trio.move_on_after(grace_s),
            contextlib.suppress(trio_websocket.ConnectionClosed, trio.BrokenResourceError),
        ):
            await self._ws.aclose(code)


def _disconnected(exc: trio_websocket.ConnectionClosed) -> Disconnected:
    reason = exc.reason
    code = reason.code if reason is not None else None
    detail = (
        f" ({reason.name}{': ' + reason.reason if reason and reason.reason else ''})"
        if reason
        else ""
    )
    return Disconnected(f"the server closed the connection{detail}", code=code)


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    api_key: str,
    user_agent: str,
    connect_timeout: float,
    dial: Dialer = dial_tcp,
) -> AsyncIterator[Transport]:
    """Open the connection with ``Authorization: Bearer``; yield a :class:`Transport`.

    Raises:
        AuthError: the key was rejected (HTTP 401/403).
        ConnectFailed: refused, unreachable, timed out, or another HTTP status.

    Cancellation: cancelling closes the connection without the close handshake.
    """
    headers = [
        (b"Authorization", f"Bearer {api_key}".encode()),
        (b"user-agent", user_agent.encode()),
    ]
    opened = False
    try:
        with unwrap_single_group():
            async with dial(url, headers, connect_timeout=connect_timeout) as ws:
                opened = True
                yield Transport(ws)
    except trio_websocket.ConnectionRejected as exc:
        raise _rejected(url, exc) from None
    except trio_websocket.ConnectionTimeout:
        raise ConnectFailed(
            f"connecting to {_where(url)} timed out after {connect_timeout:g} s; "
            "fix: check the network or the --url"
        ) from None
    except trio_websocket.DisconnectionTimeout:
        if not opened:
            raise ConnectFailed(f"the handshake with {_where(url)} failed") from None
        # The close handshake timed out after our work was done: nothing is lost.
    except wsproto.utilities.LocalProtocolError as exc:
        # trio-websocket's reader answers a ping that arrives while the connection
        # is closing with a pong that wsproto refuses: the connection is over.
        raise Disconnected(f"the connection broke while closing: {exc}") from None
    except trio_websocket.HandshakeError as exc:
        cause = exc.__cause__ or exc
        raise ConnectFailed(
            f"cannot connect to {_where(url)}: {cause or type(cause).__name__}; "
            "fix: check that the service (or `steno simulate`) is running and the --url"
        ) from None
    except OSError as exc:
        if opened:
            raise  # not ours: it came from the body of the with block
        raise ConnectFailed(f"cannot connect to {_where(url)}: {exc}") from None


def _where(url: str) -> str:
    # URLs carry no secrets here (the key travels in a header), but strip any query anyway.
    return url.split("?", 1)[0]


def _rejected(url: str, exc: trio_websocket.ConnectionRejected) -> ConnectFailed:
    status = exc.status_code
    if status in (401, 403):
        return AuthError(
            f"the service rejected the API key (HTTP {status}); "
            "fix: set DASHSCOPE_API_KEY to a valid key for this region",
            status=status,
        )
    if status == 503:
        return ConnectFailed(
            f"the service at {_where(url)} is temporarily unavailable (HTTP 503); retry later",
            status=status,
        )
    return ConnectFailed(
        f"the upgrade at {_where(url)} was refused with HTTP {status}", status=status
    )
