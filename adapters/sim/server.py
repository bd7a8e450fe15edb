"""The simulator's front door: WebSocket upgrade, routing, authentication, TCP serving.

:class:`SimServer` serves any ``trio.abc.Stream`` (:meth:`SimServer.serve_stream`),
so the same code runs behind a TCP listener (:func:`serve`,
:func:`open_simulator`) and behind an in-memory stream pair
(:mod:`adapters.sim.memory`). At the upgrade it routes
``/api-ws/v1/inference`` (``inference.py``) and ``/api-ws/v1/realtime?model=…``
(``realtime.py``), each also with a trailing ``/``; other paths get 404. It
checks the key for every path: ``Authorization: Bearer <key>`` (scheme case-insensitive, as
SDK ≤ 1.26.3 sends ``bearer``) or ``?api_key=<key>`` for browser clients; a
missing or unknown key gets HTTP 401 with a JSON body (DASHSCOPE.md §1.2, §11.2).

Faults (``faults.py``) act at three layers: the byte stream of each connection
is wrapped so a plan can drop it or make it half-open; the upgrade may be
delayed or refused (a malformed ``X-Steno-Fault`` gets 400); the handlers get
the connection's hooks (:class:`~.context.ConnectionFaults`).
"""

from __future__ import annotations

import functools
import itertools
import socket
import urllib.parse
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, NoReturn

import msgspec
import structlog
import trio

from engine._util import unwrap_single_group

from ._faultrun import FaultInjector
from ._hub import ReadHub
from .context import ConnectionContext
from .http import sniff
from .inference import InferenceConnection
from .realtime import RealtimeConnection
from .rest import RestService
from .restconfig import RestConfig
from .translate import ScriptedTranslator
from .upgrade import read_upgrade
from .websocket import WebSocketClosed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from adapters.recognizers.base import Recognizer

    from ._faultrun import PlanRunner
    from .config import SimConfig
    from .faults import FaultSource
    from .translate import Translator
    from .upgrade import UpgradeRequest

__all__ = [
    "INFERENCE_PATH",
    "REALTIME_PATH",
    "SimServer",
    "SimulatorHandle",
    "open_simulator",
    "serve",
]

_log = structlog.get_logger()

INFERENCE_PATH: Final = "/api-ws/v1/inference"
_INFERENCE_PATHS: Final = frozenset({INFERENCE_PATH, INFERENCE_PATH + "/"})
REALTIME_PATH: Final = "/api-ws/v1/realtime"
_REALTIME_PATHS: Final = frozenset({REALTIME_PATH, REALTIME_PATH + "/"})
_BACKLOG: Final = 0xFFFF  # as trio.open_tcp_listeners; the kernel caps it at somaxconn
_JSON: Final = [(b"content-type", b"application/json; charset=utf-8")]


class SimulatorHandle(msgspec.Struct, frozen=True):
    """A running TCP simulator: where to point a client."""

    host: str
    port: int

    @property
    def inference_url(self) -> str:
        return f"ws://{self.host}:{self.port}{INFERENCE_PATH}"

    @property
    def realtime_url(self) -> str:
        """The realtime endpoint without a query: clients append ``?model=<model>``."""
        return f"ws://{self.host}:{self.port}{REALTIME_PATH}"

    @property
    def http_url(self) -> str:
        """The batch REST API base (same port): ``dashscope.base_http_api_url``."""
        return f"http://{self.host}:{self.port}/api/v1"


