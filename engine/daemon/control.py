"""What every face of the daemon shares: the status routes, the status server, the signals.

The in-process daemon (``manager.Daemon``) and the parent of worker processes
(``pool.Pool``) both satisfy :class:`Supervisor`, so one signal watcher and one
status server drive either: SIGHUP reloads, SIGTERM or the first SIGINT drains, a
second one cancels; /healthz, /readyz and /metrics answer from a snapshot and a
registry (:func:`status_route`).
"""

from __future__ import annotations

import functools
import signal
from typing import TYPE_CHECKING, Protocol

import structlog
import trio
from prometheus_client.exposition import generate_latest

from engine.daemon.exposition import CONTENT_TYPE
from engine.daemon.health import render_health, render_ready
from engine.daemon.http import Response, serve_status
from engine.errors import StenoError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from prometheus_client import CollectorRegistry

    from engine.daemon.config import DaemonConfig
    from engine.daemon.metrics import DaemonSnapshot
    from engine.daemon.runner import StreamEnv

__all__ = ["Supervisor", "serve_http", "status_route", "watch_signals"]

log = structlog.get_logger("steno.daemon")


def status_route(
    path: str,
    snapshot: Callable[[], DaemonSnapshot],
    registry: CollectorRegistry,
    grace_s: float,
) -> Response:
    """The answer to ``GET path`` of a daemon's status server (one worker or many)."""
    if path == "/healthz":
        code, body = render_health(snapshot(), grace_s)
        return Response(code, body, "application/json")
    if path == "/readyz":
        code, body = render_ready(snapshot())
        return Response(code, body, "application/json")
    if path == "/metrics":
        return Response(200, generate_latest(registry), CONTENT_TYPE)
    return Response(404, b"not found: try /healthz, /readyz or /metrics\n")


class Supervisor(Protocol):
    """What the signal watcher and the status server drive: a :class:`Daemon`, or a pool
    of worker processes (``engine.daemon.pool``)."""

    @property
    def draining(self) -> bool: ...

    def request_drain(self) -> None: ...

    def cancel(self) -> None: ...

    def reload(self, config: DaemonConfig, env: StreamEnv) -> object: ...

    def http_app(self, method: str, path: str) -> Response: ...


async def serve_http(nursery: trio.Nursery, daemon: Supervisor, config: DaemonConfig) -> int:
    """Start the status server in ``nursery``; the bound port.

    Raises:
        OSError: the listen address cannot be bound.
    """
    host, want = config.daemon.address()
    port: int = await nursery.start(
        functools.partial(
            serve_status, host, want, daemon.http_app, timeout_s=config.daemon.http_timeout_s
        )
    )
    return port


async def watch_signals(
    daemon: Supervisor,
    reload: Callable[[], Awaitable[tuple[DaemonConfig, StreamEnv]]] | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGHUP reloads; SIGTERM or SIGINT drains; a second one cancels."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as received:
        task_status.started()
        async for signum in received:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                log.info("daemon.signal", signal=name, action="reload")
                if reload is None:
                    continue
                try:
                    config, env = await reload()
                except StenoError as exc:
                    log.error("daemon.reload.failed", error=str(exc))
                    continue
                daemon.reload(config, env)
            elif daemon.draining:
                log.warning("daemon.signal", signal=name, action="cancel")
                daemon.cancel()
            else:
                log.info("daemon.signal", signal=name, action="drain")
                daemon.request_drain()
