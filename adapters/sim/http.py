"""Plain HTTP beside the WebSockets on the simulator's one port: sniffing.

:func:`sniff` reads a new connection's request head and says whether it is a
WebSocket upgrade (``Upgrade: websocket``) — those go to trio-websocket as
before — or a plain request for :func:`adapters.http.server.serve_http`. On a TCP
socket the head is only *peeked* (``MSG_PEEK``), so the WebSocket layer gets the
untouched socket (fault plans still reset it abortively); on any other stream
the bytes read are replayed through :class:`PrefixStream`.
"""

from __future__ import annotations

import socket
from typing import Final, final

import trio

__all__ = ["PrefixStream", "sniff"]

_MAX_HEAD: Final = 1 << 16
_PEEK_POLL_S: Final = 0.005  # only while a head arrives in pieces: a peek cannot wait for more
_READ: Final = 1 << 16


# ------------------------------------------------------------------ sniffing


@final
class PrefixStream(trio.abc.Stream):
    """A stream that first returns ``prefix``, then reads on from ``inner``."""

    def __init__(self, prefix: bytes, inner: trio.abc.Stream) -> None:
        self._prefix = prefix
        self.inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            n = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def sniff(stream: trio.abc.Stream, timeout_s: float) -> tuple[trio.abc.Stream, bool] | None:
    """Look at a new connection's request head without taking it away.

    Returns:
        The stream to serve (``stream`` itself on TCP, else a :class:`PrefixStream`
        replaying what was read) and whether the request is a WebSocket upgrade;
        None if the client sent no head within ``timeout_s`` or left — then
        ``stream`` is already closed.

    Resource handling:
        ``stream`` is closed here when None is returned or on cancellation;
        otherwise the returned stream owns it.
    """
    head = b""
    try:
        with trio.move_on_after(timeout_s):
            if isinstance(stream, trio.SocketStream):
                head = await _peek_head(stream)
            else:
                head = await _read_head(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        head = b""
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    if not head:
        await trio.aclose_forcefully(stream)
        return None
    served = stream if isinstance(stream, trio.SocketStream) else PrefixStream(head, stream)
    return served, _is_upgrade(head)


async def _peek_head(stream: trio.SocketStream) -> bytes:
    sock = stream.socket
    while True:
        data = await sock.recv(_MAX_HEAD, socket.MSG_PEEK)
        if not data or b"\r\n\r\n" in data or len(data) >= _MAX_HEAD:
            return data
        await trio.sleep(_PEEK_POLL_S)


async def _read_head(stream: trio.abc.Stream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < _MAX_HEAD:
        chunk = await stream.receive_some(_READ)
        if not chunk:
            break
        data += chunk
    return data


def _is_upgrade(head: bytes) -> bool:
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    for line in lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False
