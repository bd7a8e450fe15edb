"""The trio-websocket implementation of the transport seam, with its exceptions mapped.

Everything trio-websocket, wsproto, trio or the OS raises is mapped at this edge
by ONE table, :data:`_MAP` (house rule R10): a rejected upgrade becomes
:class:`AuthError` (401/403) or :class:`ConnectFailed` with the HTTP status; a
refused or timed-out connect becomes :class:`ConnectFailed`; a closed socket
becomes :class:`Disconnected`. Which family applies depends on the phase
(dialing, or using an open connection); the table says so per row.

:func:`websocket_dialer` turns any trio-websocket opener (``open_websocket_url``,
or the simulator's in-memory ``MemoryNet.open_websocket``) into a
:class:`~adapters.dashscope.transport.Dialer`; :data:`dial_tcp` is the real one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal, NoReturn

import trio
import trio_websocket
import wsproto.utilities

from engine._util import unwrap_single_group
from engine.errors import AuthError, ConnectFailed, Disconnected, StenoError

from ._dial import open_tcp as _open_tcp  # owns its socket; trio-websocket's does not
from .transport import Dialer, Headers, Transport, connect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from contextlib import AbstractAsyncContextManager

__all__ = [
    "Dialer",
    "Transport",
    "WebSocketOpener",
    "WebSocketTransport",
    "connect",
    "dial_tcp",
    "rejected",
    "websocket_dialer",
]

WebSocketOpener = Callable[..., "AbstractAsyncContextManager[trio_websocket.WebSocketConnection]"]
"""``(url, headers: list[tuple[bytes, bytes]], *, connect_timeout) -> async CM of a connection``."""

Phase = Literal["dial", "open"]


class WebSocketTransport:
    """One trio-websocket connection as a ``Transport``; raises only ``Disconnected``."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, where: str = "") -> None:
        self._ws = ws
        self._where = where
        self._send_lock = trio.Lock()

    async def send(self, frame: bytes | str) -> None:
        """Send one frame; serialised, so a ping or a picture never interleaves a frame."""
        async with self._send_lock:
            with _mapped("open", self._where):
                await self._ws.send_message(frame)

    def send_nowait(self, frame: bytes | str) -> bool:
        """No fast lane: trio-websocket sends only from a task (the caller awaits ``send``)."""
        return False

    async def receive(self) -> bytes | str:
        with _mapped("open", self._where):
            return await self._ws.get_message()

    async def ping(self) -> None:
        with _mapped("open", self._where):
            await self._ws.ping()

    async def aclose(self, code: int = 1000, *, grace_s: float = 2.0) -> None:
        """Close with the handshake, giving up after ``grace_s`` (a half-open peer never answers)."""
        with (
            trio.move_on_after(grace_s),
            contextlib.suppress(trio_websocket.ConnectionClosed, trio.BrokenResourceError),
        ):
            await self._ws.aclose(code)


def websocket_dialer(opener: WebSocketOpener) -> Dialer:
    """A ``Dialer`` over a trio-websocket opener, its exceptions mapped by :data:`_MAP`."""

    @contextlib.asynccontextmanager
    async def dial(
        url: str, headers: Headers, *, connect_timeout: float
    ) -> AsyncIterator[Transport]:
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        where = _where(url)
        opened = False
        try:
            with unwrap_single_group():
                async with opener(url, raw, connect_timeout=connect_timeout) as ws:
                    opened = True
                    yield WebSocketTransport(ws, where)
        except StenoError:
            raise
        except trio_websocket.DisconnectionTimeout:
            if not opened:
                raise ConnectFailed(f"the handshake with {where} failed") from None
            # The close handshake timed out after our work was done: nothing is lost.
        except Exception as exc:
            if opened and isinstance(exc, OSError):
                raise  # not ours: it came from the body of the with block
            _translate("open" if opened else "dial", where, exc, connect_timeout)

    return dial


