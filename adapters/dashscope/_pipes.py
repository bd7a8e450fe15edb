"""Byte pipes under the fast WebSocket transport: a socket, TLS over a socket, any trio stream.

A pipe offers what ``fastws.py`` needs and nothing else:

* ``try_write(data) -> int``: write what the kernel takes NOW, without blocking
  and without a checkpoint; the count of bytes taken (0: none fit);
* ``await write_all(data)``: write everything, waiting for the socket to drain;
* ``await read() -> bytes``: the next bytes, ``b""`` at EOF;
* ``read_nowait() -> bytes``: what is there now (one ``recv`` at most), ``b""`` at
  EOF, ``trio.WouldBlock`` when nothing is (not a checkpoint);
* ``fileno() -> int | None``: the socket a read hub waits for (``_read_hub.py``),
  or None when the pipe cannot join one (no socket under it);
* ``await aclose()``: release the file descriptor at once, no handshake (works
  when cancelled; tasks waiting on it get ``trio.ClosedResourceError``).

:class:`SocketPipe` is a stdlib non-blocking socket driven by trio's low-level
readiness API (``wait_readable``/``wait_writable``): a write that fits is one
``send()`` system call, no task switch. :class:`TLSPipe` puts an
``ssl.SSLObject`` over memory BIOs in front of one: it encrypts the whole
record at once (plaintext is always taken whole) and keeps any ciphertext the
kernel did not take, to write first next time. :class:`StreamPipe` wraps a
trio byte stream (the simulator's in-memory net): it has no synchronous write,
so ``try_write`` takes nothing and every frame goes the awaited way.

Errors: ``OSError`` (``ssl.SSLError`` among them) and trio's
``BrokenResourceError``/``ClosedResourceError``; the transport maps them.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Final, Protocol

import trio

if TYPE_CHECKING:
    import socket

__all__ = ["READ_SIZE", "ConnectError", "Pipe", "SocketPipe", "StreamPipe", "TLSPipe"]

READ_SIZE: Final = 65536  # the most one read takes (the parser's own bound is per message)


class ConnectError(Exception):
    """The TCP connect or the TLS handshake failed; the ``OSError`` is the ``__cause__``."""


class Pipe(Protocol):
    def try_write(self, data: bytes | memoryview) -> int: ...

    async def write_all(self, data: bytes | memoryview) -> None: ...

    async def read(self) -> bytes: ...

    def read_nowait(self) -> bytes: ...

    def fileno(self) -> int | None: ...

    async def aclose(self) -> None: ...


class SocketPipe:
    """A connected non-blocking stdlib socket; owns it from the call on."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock

    def try_write(self, data: bytes | memoryview) -> int:
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    async def write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        await trio.lowlevel.checkpoint_if_cancelled()
        while view:
            sent = self.try_write(view)
            view = view[sent:]
            if view:
                await trio.lowlevel.wait_writable(self._sock)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def read(self) -> bytes:
        # Exactly one checkpoint, as trio's own socket does it: bytes already there
        # are taken between a cancel check and a shielded yield (never lost); else the
        # wait for them is the checkpoint, and the read after it yields no more (a
        # second trip through the scheduler per message, for nothing).
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            data = self._sock.recv(READ_SIZE)
        except BlockingIOError:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        while True:
            await trio.lowlevel.wait_readable(self._sock)
            try:
                return self._sock.recv(READ_SIZE)
            except BlockingIOError:  # woken with nothing to read (spurious): wait again
                continue

    def read_nowait(self) -> bytes:
        try:
            return self._sock.recv(READ_SIZE)
        except BlockingIOError:
            raise trio.WouldBlock from None

    def fileno(self) -> int | None:
        fd = self._sock.fileno()
        return fd if fd >= 0 else None

    async def aclose(self) -> None:
        if self._sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
        await trio.lowlevel.checkpoint()


class TLSPipe:
    """TLS (``ssl.SSLObject`` over memory BIOs) over a :class:`SocketPipe`; owns it."""

    __slots__ = ("_eof", "_incoming", "_obj", "_outgoing", "_raw", "_tail")

    def __init__(self, raw: SocketPipe, context: ssl.SSLContext, server_hostname: str) -> None:
        self._raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self._tail = b""  # ciphertext the kernel has not taken yet
        self._eof = False  # the socket's EOF went into the incoming BIO

    async def handshake(self) -> None:
        """The TLS handshake, certificate and host name checked by the context."""
        while True:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            else:
                await self._flush()
                return

    def try_write(self, data: bytes | memoryview) -> int:
        if self._tail:
            self._tail = self._tail[self._raw.try_write(self._tail) :]
            if self._tail:
                return 0
        self._obj.write(data)
        out = self._outgoing.read()
        self._tail = out[self._raw.try_write(out) :]
        return len(data)

    async def write_all(self, data: bytes | memoryview) -> None:
        self._obj.write(data)
        await self._flush()

    async def read(self) -> bytes:
        waited = False  # a fill is a checkpoint: the read after it needs none of its own
        while True:
            try:
                data = self._obj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                await self._flush()  # a key update may have produced bytes to send
                await self._fill()
                waited = True
            except ssl.SSLZeroReturnError:
                return b""
            else:
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()  # never lose what was read
                return data

    def read_nowait(self) -> bytes:
        """All the plaintext one ``recv`` makes readable (none left in the TLS object:
        a hub reports only new bytes on the socket); ``b""`` at the end."""
        if not self._eof:
            try:
                data = self._raw.read_nowait()
            except trio.WouldBlock:
                pass
            else:
                self._eof = not data
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
        chunks: list[bytes] = []
        while True:
            try:
                chunks.append(self._obj.read(READ_SIZE))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                if not chunks:
                    return b""
                break
        # What the read made TLS want to send (a key update's answer) stays in the BIO:
        # the next write takes it first. Written from here, it could cut into a record
        # an awaited write_all is sending.
        if not chunks:
            raise trio.WouldBlock
        return b"".join(chunks)

    def fileno(self) -> int | None:
        return self._raw.fileno()

    async def _flush(self) -> None:
        out = self._tail + self._outgoing.read()
        self._tail = b""
        if out:
            await self._raw.write_all(out)

    async def _fill(self) -> None:
        data = await self._raw.read()
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def aclose(self) -> None:
        await self._raw.aclose()


class StreamPipe:
    """A trio byte stream (no synchronous write: every frame takes the awaited path)."""

    __slots__ = ("_stream",)

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    def try_write(self, data: bytes | memoryview) -> int:
        return 0

    async def write_all(self, data: bytes | memoryview) -> None:
        await self._stream.send_all(data)

    async def read(self) -> bytes:
        return bytes(await self._stream.receive_some(READ_SIZE))

    def read_nowait(self) -> bytes:
        raise trio.WouldBlock  # a trio stream has no synchronous read

    def fileno(self) -> int | None:
        return None

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)
