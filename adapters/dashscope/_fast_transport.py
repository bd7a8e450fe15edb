"""The fast WebSocket client transport itself (its dialers are in ``fastws.py``).

A frame is one ``send()`` system call, no task switch.

trio-websocket spends ~100 µs of CPU per frame (a task hop, wsproto's framing, a
per-send lock and cancel scope). This transport builds each frame with the
sans-IO codec of ``adapters/websocket`` (C masking, a fresh random mask per
frame) and hands it to a non-blocking socket directly: ~20 µs per frame.

Theory of operation
-------------------
* ONE writer at a time. :meth:`FastTransport.send_nowait` writes only when no
  awaited write is in progress and no tail is pending; a frame the kernel takes
  only part of leaves its rest in ``_tail``, which the next write sends first
  (so frames never interleave). :meth:`FastTransport.send` (and the pongs and
  close frames :meth:`receive` and :meth:`aclose` write) take ``_write_lock``,
  flush the tail, and wait for ``wait_writable`` as long as needed.
* NO hidden task. The reader is whoever calls :meth:`receive` (the
  connection's receive loop, one task): it reads the socket, feeds the codec,
  answers pings, records pongs for :meth:`ping`, and returns the next message.
  A pong is therefore seen only while a task is in :meth:`receive`, which every
  user of this seam has (the liveness check runs beside a receive loop), or
  while a read hub takes messages with :meth:`receive_nowait` for a parked
  reader (``_read_hub.py``). The receiving half is in ``_fast_receive.py``.
* The dialer owns the socket: leaving its ``async with`` closes it, whoever
  ended the connection and however (the #17 CLOSE-WAIT lesson).

Errors: everything is mapped by the one table of ``_wire_errors.py``, shared
with trio-websocket's transport, so both raise the same families.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, NoReturn

import trio

from adapters.websocket import State
from engine.errors import Disconnected, LocalProtocolError

from ._dial import DISCONNECT_TIMEOUT_S
from ._fast_receive import Receiving
from ._wire_errors import translate

if TYPE_CHECKING:
    from adapters.websocket import WebSocketCore, WebSocketEvent

    from ._pipes import Pipe

__all__ = ["FastTransport"]


class FastTransport(Receiving):
    """One open WebSocket client connection as a ``Transport`` (build it with a dialer).

    Every method raises only ``Disconnected`` (or is cancelled); ``aclose`` never raises.
    The receiving half (``receive``, ``receive_nowait``) is :class:`Receiving`'s.
    """

    def __init__(self, pipe: Pipe, core: WebSocketCore, where: str) -> None:
        self._pipe = pipe
        self._core = core
        self._where = where
        self._tail = b""  # the unsent end of a frame the kernel took only part of
        self._write_lock = trio.Lock()
        self._pong = trio.Event()
        # Why the connection ended, once it did: a fresh Disconnected is raised from it each
        # time (a stored exception would hold its traceback's frames, and they this object).
        self._end: tuple[str, int | None] | None = None
        self._reading = False
        self._kept: WebSocketEvent | None = None  # taken by receive_nowait, for receive

    # ------------------------------------------------------------ sending

    def send_nowait(self, frame: bytes | str) -> bool:
        """Send ``frame`` now if it can go without waiting; never blocks, never a checkpoint.

        Returns:
            True: taken, in order (any unsent tail goes first in the next write).
            False: nothing sent; ``await send(frame)`` instead.

        Raises:
            Disconnected: the connection is over.
        """
        if self._tail or self._write_lock.locked():
            return False
        if self._end is not None:
            raise self._gone()
        try:
            data = self._core.send_message(frame)
        except LocalProtocolError:
            self._fail("the connection is closing")
            raise self._gone() from None
        try:
            taken = self._pipe.try_write(data)
        except Exception as exc:
            self._fail_from(exc)
        if taken == 0:
            return (
                False  # nothing went: the frame is dropped unsent (a data frame changes no state)
            )
        if taken < len(data):
            self._tail = data[taken:]
        return True

    async def send(self, frame: bytes | str) -> None:
        """Send one message (``str``: text, ``bytes``: binary), waiting for room if needed.

        Cancellation: a frame cancelled after its first byte went out is kept
        whole: its rest is written before anything else (the stream stays
        framed), so it counts as sent.
        """
        if self._end is not None:
            await trio.lowlevel.checkpoint()
            raise self._gone()
        try:
            data = self._core.send_message(frame)
        except LocalProtocolError:
            self._fail("the connection is closing")
            raise self._gone() from None
        await self._write(data)

    async def ping(self) -> None:
        """Send a ping and wait for the next pong (seen by the task in :meth:`receive`).

        Any pong counts, also one answering an earlier ping: the question is
        whether the server is alive, and a ping cancelled before it went out
        must not leave later ones waiting for an answer that cannot come.
        """
        if self._end is not None:
            await trio.lowlevel.checkpoint()
            raise self._gone()
        try:
            data = self._core.ping()
        except LocalProtocolError:
            self._fail("the connection is closing")
            raise self._gone() from None
        pong = self._pong
        await self._write(data)
        await pong.wait()
        if self._end is not None:
            raise self._gone()

    async def _write(self, data: bytes, *, closing: bool = False) -> None:
        async with self._write_lock:
            if self._end is not None and not closing:
                raise self._gone()
            try:
                if self._tail:
                    tail, self._tail = self._tail, b""
                    await self._write_keeping_tail(tail)
                await self._write_keeping_tail(data)
            except trio.Cancelled:
                raise
            except Exception as exc:
                self._fail_from(exc)

    async def _write_keeping_tail(self, data: bytes) -> None:
        taken = self._pipe.try_write(data)
        if taken == len(data):
            await trio.lowlevel.checkpoint()
            return
        view = memoryview(data)[taken:]
        try:
            await self._pipe.write_all(view)
        except trio.Cancelled:
            if taken:  # the frame started: keep it whole for the next writer
                self._tail = bytes(view)
            raise

    # ------------------------------------------------------------ closing

    async def aclose(self, code: int = 1000, *, grace_s: float = DISCONNECT_TIMEOUT_S) -> None:
        """Close with the handshake, giving up after ``grace_s``; never raises.

        Sends our close frame (after any kept tail), then, if no task is
        receiving, reads until the server's close or EOF. The socket itself is
        the dialer's to close.
        """
        with trio.move_on_after(grace_s), contextlib.suppress(Disconnected):
            if self._core.state is State.OPEN and self._end is None:
                await self._write(self._core.close(code))
            if not self._reading:
                while self._end is None:
                    await self.receive()
        self._fail("the connection was closed", code)

    def _fail(self, message: str, code: int | None = None) -> None:
        """Record the end of the connection (the first cause wins); wake a waiting ping."""
        if self._end is None:
            self._end = (message, code)
        self._pong.set()

    def _gone(self) -> Disconnected:
        assert self._end is not None
        message, code = self._end
        return Disconnected(message, code=code)

    def _fail_from(self, exc: Exception) -> NoReturn:
        """Raise what ``exc`` means (the shared table), recording it as the end."""
        try:
            translate("open", self._where, exc)
        except Disconnected as error:
            self._fail(str(error), error.code)
            raise