dial_tcp: Final[Dialer] = websocket_dialer(_open_tcp)
"""The real dialer: TCP (TLS for ``wss://``) through trio-websocket."""


# ------------------------------------------------------------ the table

_Translator = Callable[[BaseException, str, float], StenoError]


def _closed(exc: BaseException, where: str, timeout: float) -> StenoError:
    assert isinstance(exc, trio_websocket.ConnectionClosed)
    reason = exc.reason
    code = reason.code if reason is not None else None
    detail = (
        f" ({reason.name}{': ' + reason.reason if reason and reason.reason else ''})"
        if reason
        else ""
    )
    return Disconnected(f"the server closed the connection{detail}", code=code)


def _rejected(exc: BaseException, where: str, timeout: float) -> StenoError:
    assert isinstance(exc, trio_websocket.ConnectionRejected)
    return rejected(where, exc.status_code)


def _connect_timeout(exc: BaseException, where: str, timeout: float) -> StenoError:
    return ConnectFailed(
        f"connecting to {where} timed out after {timeout:g} s; fix: check the network or the --url"
    )


def _handshake(exc: BaseException, where: str, timeout: float) -> StenoError:
    cause = exc.__cause__ or exc
    return ConnectFailed(
        f"cannot connect to {where}: {cause or type(cause).__name__}; "
        "fix: check that the service (or `steno simulate`) is running and the --url"
    )


def _unreachable(exc: BaseException, where: str, timeout: float) -> StenoError:
    return ConnectFailed(f"cannot connect to {where}: {exc}")


def _closing(exc: BaseException, where: str, timeout: float) -> StenoError:
    # trio-websocket's reader answers a ping that arrives while the connection is
    # closing with a pong that wsproto refuses: the connection is over.
    return Disconnected(f"the connection broke while closing: {exc}")


def _broken(exc: BaseException, where: str, timeout: float) -> StenoError:
    return Disconnected(f"send failed: {exc or type(exc).__name__}")


_MAP: Final[tuple[tuple[type[BaseException], frozenset[Phase], _Translator], ...]] = (
    # (what the library raised, in which phases, what it means to us); first match wins
    (trio_websocket.ConnectionClosed, frozenset({"dial", "open"}), _closed),
    (trio_websocket.ConnectionRejected, frozenset({"dial"}), _rejected),
    (trio_websocket.ConnectionTimeout, frozenset({"dial"}), _connect_timeout),
    (trio_websocket.HandshakeError, frozenset({"dial"}), _handshake),
    (wsproto.utilities.LocalProtocolError, frozenset({"dial", "open"}), _closing),
    (OSError, frozenset({"dial"}), _unreachable),
    (trio.BrokenResourceError, frozenset({"open"}), _broken),
    (trio.ClosedResourceError, frozenset({"open"}), _broken),
    (OSError, frozenset({"open"}), _broken),
)


def _translate(phase: Phase, where: str, exc: Exception, timeout: float = 0.0) -> NoReturn:
    for kind, phases, translate in _MAP:
        if phase in phases and isinstance(exc, kind):
            raise translate(exc, where, timeout) from exc
    raise exc


@contextlib.contextmanager
def _mapped(phase: Phase, where: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        _translate(phase, where, exc)


def _where(url: str) -> str:
    # URLs carry no secrets here (the key travels in a header), but strip any query anyway.
    return url.split("?", 1)[0]


def rejected(where: str, status: int) -> ConnectFailed:
    """What a refused upgrade with HTTP ``status`` means (any transport's dialer may use it)."""
    if status in (401, 403):
        return AuthError(
            f"the service rejected the API key (HTTP {status}); "
            "fix: set DASHSCOPE_API_KEY to a valid key for this region",
            status=status,
        )
    if status == 503:
        return ConnectFailed(
            f"the service at {where} is temporarily unavailable (HTTP 503); retry later",
            status=status,
        )
    return ConnectFailed(f"the upgrade at {where} was refused with HTTP {status}", status=status)
