"""Dialers of our own WebSocket client transport (:class:`FastTransport`, ``_fast_transport.py``).

:data:`dial_fast` connects TCP with trio (happy eyeballs, DNS), takes the
socket into a stdlib non-blocking socket, adds TLS for ``wss://`` through
``ssl.SSLObject`` (``ssl.create_default_context()``: system CAs, host name,
SNI), and does the opening handshake with the sans-IO codec
(``adapters/websocket``). :func:`stream_dialer` runs the same transport over
any trio byte stream (the simulator's in-memory net).

Resource handling: the dialer owns the socket; leaving its ``async with``
closes it, whoever ended the connection and however (the #17 CLOSE-WAIT
lesson). Errors: mapped by the one table of ``_wire_errors.py``, shared with
trio-websocket's transport: ``AuthError``/``ConnectFailed`` while dialing,
``Disconnected`` after.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import trio

from adapters.websocket import CLIENT, Accepted, ClientHandshake, WebSocketCore
from adapters.websocket.errors import UpgradeRejected
from engine.errors import RemoteProtocolError

from ._dial import parse_ws_url
from ._fast_transport import FastTransport
from ._pipes import ConnectError, Pipe, SocketPipe, StreamPipe, TLSPipe
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


# ------------------------------------------------------------ dialing


def socket_opener(context: ssl.SSLContext | None = None) -> PipeOpener:
    """Opens TCP (trio's happy eyeballs and DNS) into a stdlib socket, TLS for ``wss://``.

    Args:
        context: the TLS context; by default ``ssl.create_default_context()``
            (the system CAs, host name checked, SNI), as trio-websocket's
            dialer has it.
    """

    async def open_pipe(host: str, port: int, tls: bool) -> Pipe:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ConnectError from exc
        # The stream set TCP_NODELAY; take its file descriptor into a stdlib socket.
        raw = SocketPipe(socket.socket(fileno=stream.socket.detach()))
        if not tls:
            return raw
        pipe = TLSPipe(raw, context or ssl.create_default_context(), host)
        try:
            await pipe.handshake()
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await raw.aclose()
            if isinstance(exc, OSError):  # ssl.SSLError among them
                raise ConnectError from exc
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
