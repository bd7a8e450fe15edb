"""An in-memory network to the simulator: no sockets, virtual time friendly.

Tests (ours and the engine's) connect to a simulator over
``trio.testing.memory_stream_pair()``, so everything runs under
``MockClock(autojump_threshold=0)``::

    async with open_memory_net(SimConfig(), recognizer) as net:
        ws = await net.connect("/api-ws/v1/inference", {"Authorization": "Bearer sk-test"})
        await ws.send_message(run_task_json)
        ...

:meth:`MemoryNet.connect` returns a client :class:`trio_websocket.WebSocketConnection`
(:meth:`MemoryNet.open_websocket` as an async context manager);
:meth:`MemoryNet.dial` is the engine's ``Dialer`` (``adapters/dashscope/transport.py``)
over it, so ``dial=net.dial`` points an engine session at the simulator; a client that
brings its own WebSocket layer takes a raw stream from :meth:`MemoryNet.open_stream`. Every server side and client reader
runs in the net's nursery; leaving the ``async with`` cancels them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import trio
import trio.testing
from trio_websocket import ConnectionTimeout, wrap_client_stream

from adapters.dashscope.ws import websocket_dialer
from engine._util import unwrap_single_group

from .server import INFERENCE_PATH, SimServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

    from trio_websocket import WebSocketConnection

    from adapters.dashscope.transport import Headers as TransportHeaders
    from adapters.dashscope.transport import Transport
    from adapters.recognizers.base import Recognizer

    from .config import SimConfig
    from .faults import FaultSource
    from .translate import Translator

__all__ = ["MemoryNet", "open_memory_net"]

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


class MemoryNet:
    """Connects in-memory clients to one :class:`SimServer`. Use :func:`open_memory_net`."""

    def __init__(self, server: SimServer, nursery: trio.Nursery) -> None:
        self.server = server
        self._nursery = nursery

    async def open_stream(self) -> trio.abc.Stream:
        """A new client byte stream whose other end the simulator serves.

        The server side runs in the net's nursery; exceptions it raises
        propagate out of the ``async with open_memory_net(...)`` block.
        """
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self.server.serve_stream, server)
        await trio.lowlevel.checkpoint()
        return client

    async def connect(
        self,
        target: str = INFERENCE_PATH,
        headers: Headers = (),
        *,
        message_queue_size: int = 16,
    ) -> WebSocketConnection:
        """Open a WebSocket to ``target`` (path and query) with extra request ``headers``.

        Returns:
            The client connection; close it with ``aclose()``.

        Raises:
            trio_websocket.ConnectionRejected: the upgrade was refused (its
                ``status_code`` and ``body`` are the simulator's).
        """
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
        return await self._connect(target, extra, message_queue_size)

    def dial(
        self, url: str, headers: TransportHeaders, *, connect_timeout: float = 60.0
    ) -> AbstractAsyncContextManager[Transport]:
        """The engine's ``Dialer`` over this net: :meth:`open_websocket` as a ``Transport``,
        its exceptions mapped (``adapters/dashscope/ws.py``)."""
        dial = websocket_dialer(self.open_websocket)
        return dial(url, headers, connect_timeout=connect_timeout)

    @asynccontextmanager
    async def open_websocket(
        self,
        url: str,
        headers: list[tuple[bytes, bytes]],
        *,
        connect_timeout: float = 60.0,
        message_queue_size: int = 16,
    ) -> AsyncIterator[WebSocketConnection]:
        """Like ``trio_websocket.open_websocket_url``, over this net.

        Only the path and query of ``url`` matter; the connection is closed on exit.

        Raises:
            trio_websocket.ConnectionRejected: the upgrade was refused.
            trio_websocket.ConnectionTimeout: no upgrade within ``connect_timeout``.
        """
        parts = urllib.parse.urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            with trio.fail_after(connect_timeout):
                ws = await self._connect(target, list(headers), message_queue_size)
        except trio.TooSlowError:
            raise ConnectionTimeout from None
        try:
            yield ws
        finally:
            with trio.move_on_after(self.server.config.disconnect_timeout_s):
                await ws.aclose()

    async def _connect(
        self, target: str, headers: list[tuple[bytes, bytes]], message_queue_size: int
    ) -> WebSocketConnection:
        stream = await self.open_stream()
        connection: WebSocketConnection = await self._nursery.start(
            _client, stream, target, headers, message_queue_size
        )
        return connection


async def _client(
    stream: trio.abc.Stream,
    target: str,
    headers: list[tuple[bytes, bytes]],
    message_queue_size: int,
    *,
    task_status: trio.TaskStatus[WebSocketConnection],
) -> None:
    """Run a client connection's reader; a rejected upgrade raises out of ``start``."""
    with unwrap_single_group():
        async with trio.open_nursery() as nursery:
            connection = await wrap_client_stream(
                nursery,
                cast("Any", stream),  # typed for sockets; any trio Stream works
                "127.0.0.1",
                target,
                extra_headers=headers,
                message_queue_size=message_queue_size,
            )
            task_status.started(connection)


@asynccontextmanager
async def open_memory_net(
    config: SimConfig,
    recognizer: Recognizer,
    *,
    faults: FaultSource | None = None,
    translator: Translator | None = None,
) -> AsyncIterator[MemoryNet]:
    """A :class:`MemoryNet` to a simulator with ``config``, for the body of an ``async with``.

    Resource handling:
        The recognizer stays the caller's. Leaving the block cancels every
        connection, client and server side.
    """
    server = SimServer(config, recognizer, faults=faults, translator=translator)
    with unwrap_single_group():
        async with trio.open_nursery() as nursery:
            yield MemoryNet(server, nursery)
            nursery.cancel_scope.cancel()
