"""The transport seam: what a connection needs from a WebSocket, as our own types.

A :class:`Transport` is one open message connection: ``send``, ``send_nowait``
(the fast lane: a message that can go without waiting), ``receive``, ``ping``,
``aclose``. A :class:`Dialer` opens one (an async context manager).
Two implementations exist: trio-websocket's (``ws.py``, the real network and the
simulator's in-memory net) and a pure in-memory pair (``memory_transport.py``)
that a test dials without any WebSocket library.

Errors: a dialer raises only :class:`~engine.errors.AuthError` or
:class:`~engine.errors.ConnectFailed`; a transport raises only
:class:`~engine.errors.Disconnected` (house rule R10: every implementation maps
its library's exceptions at its own edge). No third-party type appears here, so
the engine's signatures carry none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

__all__ = ["Dialer", "Headers", "Transport", "connect", "request_headers"]

Headers = Sequence[tuple[str, str]]
"""Extra request headers of the upgrade, as (name, value) text pairs."""


class Transport(Protocol):
    """One open message connection. Every method raises only ``Disconnected`` (or is cancelled)."""

    async def send(self, frame: bytes | str) -> None:
        """Send one message (``str``: a text frame, ``bytes``: a binary frame)."""
        ...

    def send_nowait(self, frame: bytes | str) -> bool:
        """Send one message now if it can go without waiting; never blocks, never a checkpoint.

        True: the message was taken, in order (a transport may keep the unsent tail of a
        frame the kernel took only part of; it writes that tail before anything else, in
        its next send). False: nothing was sent; the caller must ``await send(frame)``
        (which also flushes a kept tail first). Raises only ``Disconnected``.
        """
        ...

    async def receive(self) -> bytes | str:
        """The next message; ``Disconnected`` (with the close code) once the peer closed."""
        ...

    async def ping(self) -> None:
        """Ping and wait for the pong; the caller puts a deadline around it."""
        ...

    async def aclose(self) -> None:
        """Close with the handshake where there is one, bounded; never raises."""
        ...


class Dialer(Protocol):
    """Opens a :class:`Transport` to ``url`` (an async context manager that closes it).

    Raises:
        AuthError: the key was rejected (HTTP 401/403 at the upgrade).
        ConnectFailed: refused, unreachable, timed out, or another HTTP status.
    """

    def __call__(
        self, url: str, headers: Headers, *, connect_timeout: float
    ) -> AbstractAsyncContextManager[Transport]: ...


def request_headers(api_key: str, user_agent: str) -> list[tuple[str, str]]:
    """The upgrade's headers: ``Authorization: Bearer`` (none without a key) and our agent."""
    headers = [("user-agent", user_agent)]
    if api_key:
        headers.insert(0, ("Authorization", f"Bearer {api_key}"))
    return headers


@contextlib.asynccontextmanager
async def connect(
    url: str, *, api_key: str, user_agent: str, connect_timeout: float, dial: Dialer
) -> AsyncIterator[Transport]:
    """Dial ``url`` with the request headers of ``api_key`` and ``user_agent``.

    Raises:
        AuthError, ConnectFailed: as :class:`Dialer`.
    """
    async with dial(
        url, request_headers(api_key, user_agent), connect_timeout=connect_timeout
    ) as t:
        yield t
