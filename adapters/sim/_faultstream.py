"""The byte stream under a simulated connection, which a fault can cut or freeze.

:class:`FaultStream` wraps the server side of one connection (TCP socket or
memory stream) and passes bytes through until a fault changes its state:

* ``drop()`` — *dropped*: pending and later reads and writes fail with
  ``BrokenResourceError`` and :meth:`FaultStream.abort` closes the inner stream
  abortively (``SO_LINGER`` 0, so a TCP peer gets a RST; a memory peer sees EOF).
  No close frame is ever written.
* ``freeze()`` — *half-open*: writes are swallowed and reads return nothing to
  the server; the inner stream is drained in the background only to notice the
  peer leaving (then reads return EOF, so the server can tear down without the
  client ever seeing it). :meth:`aclose` leaves the inner stream open: whoever
  owns it calls :meth:`linger` first, which holds it open until the peer
  leaves. Unlike a real dead path the peer's writes never block (its bytes are
  read and discarded).

State changes are synchronous (not checkpoints) and interrupt operations
already waiting on the inner stream. A stream no fault will switch is
``disarm()``-ed and then passes operations straight through.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Literal, final

import trio

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FaultStream"]

StreamState = Literal["open", "dropped", "half-open"]


@final
class FaultStream(trio.abc.Stream):
    """A pass-through ``trio.abc.Stream`` with ``drop()`` and ``freeze()`` switches."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self._inner = inner
        self.state: StreamState = "open"
        self._waiting: set[trio.CancelScope] = set()
        self._peer_gone = False
        self._inner_closed = False
        self._armed = True

    # ------------------------------------------------------------ switches

    def disarm(self) -> None:
        """No switch will follow: skip the interruption bookkeeping (not a checkpoint)."""
        self._armed = self.state != "open"

    @property
    def passthrough_fd(self) -> int | None:
        """The TCP socket's descriptor while no switch can follow (``disarm()``-ed), else None.

        Reads and writes on it bypass this stream; use it only while the stream is open.
        """
        if self._armed or not isinstance(self._inner, trio.SocketStream):
            return None
        return self._inner.socket.fileno()

    def drop(self) -> None:
        """Break the stream from now on (not a checkpoint); see :meth:`abort`."""
        self._switch("dropped")

    def freeze(self) -> None:
        """Go half-open from now on (not a checkpoint)."""
        self._switch("half-open")

    def _switch(self, state: StreamState) -> None:
        if self.state == "open":
            self._armed = True
            self.state = state
            for scope in self._waiting:
                scope.cancel()

    async def abort(self) -> None:
        """Drop the stream and close the inner one at once, abortively."""
        self.drop()
        if not self._inner_closed:
            self._inner_closed = True
            if isinstance(self._inner, trio.SocketStream):
                with contextlib.suppress(OSError):
                    self._inner.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
            await trio.aclose_forcefully(self._inner)

    async def linger(self) -> None:
        """While half-open, hold the inner stream open until the peer leaves.

        Cancellation:
            Safe; the inner stream stays as it was (the owner closes it).
        """
        if self.state == "half-open" and not self._inner_closed:
            await self._discard_until_gone()

    # ------------------------------------------------------------ Stream

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[trio.CancelScope]:
        with trio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                yield scope
            finally:
                self._waiting.discard(scope)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if not self._armed:
            return await self._inner.receive_some(max_bytes)
        while self.state == "open":
            with self._interruptible():
                try:
                    return await self._inner.receive_some(max_bytes)
                except trio.ClosedResourceError:
                    if self.state == "open":
                        raise
        if self.state == "dropped":
            await self.abort()
            raise trio.BrokenResourceError("connection dropped by a fault plan")
        await self._discard_until_gone()
        return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self._armed:
            return await self._inner.send_all(data)
        if self.state == "open":
            with self._interruptible():
                try:
                    await self._inner.send_all(data)
                    return
                except trio.ClosedResourceError:
                    if self.state == "open":
                        raise
        if self.state == "dropped":
            await self.abort()
            raise trio.BrokenResourceError("connection dropped by a fault plan")
        await trio.lowlevel.checkpoint()  # half-open: the bytes go nowhere

    async def wait_send_all_might_not_block(self) -> None:
        if self.state == "open":
            with self._interruptible():
                await self._inner.wait_send_all_might_not_block()
                return
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close, except while half-open: then the inner stream stays open (see :meth:`linger`)."""
        if self.state == "half-open":
            await trio.lowlevel.checkpoint()
            return
        self._inner_closed = True
        await self._inner.aclose()

    async def _discard_until_gone(self) -> None:
        """Read and discard the peer's bytes until it closes or the stream breaks."""
        while not self._peer_gone and not self._inner_closed:
            try:
                data = await self._inner.receive_some()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._peer_gone = True
