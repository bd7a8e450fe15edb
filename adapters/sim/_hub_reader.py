"""One connection's side of the process's read hub: park the reader task, read in place.

Theory of operation
-------------------
A connection on the fast lane (a plain TCP socket, no fault plan) whose reader task
has nothing to await — a task streams audio — lets the process's one reader
(:class:`~._hub.ReadHub`) read for it. :meth:`HubReader.wait` registers the socket in
the hub and parks the reader task; on every round the socket is readable, the hub calls
:meth:`HubReader._on_readable` in *its* task, which reads once
(:meth:`~.websocket.ServerWebSocket.message_nowait`) and hands each data message to the
connection's ``take`` — a synchronous handler that does what it can in place and
returns what is left to await.

Rules:

1. The first thing that needs an await ends the hub's turn: ``take``'s answer, the
   WebSocket's :class:`~.websocket.WouldAwait` (a ping, a close, a framing error: the
   connection's ``receive`` gets it), a bug in ``take`` (re-raised in the reader task),
   or a frame's tail the kernel did not take (:attr:`~.server_socket.ServerSocket.owes_tail`).
   The socket leaves the hub and the reader task wakes; :meth:`HubReader.wait` returns
   the follow-up to await (None: only a tail is owed).
2. Messages parsed before the socket enters the hub are handled first (the hub only
   reports new bytes).
3. ``take`` is never a checkpoint and never raises on purpose; the hub's call of
   :meth:`HubReader._on_readable` never raises at all.

Channels: none; the hand-back is one stored follow-up, read once by :meth:`HubReader.wait`.

Cancellation: cancelled while parked, the socket leaves the hub; nothing read is lost
(a message taken but not handled waits in the follow-up or in the WebSocket).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, TypeAlias, final

import trio

from .websocket import WouldAwait

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._hub import ReadHub
    from .server_socket import ServerSocket
    from .websocket import ServerWebSocket

__all__ = ["Follow", "HubReader"]

Follow: TypeAlias = "Callable[[], Awaitable[bool]]"
"""What the reader task awaits to finish a message; False when the connection ends."""


@final
class HubReader:
    """Reads one connection's messages in the process's hub while its reader task parks.

    Args:
        ws: the connection, on the fast lane (``ws.fd`` is not None).
        socket: its send path (a tail it owes stops the hub: the reader task flushes it).
        hub: the process's reader.
        take: handles one data message in place, synchronously, given trio's clock
            ("now": the hub's round start, or the time :meth:`wait` began); returns None
            when it is done, else the follow-up the reader task must await.
        receive: the follow-up when the next message needs the awaited path (it reads
            and handles that message).

    Raises:
        ValueError: ``ws`` is not on the fast lane.
    """

    def __init__(
        self,
        ws: ServerWebSocket,
        socket: ServerSocket,
        hub: ReadHub,
        *,
        take: Callable[[bytes | str, float], Follow | None],
        receive: Follow,
    ) -> None:
        fd = ws.fd
        if fd is None:
            raise ValueError("the hub reads only a connection on the fast lane")
        self._ws = ws
        self._socket = socket
        self._hub = hub
        self._fd = fd
        self._take = take
        self._receive = receive
        self._lot = trio.lowlevel.ParkingLot()
        self._follow: Follow | None = None

    async def wait(self) -> Follow | None:
        """Let the hub read for the connection until it hands something back.

        Returns:
            The follow-up to await, or None when only a frame's tail is owed.

        Cancellation: the descriptor leaves the hub (see the module docstring).
        """
        # Messages parsed before: the hub only sees new bytes.
        self._take_all(False, trio.current_time())
        if self._follow is None and not self._socket.owes_tail:
            self._hub.add(self._fd, self._on_readable)
            try:
                await self._lot.park()
            finally:
                self._hub.discard(self._fd)
        follow, self._follow = self._follow, None
        return follow

    def _on_readable(self) -> None:
        """The hub's reader: read once, handle the audio in place, hand the rest back."""
        self._take_all(True, self._hub.now)

    def _take_all(self, read: bool, now: float) -> None:
        """Take the messages there are (reading once if ``read``) until a follow-up.

        Never a checkpoint and never raises: what needs an await becomes the follow-up
        and wakes the reader task.
        """
        try:
            while self._follow is None and not self._socket.owes_tail:
                try:
                    data = self._ws.message_nowait(read=read)
                except WouldAwait:
                    self._follow = self._receive
                    break
                read = False
                if data is None:
                    return
                self._follow = self._take(data, now)
        except Exception as exc:  # a bug: raise it in the connection's task, not the hub's
            self._follow = functools.partial(_reraise, exc)
        self._lot.unpark_all()
        self._hub.discard(self._fd)


async def _reraise(exc: Exception) -> bool:
    raise exc
