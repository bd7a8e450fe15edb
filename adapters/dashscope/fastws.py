"""Our own WebSocket client transport: a frame is one ``send()`` system call, no task switch.

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
  user of this seam has (the liveness check runs beside a receive loop).
* The dialer owns the socket: leaving its ``async with`` closes it, whoever
  ended the connection and however (the #17 CLOSE-WAIT lesson).

Errors: everything is mapped by the one table of ``_wire_errors.py``, shared
with trio-websocket's transport, so both raise the same families.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from adapters.websocket import (
    CLIENT,
    Accepted,
    ClientHandshake,
    Close,
    ConnectionLost,
    Message,
    Ping,
    Pong,
    State,
    Violation,
    WebSocketCore,
)
from adapters.websocket.errors import UpgradeRejected
from engine.errors import Disconnected, LocalProtocolError, RemoteProtocolError

from ._dial import DISCONNECT_TIMEOUT_S, parse_ws_url
from ._pipes import Pipe, SocketPipe, StreamPipe, TLSPipe
from ._wire_errors import translate, where

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .transport import Dialer, Headers, Transport

__all__ = [
    "FastTransport",
    "PipeOpener",
    "dial_fast",
    "fast_dialer",
    "socket_opener",
    "stream_dialer",
]

PipeOpener = Callable[[str, int, bool], Awaitable[Pipe]]
"""``(host, port, tls) -> a connected pipe`` (the caller bounds the time)."""

_CLOSE_ABNORMAL: Final = 1006


class FastTransport:
    """One open WebSocket client connection as a ``Transport`` (build it with a dialer).

    Every method raises only ``Disconnected`` (or is cancelled); ``aclose`` never raises.
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

    async def _write(self, data: bytes) -> None:
        async with self._write_lock:
            if self._end is not None:
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

    # ------------------------------------------------------------ receiving

    async def receive(self) -> bytes | str:
        """The next message; ``Disconnected`` (with the close code) once the peer closed.

        Answers pings on the way and records pongs for :meth:`ping`. One task at
        a time may receive.
        """
        if self._reading:
            raise RuntimeError("another task is already receiving on this transport")
        self._reading = True
        try:
            while True:
                if self._end is not None:
                    await trio.lowlevel.checkpoint()
                    raise self._gone()
                event = self._core.next_event()
                if event is None:
                    try:
                        data = await self._pipe.read()
                    except trio.Cancelled:
                        raise
                    except Exception as exc:
                        self._fail_from(exc)
                    self._core.receive_data(data or None)
                    continue
                match event:
                    case Message(message):
                        await trio.lowlevel.checkpoint_if_cancelled()
                        return message
                    case Ping(payload):
                        with contextlib.suppress(Disconnected):
                            await self._write(self._core.pong(payload))
                    case Pong():
                        self._pong.set()  # wakes every ping() waiting on this one
                        self._pong = trio.Event()
                    case Close(code, reason):
                        if self._core.state is State.CLOSE_RECEIVED:
                            await self._echo_close(code)
                        self._fail(_closed_message(code, reason), code)
                    case Violation(code, reason):
                        await self._echo_close(code)
                        self._fail(f"the server broke the protocol: {reason}", code)
                    case ConnectionLost():
                        self._fail("the connection was lost without a close frame", _CLOSE_ABNORMAL)
        finally:
            self._reading = False

    async def _echo_close(self, code: int) -> None:
        with trio.move_on_after(DISCONNECT_TIMEOUT_S), contextlib.suppress(Disconnected):
            await self._write(self._core.close(code if code != 1005 else 1000))

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


def _closed_message(code: int, reason: str) -> str:
    return f"the server closed the connection ({code}{': ' + reason if reason else ''})"


# ------------------------------------------------------------ dialing


def socket_opener(context: ssl.SSLContext | None = None) -> PipeOpener:
    """Opens TCP (trio's happy eyeballs and DNS) into a stdlib socket, TLS for ``wss://``.

    Args:
        context: the TLS context; by default ``ssl.create_default_context()``
            (the system CAs, host name checked, SNI), as trio-websocket's
            dialer has it.
    """

    async def open_pipe(host: str, port: int, tls: bool) -> Pipe:
        stream = await trio.open_tcp_stream(host, port)
        # The stream set TCP_NODELAY; take its file descriptor into a stdlib socket.
        raw = SocketPipe(socket.socket(fileno=stream.socket.detach()))
        if not tls:
            return raw
        pipe = TLSPipe(raw, context or ssl.create_default_context(), host)
        try:
            await pipe.handshake()
        except BaseException:
            with trio.CancelScope(shield=True):
                await raw.aclose()
            raise
        return pipe

    return open_pipe


def fast_dialer(open_pipe: PipeOpener | None = None) -> Dialer:
    """A ``Dialer`` of :class:`FastTransport` over the pipes ``open_pipe`` connects
    (by default :func:`socket_opener`'s)."""
    opener = open_pipe or socket_opener()

    @contextlib.asynccontextmanager
    async def dial(
        url: str, headers: Headers, *, connect_timeout: float
    ) -> AsyncIterator[Transport]:
        host, port, resource, use_tls = parse_ws_url(url)
        here = where(url)
        pipe: Pipe | None = None
        try:
            try:
                with trio.fail_after(connect_timeout):
                    pipe = await opener(host, port, use_tls)
                    core = await _upgrade(pipe, host, port, use_tls, resource, headers)
            except Exception as exc:
                translate("dial", here, exc, connect_timeout)
            transport = FastTransport(pipe, core, here)
            try:
                yield transport
            finally:
                # Cancelled, this returns at once, without the handshake.
                await transport.aclose()
        finally:
            if pipe is not None:
                with trio.CancelScope(shield=True):
                    await pipe.aclose()

    return dial


async def _upgrade(
    pipe: Pipe, host: str, port: int, tls: bool, resource: str, headers: Headers
) -> WebSocketCore:
    authority = host if port == (443 if tls else 80) else f"{host}:{port}"
    handshake = ClientHandshake(authority, resource, list(headers))
    await pipe.write_all(handshake.request())
    while True:
        data = await pipe.read()
        result = handshake.receive_data(data)
        if isinstance(result, Accepted):
            core = WebSocketCore(CLIENT)
            if result.extra:
                core.receive_data(result.extra)
            return core
        if result is not None:
            raise UpgradeRejected(result.status)
        if not data:
            raise RemoteProtocolError("the server closed the connection during the handshake")


def stream_dialer(open_stream: Callable[[], Awaitable[trio.abc.Stream]]) -> Dialer:
    """The fast transport over any trio byte stream (the simulator's in-memory net).

    Such a stream has no synchronous write, so ``send_nowait`` takes nothing
    there and every frame goes the awaited way; the framing, the reader and the
    error mapping are the same as over a socket.
    """

    async def open_pipe(host: str, port: int, tls: bool) -> Pipe:
        return StreamPipe(await open_stream())

    return fast_dialer(open_pipe)


dial_fast: Final[Dialer] = fast_dialer()
"""The real dialer of the fast transport: TCP (TLS for ``wss://``)."""
