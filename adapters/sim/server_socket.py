"""The server side of one accepted WebSocket, as both simulator endpoints use it.

:class:`ServerSocket` owns the chores the inference and realtime connections
share: reading the next client message (a closed socket reads as ``None``, the
sans-IO cores' "transport closed"), the one send path (the core makes the frame,
the fault hooks see it, it is written whole, so frames leave in core order: a
synchronous non-blocking write when nothing else is sending, else under one
lock), and deciding the close code and reason once. It does not close the socket: the server closes it
with the code :attr:`ServerSocket.close` gives after the connection's ``run()``
returns.

Cancellation: :meth:`ServerSocket.shutdown` cancels :attr:`ServerSocket.scope`,
which the connection wraps around its nursery, so every task of the connection
stops at its next checkpoint.
"""

from __future__ import annotations

import math
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
        self._tail = b""  # of a frame send_nowait started: owed before any other byte
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
        """Make a frame and write it, as one step: no other frame can come between.

        With no fault plan, no other sender waiting and no cancellation pending,
        the frame is made and written synchronously (no lock, no checkpoint); only
        a tail the kernel did not take is awaited. Otherwise both happen under
        the send lock.

        Args:
            make_frame: asks the core for the frame (None: nothing to send).
                It runs under the lock, so frames leave in the order the core
                made them.

        Returns:
            False if the socket closed (the connection is then shut down).
        """
        if (
            self._faults is None
            and self._close is None
            and not self._tail
            and not self._send_lock.locked()
            and trio.current_effective_deadline() != -math.inf
        ):
            # The fast lane: no sender waits, no fault hook may hold the frame back, and
            # a checkpoint would not raise Cancelled (its deadline is not -inf).
            # From here to the write there is no checkpoint, so no other task of this
            # connection can run in between (trio switches tasks only at checkpoints):
            # the frame leaves in core order without the lock. Only the tail the kernel
            # did not take is awaited, under the lock and the shield like any write.
            frame = make_frame()
            if frame is None:
                return True
            try:
                tail = self._ws.send_message_nowait(frame)
            except WebSocketClosed:
                self.shutdown()
                return False
            if not tail:
                return True
            return await self._finish(tail)
        async with self._send_lock:
            if self._tail and not await self._write_tail():
                return False
            frame = make_frame()
            if self._faults is not None and frame is not None:
                frame = await self._faults.before_send(frame)
            if frame is None:
                return True
            return await self.write(frame)

    @property
    def owes_tail(self) -> bool:
        """Whether a frame :meth:`send_nowait` started waits for :meth:`flush`."""
        return bool(self._tail)

    def send_nowait(self, make_frame: Callable[[], str | None]) -> bool | None:
        """:meth:`send` without awaiting, from any task; never a checkpoint.

        Only when nothing stands in the way: no fault hooks, not closing, no other
        sender, no tail owed. A frame the kernel takes only part of is sent as far as
        order goes: its tail is owed (:attr:`owes_tail`) and goes first in the next
        :meth:`send` or :meth:`flush` — the caller must see that one of them runs soon.

        Returns:
            None if the frame cannot go now (nothing was made: use :meth:`send`),
            False if the socket closed (the connection is shut down), else True.
        """
        if (
            self._faults is not None
            or self._close is not None
            or self._tail
            or self._send_lock.locked()
        ):
            return None
        frame = make_frame()
        if frame is None:
            return True
        try:
            self._tail = self._ws.send_message_nowait(frame)
        except WebSocketClosed:
            self.shutdown()
            return False
        return True

    async def flush(self) -> bool:
        """Write the tail :meth:`send_nowait` left, if any; False if the socket closed."""
        if not self._tail:
            return True
        async with self._send_lock:
            return await self._write_tail()

    async def _write_tail(self) -> bool:
        """Write the owed tail (under the lock; shielded up to ``disconnect_timeout_s``)."""
        tail, self._tail = self._tail, b""
        if not tail:
            return True
        deadline = trio.current_time() + self._disconnect_timeout_s
        try:
            with trio.CancelScope(shield=True, deadline=deadline):
                await self._ws.send_tail(tail)
        except WebSocketClosed:
            self.shutdown()
            return False
        return True

    async def _finish(self, tail: bytes) -> bool:
        """Write the tail of a frame the fast lane started (shielded, under the lock)."""
        deadline = trio.current_time() + self._disconnect_timeout_s
        try:
            # Shielded first: the lock is free (no checkpoint since the fast lane saw it
            # free), and a cancellation may not leave half a frame behind.
            with trio.CancelScope(shield=True, deadline=deadline):
                async with self._send_lock:
                    await self._ws.send_tail(tail)
        except WebSocketClosed:
            self.shutdown()
            return False
        return True

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