class SimServer:
    """Serves simulator connections over any stream; shared by all of them.

    Args:
        config: timers, keys and limits.
        recognizer: the recognizer every task opens a session of; the caller
            owns it (and closes it).
        faults: a :class:`~.faults.FaultPlan` for the connections it selects
            (numbered 1, 2, … in order of arrival), a factory ``n -> plan | None``,
            or hand-written :class:`~.context.FaultHooks`. Clients may request
            their own plan per connection (``X-Steno-Fault``) in any case.
        translator: renders translations for gummy and livetranslate; default:
            the demo fixture table (:meth:`~.translate.ScriptedTranslator.demo`),
            which answers unknown sentences with a labelled stand-in.
        hub: the process's one reader (:mod:`._hub`, running), for inference
            connections on a TCP socket without faults; None: each connection's
            task reads for itself.
    """

    def __init__(
        self,
        config: SimConfig,
        recognizer: Recognizer,
        *,
        faults: FaultSource | None = None,
        rest: RestConfig | None = None,
        translator: Translator | None = None,
        hub: ReadHub | None = None,
    ) -> None:
        self.config = config
        self.hub = hub
        self.recognizer = recognizer
        self.translator = translator if translator is not None else ScriptedTranslator.demo()
        self.faults = faults
        self._injector = FaultInjector(faults)
        self._ids = itertools.count(1)
        # Plain HTTP requests on the same port: the batch REST API (rest.py).
        self.rest = RestService(rest or RestConfig(), recognizer, check_key=self._check_key)

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one client connection on ``stream`` until it ends, then close it.

        Resource handling:
            ``stream`` is owned from the call on and always closed — after the
            client left, if a fault made it half-open.

        Error handling:
            A client that does not finish the upgrade in ``connect_timeout_s``
            is dropped. Exceptions of the handler propagate (see :func:`serve`
            for the TCP server, which logs them instead).
        """
        # One port for both: a WebSocket upgrade goes on below, plain HTTP to the
        # batch REST API (http.py peeks at a TCP socket, so this stream stays raw).
        routed = await sniff(stream, self.config.connect_timeout_s)
        if routed is None:
            return
        stream, upgrade = routed
        if not upgrade:
            await self.rest.serve_stream(stream)
            return
        conn_id = next(self._ids)
        config = self.config
        faults = self._injector.connection(conn_id)
        with structlog.contextvars.bound_contextvars(conn=conn_id):
            try:
                request = None
                with trio.move_on_after(config.connect_timeout_s):
                    request = await read_upgrade(
                        faults.wrap(stream), max_message_bytes=config.max_message_bytes
                    )
                if request is not None:
                    await self._handle(request, conn_id, faults)
                await faults.linger()
            finally:
                await trio.aclose_forcefully(stream)

    async def _handle(self, request: UpgradeRequest, conn_id: int, faults: PlanRunner) -> None:
        url = urllib.parse.urlsplit(request.path)
        refusal = await faults.on_upgrade(request.path, request.headers)
        status, message = refusal if refusal is not None else (None, None)
        realtime = url.path in _REALTIME_PATHS
        if status is None and not realtime and url.path not in _INFERENCE_PATHS:
            status = 404
        if status is None and request.problem is not None:
            status, message = 400, request.problem
        if status is None:
            status = self._check_key(request.headers, url.query)
        try:
            if status is not None:
                _log.info("upgrade rejected", path=url.path, status=status)
                body = _error_body(status, message)
                await request.reject(status, extra_headers=list(_JSON), body=body)
                return
            ws = await request.accept(fd=faults.socket_fd)
        except WebSocketClosed:
            _log.info("client left during the upgrade")  # e.g. tired of a slow accept
            return
        ctx = ConnectionContext(
            conn_id,
            self.config,
            self.recognizer,
            faults if faults.active else None,
            translator=self.translator,
        )
        if realtime:
            model = next(iter(urllib.parse.parse_qs(url.query).get("model", [])), "")
            code, reason = await RealtimeConnection(ws, ctx, model).run()
        else:
            code, reason = await InferenceConnection(ws, ctx, self.hub).run()
        # Our own decision to close: do the close handshake, briefly. (When the server
        # itself is cancelled, serve_stream just drops the stream.)
        with trio.move_on_after(self.config.disconnect_timeout_s):
            await ws.aclose(code, reason)

    def _check_key(self, headers: Sequence[tuple[bytes, bytes]], query: str) -> int | None:
        """None if the key is accepted, else the HTTP status. Never logs the key."""
        key = ""
        for name, value in headers:
            if name.lower() == b"authorization":
                scheme, _, token = value.decode("latin-1").strip().partition(" ")
                if scheme.lower() == "bearer":
                    key = token.strip()
        if not key:
            key = next(iter(urllib.parse.parse_qs(query).get("api_key", [])), "")
        if not key:
            return 401
        allowed = self.config.api_keys
        return None if allowed is None or key in allowed else 401


def _error_body(status: int, message: str | None = None) -> bytes:
    code, default = {
        400: ("InvalidParameter", "Bad request."),
        401: ("InvalidApiKey", "Invalid API-key provided."),
        403: ("AccessDenied", "Access denied."),
        404: (
            "NotFound",
            "No such endpoint; use /api-ws/v1/inference or /api-ws/v1/realtime?model=<model>.",
        ),
        429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
        503: ("ServiceUnavailable", "Service temporarily unavailable."),
    }.get(status, ("Rejected", "The upgrade was rejected."))
    return msgspec.json.encode({"code": code, "message": message or default})


async def serve(
    config: SimConfig,
    recognizer: Recognizer,
    *,
    faults: FaultSource | None = None,
    translator: Translator | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the simulator on TCP ``config.host:config.port`` until cancelled.

    Supports ``port = await nursery.start(serve, config, recognizer)``: started
    with the bound port once connections are accepted. ``config.host`` should be
    an address: a name resolving to several addresses binds several listeners,
    and with port 0 only the first one's port is reported.

    Inference connections are read by one :class:`~._hub.ReadHub` per process
    while their tasks stream (no trio wake per received frame).

    Error handling:
        A connection whose handler raises is logged and dropped; the server and
        the other connections go on.
    """
    hub = ReadHub()
    server = SimServer(config, recognizer, faults=faults, translator=translator, hub=hub)
    if config.reuse_port:
        listeners = [await _shared_listener(config.host, config.port)]
    else:
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    port: int = listeners[0].socket.getsockname()[1]

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await server.serve_stream(stream)
        except Exception:
            _log.exception("connection handler crashed")

    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        await nursery.start(trio.serve_listeners, handler, listeners)
        _log.info("simulator listening", host=config.host, port=port)
        task_status.started(port)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def _shared_listener(host: str, port: int) -> trio.SocketListener:
    """A listener on the first address of ``host`` bound with ``SO_REUSEPORT``.

    Raises:
        OSError: the address cannot be bound (in use without ``SO_REUSEPORT``, say).
    """
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, type_, proto, _, address = infos[0]
    sock = trio.socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind(address)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


@asynccontextmanager
async def open_simulator(
    config: SimConfig,
    recognizer: Recognizer,
    *,
    faults: FaultSource | None = None,
    translator: Translator | None = None,
) -> AsyncIterator[SimulatorHandle]:
    """Run a TCP simulator for the body of an ``async with``; yields where it listens.

    Resource handling:
        The recognizer stays the caller's. Leaving the block stops the server
        and drops its connections.
    """
    with unwrap_single_group():
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                functools.partial(serve, faults=faults, translator=translator), config, recognizer
            )
            yield SimulatorHandle(config.host, port)
            nursery.cancel_scope.cancel()
