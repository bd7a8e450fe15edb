"""An in-memory :class:`~adapters.dashscope.transport.Transport` pair: no sockets, no WebSocket library.

Tests and virtual-time soaks dial a server-side coroutine over this pair under
trio's ``MockClock``. It keeps the semantics a connection relies on:

* messages keep their order and type (``str`` text, ``bytes`` binary);
* each direction is a bounded queue (``buffer`` messages, policy *block*): a
  peer that stops reading makes ``send`` wait, as a full TCP window would, and
  ``send_nowait`` refuse (False), as a full socket buffer would;
* a ping is answered at once while the peer's queue has room, and otherwise
  when the peer's ``receive`` reaches it, in order, as trio-websocket's reader
  answers pings only while it can queue what it reads: a peer that stops
  reading stops answering pings once its queue is full (a half-open connection);
* ``aclose`` closes both directions: the peer's ``receive`` raises
  :class:`~engine.errors.Disconnected` with the close code once it has read what
  was queued, and its ``send`` raises at once.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import trio

from engine._util import unwrap_single_group
from engine.errors import Disconnected

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .transport import Headers

__all__ = ["MemoryTransport", "memory_transport_pair"]


class _Ping:
    __slots__ = ("pong",)

    def __init__(self) -> None:
        self.pong = trio.Event()


class _Close:
    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


_Item = bytes | str | _Ping | _Close


class MemoryTransport:
    """One end of :func:`memory_transport_pair`; satisfies ``Transport``."""

    def __init__(
        self, inbound: trio.MemoryReceiveChannel[_Item], outbound: trio.MemorySendChannel[_Item]
    ) -> None:
        self._in = inbound
        self._out = outbound
        self._closed: int | None = None  # the close code, once either side closed
        self.peer: MemoryTransport | None = None

    async def send(self, frame: bytes | str) -> None:
        await self._put(frame)

    def send_nowait(self, frame: bytes | str) -> bool:
        """Queue ``frame`` if the queue has room (True); False if full. Not a checkpoint."""
        if self._closed is not None:
            raise self._disconnected(self._closed)
        try:
            self._out.send_nowait(frame)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._disconnected(self._closed or 1006) from None
        return True

    async def receive(self) -> bytes | str:
        while True:
            try:
                item = await self._in.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise self._disconnected(self._closed or 1006) from None
            match item:
                case _Ping(pong=pong):
                    pong.set()
                case _Close(code=code):
                    self._closed = code
                    self._out.close()
                    raise self._disconnected(code)
                case _:
                    return item

    async def ping(self) -> None:
        stats = self._out.statistics()
        if self._closed is None and stats.current_buffer_used < stats.max_buffer_size:
            # The peer keeps up (its queue has room): its reader answers at once.
            await trio.lowlevel.checkpoint()
            return
        ping = _Ping()
        await self._put(ping)
        await ping.pong.wait()

    async def aclose(self, code: int = 1000) -> None:
        """Close both directions (the peer reads ``code``); never raises."""
        if self._closed is None:
            self._closed = code
            with contextlib.suppress(
                trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
            ):
                self._out.send_nowait(_Close(code))  # a full queue: the peer reads EOF instead
            if self.peer is not None and self.peer._closed is None:
                self.peer._closed = code
        self._out.close()
        self._in.close()
        await trio.lowlevel.checkpoint()

    async def _put(self, item: _Item) -> None:
        if self._closed is not None:
            raise self._disconnected(self._closed)
        try:
            await self._out.send(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._disconnected(self._closed or 1006) from None

    @staticmethod
    def _disconnected(code: int) -> Disconnected:
        return Disconnected(f"the peer closed the connection (code {code})", code=code)


def memory_transport_pair(buffer: int = 64) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected ends (client, server), each direction bounded to ``buffer`` messages."""
    up_send, up_recv = trio.open_memory_channel[_Item](buffer)
    down_send, down_recv = trio.open_memory_channel[_Item](buffer)
    client = MemoryTransport(down_recv, up_send)
    server = MemoryTransport(up_recv, down_send)
    client.peer, server.peer = server, client
    return client, server


@contextlib.asynccontextmanager
async def serve_in_memory(
    url: str,
    headers: Headers,
    serve: ServeFn,
    *,
    buffer: int = 64,
) -> AsyncIterator[MemoryTransport]:
    """Dial an in-memory server: run ``serve(server_end, url, headers)`` beside the caller.

    The body of a test ``Dialer``. Leaving the block closes the client end and
    cancels the server.
    """
    client, server = memory_transport_pair(buffer)
    with unwrap_single_group():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, server, url, headers)
            try:
                yield client
            finally:
                await client.aclose()
                nursery.cancel_scope.cancel()


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    ServeFn = Callable[[MemoryTransport, str, Headers], Awaitable[None]]
