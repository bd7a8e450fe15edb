"""The server side of one accepted WebSocket, as both simulator endpoints use it.

:class:`ServerSocket` owns the chores the inference and realtime connections
share: reading the next client message (a closed socket reads as ``None``, the
sans-IO cores' "transport closed"), the one send path (under one lock, the
core makes the frame, the fault hooks see it, it is written whole, so frames
leave in core order), and deciding the close code and reason once. It does not close the socket: the server closes it
with the code :attr:`ServerSocket.close` gives after the connection's ``run()``
returns.

Cancellation: :meth:`ServerSocket.shutdown` cancels :attr:`ServerSocket.scope`,
which the connection wraps around its nursery, so every task of the connection
stops at its next checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

from .websocket import WebSocketClosed

if TYPE_CHECKING:
    from collections.abc import Callable

    from .context import ConnectionContext
    from .websocket import ServerWebSocket

__all__ = ["ServerSocket"]

_MAX_CLOSE_REASON: Final = 120  # a close frame's reason must fit in 123 bytes


class ServerSocket:
    """One accepted WebSocket: reads, whole-frame writes and the close decision.

    Args:
        ws: the accepted server-side connection; the caller closes it.
        ctx: the connection's context: its fault hooks see every frame sent,
            and ``disconnect_timeout_s`` bounds one frame's shielded write.
    """

    def __init__(self, ws: ServerWebSocket, ctx: ConnectionContext) -> None:
        self._ws = ws
        self._faults = ctx.faults
        self._disconnect_timeout_s = ctx.config.disconnect_timeout_s
        self._send_lock = trio.Lock()
        self._close: tuple[int, str | None] | None = None
        self.scope = trio.CancelScope()
        """Wrap the connection's tasks in it; :meth:`shutdown` cancels it."""

    @property
    def closing(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._close is not None

    @property
    def close(self) -> tuple[int, str | None]:
        """The close code and reason to close the socket with (1000 unless decided)."""
        return self._close or (1000, None)

    def shutdown(self, code: int = 1000, reason: str | None = None) -> None:
        """End the connection: cancel :attr:`scope` (not a checkpoint).

        The first call decides the close code and reason; later calls change nothing.
        """
        if self._close is None:
            self._close = (
                code,
                reason.encode()[:_MAX_CLOSE_REASON].decode(errors="ignore") if reason else None,
            )
        self.scope.cancel()

    async def receive(self) -> bytes | str | None:
        """The next client message, or None once the socket closed."""
        try:
            return await self._ws.get_message()
        except WebSocketClosed:
            return None

    async def send(self, make_frame: Callable[[], str | None]) -> bool:
        """Make a frame and write it, as one step under the send lock.

        Args:
            make_frame: asks the core for the frame (None: nothing to send).
                It runs under the lock, so frames leave in the order the core
                made them.

        Returns:
            False if the socket closed (the connection is then shut down).
        """
        async with self._send_lock:
            frame = make_frame()
            if self._faults is not None and frame is not None:
                frame = await self._faults.before_send(frame)
            if frame is None:
                return True
            return await self.write(frame)

    async def write(self, frame: str) -> bool:
        """Write one frame; a closed socket ends the connection (and gives False).

        A frame the core produced must leave whole, even while the connection
        shuts down (an error frame, then the close) — but not forever: the write
        is shielded up to ``disconnect_timeout_s``.
        """
        deadline = trio.current_time() + self._disconnect_timeout_s
        try:
            with trio.CancelScope(shield=True, deadline=deadline):
                await self._ws.send_message(frame)
        except WebSocketClosed:
            self.shutdown()
            return False
        return True
