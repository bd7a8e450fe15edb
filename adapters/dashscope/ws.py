"""The trio-websocket implementation of the transport seam, and the choice of transport.

Everything trio-websocket, wsproto, trio or the OS raises is mapped at this edge
by ONE table (``_wire_errors.py``, house rule R10), the same table our own
transport (``fastws.py``) uses: a rejected upgrade becomes :class:`AuthError`
(401/403) or :class:`ConnectFailed` with the HTTP status; a refused or
timed-out connect becomes :class:`ConnectFailed`; a closed socket becomes
:class:`Disconnected`.

:data:`dial_tcp`, the real dialer every entry point uses, dials with the
transport the environment variable ``STENO_TRANSPORT`` names: ``fast``
(``fastws.py``, the default) or ``trio-websocket``.

:func:`websocket_dialer` turns any trio-websocket opener (``open_websocket_url``,
or the simulator's in-memory ``MemoryNet.open_websocket``) into a
:class:`~adapters.dashscope.transport.Dialer`; :data:`dial_tcp` is the real one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

import trio
import trio_websocket

from engine._util import unwrap_single_group
from engine.errors import ConfigError, ConnectFailed, StenoError

from ._dial import open_tcp as _open_tcp  # owns its socket; trio-websocket's does not
from ._wire_errors import mapped as _mapped_table
from ._wire_errors import rejected as rejected
from ._wire_errors import translate as _translate
from ._wire_errors import where as _where
from .fastws import dial_fast
from .transport import Dialer, Headers, Transport, connect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

__all__ = [
    "Dialer",
    "Transport",
    "WebSocketOpener",
    "WebSocketTransport",
    "connect",
    "dial_fast",
    "dial_tcp",
    "dial_trio_websocket",
    "real_dialer",
    "rejected",
    "transport_name",
    "websocket_dialer",
]

WebSocketOpener = Callable[..., "AbstractAsyncContextManager[trio_websocket.WebSocketConnection]"]
"""``(url, headers: list[tuple[bytes, bytes]], *, connect_timeout) -> async CM of a connection``."""


class WebSocketTransport:
    """One trio-websocket connection as a ``Transport``; raises only ``Disconnected``."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, where: str = "") -> None:
        self._ws = ws
        self._where = where
        self._send_lock = trio.Lock()

    async def send(self, frame: bytes | str) -> None:
        """Send one frame; serialised, so a ping or a picture never interleaves a frame."""
        async with self._send_lock:
            with _mapped_table("open", self._where):
                await self._ws.send_message(frame)

    def send_nowait(self, frame: bytes | str) -> bool:
        """No fast lane: trio-websocket sends only from a task (the caller awaits ``send``)."""
        return False

    async def receive(self) -> bytes | str:
        with _mapped_table("open", self._where):
            return await self._ws.get_message()

    async def ping(self) -> None:
        with _mapped_table("open", self._where):
            await self._ws.ping()

    async def aclose(self, code: int = 1000, *, grace_s: float = 2.0) -> None:
        """Close with the handshake, giving up after ``grace_s`` (a half-open peer never answers)."""
        with (
            trio.move_on_after(grace_s),
            contextlib.suppress(trio_websocket.ConnectionClosed, trio.BrokenResourceError),
        ):
            await self._ws.aclose(code)


def websocket_dialer(opener: WebSocketOpener) -> Dialer:
    """A ``Dialer`` over a trio-websocket opener, its exceptions mapped by the shared table."""

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


# ------------------------------------------------------------ choosing the transport

TRANSPORT_ENV: Final = "STENO_TRANSPORT"
TRANSPORTS: Final = ("trio-websocket", "fast")
DEFAULT_TRANSPORT: Final = "fast"  # ~3-10x less CPU per frame (tools/bench/transport.py)

dial_trio_websocket: Final[Dialer] = websocket_dialer(_open_tcp)
"""The real dialer through trio-websocket: TCP (TLS for ``wss://``)."""


def transport_name(environ: Mapping[str, str] = os.environ) -> str:
    """The transport ``STENO_TRANSPORT`` chooses (``fast`` or ``trio-websocket``; unset: default).

    Raises:
        ConfigError: any other value (one line, naming the choices).
    """
    name = environ.get(TRANSPORT_ENV, "").strip() or DEFAULT_TRANSPORT
    if name not in TRANSPORTS:
        raise ConfigError(
            f"{TRANSPORT_ENV}={name!r} is not a transport; choose one of {', '.join(TRANSPORTS)}"
        )
    return name


def real_dialer(name: str) -> Dialer:
    """The real (TCP) dialer of the transport ``name`` (one of :data:`TRANSPORTS`)."""
    return dial_fast if name == "fast" else dial_trio_websocket


def _dial_chosen(
    url: str, headers: Headers, *, connect_timeout: float
) -> AbstractAsyncContextManager[Transport]:
    return real_dialer(transport_name())(url, headers, connect_timeout=connect_timeout)


dial_tcp: Final[Dialer] = _dial_chosen
"""The real dialer: the transport ``STENO_TRANSPORT`` names, read at each dial."""
