"""The one exception table of the WebSocket transports (house rule R10).

Both transports (trio-websocket's in ``ws.py`` and our own in ``fastws.py``)
map what their libraries, trio and the OS raise through :data:`_MAP`: a
rejected upgrade becomes :class:`AuthError` (401/403) or :class:`ConnectFailed`
with the HTTP status; a refused or timed-out connect becomes
:class:`ConnectFailed`; a closed socket becomes :class:`Disconnected` with the
close code. Which family applies depends on the phase (dialing, or using an
open connection); the table says so per row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal, NoReturn

import trio
import trio_websocket
import wsproto.utilities

from adapters.websocket.errors import UpgradeRejected, WebSocketClosed
from engine.errors import AuthError, ConnectFailed, Disconnected, RemoteProtocolError, StenoError

from ._pipes import ConnectError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Phase", "mapped", "rejected", "translate", "where"]

Phase = Literal["dial", "open"]

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


def _ws_closed(exc: BaseException, where: str, timeout: float) -> StenoError:
    assert isinstance(exc, WebSocketClosed)
    detail = f": {exc.reason}" if exc.reason else ""
    return Disconnected(f"the server closed the connection ({exc.code}{detail})", code=exc.code)


def _rejected(exc: BaseException, where: str, timeout: float) -> StenoError:
    assert isinstance(exc, trio_websocket.ConnectionRejected | UpgradeRejected)
    status = exc.status_code if isinstance(exc, trio_websocket.ConnectionRejected) else exc.status
    return rejected(where, status)


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


def _bad_upgrade(exc: BaseException, where: str, timeout: float) -> StenoError:
    return ConnectFailed(f"the handshake with {where} failed: {exc}")


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
    (WebSocketClosed, frozenset({"dial", "open"}), _ws_closed),
    (trio_websocket.ConnectionRejected, frozenset({"dial"}), _rejected),
    (UpgradeRejected, frozenset({"dial"}), _rejected),
    (trio_websocket.ConnectionTimeout, frozenset({"dial"}), _connect_timeout),
    (trio.TooSlowError, frozenset({"dial"}), _connect_timeout),
    (trio_websocket.HandshakeError, frozenset({"dial"}), _handshake),
    (ConnectError, frozenset({"dial"}), _handshake),
    (RemoteProtocolError, frozenset({"dial"}), _bad_upgrade),
    (wsproto.utilities.LocalProtocolError, frozenset({"dial", "open"}), _closing),
    (OSError, frozenset({"dial"}), _unreachable),
    (trio.BrokenResourceError, frozenset({"dial"}), _unreachable),
    (trio.BrokenResourceError, frozenset({"open"}), _broken),
    (trio.ClosedResourceError, frozenset({"open"}), _broken),
    (OSError, frozenset({"open"}), _broken),
)


def translate(phase: Phase, where: str, exc: BaseException, timeout: float = 0.0) -> NoReturn:
    """Raise what ``exc`` means to us in ``phase`` (``exc`` itself if no row matches)."""
    for kind, phases, translator in _MAP:
        if phase in phases and isinstance(exc, kind):
            raise translator(exc, where, timeout) from exc
    raise exc


@contextlib.contextmanager
def mapped(phase: Phase, where: str) -> Iterator[None]:
    """Translate an ``Exception`` escaping the block by the table (``Cancelled`` passes)."""
    try:
        yield
    except Exception as exc:
        translate(phase, where, exc)


def where(url: str) -> str:
    """``url`` for messages. URLs carry no secrets here (the key travels in a header),
    but any query is stripped anyway."""
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
