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
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import structlog
import trio
from prometheus_client.exposition import generate_latest

from engine._util import unwrap_single_group
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

__all__ = ["Runner", "Supervisor", "serve_http", "status_route", "supervise", "watch_signals"]

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


class Runner(Supervisor, Protocol):
    """A :class:`Supervisor` that runs its streams until drained (``clean`` after a clean drain)."""

    clean: bool

    async def run(self, *, task_status: trio.TaskStatus[Any] = ...) -> bool: ...


R = TypeVar("R", bound=Runner)


async def supervise(
    runner: R,
    config: DaemonConfig,
    reload: Callable[[], Awaitable[tuple[DaemonConfig, StreamEnv]]] | None,
    *,
    listen: bool,
    signals: bool,
    task_status: trio.TaskStatus[tuple[R, int | None]],
) -> bool:
    """Run ``runner`` with its status server and signal watcher; True after a clean drain.

    ``task_status`` gets ``(runner, bound port or None)`` once streams are starting;
    when the runner has drained, the server and the watcher stop.

    Raises:
        OSError: the listen address cannot be bound (before any stream starts).
    """
    with unwrap_single_group():
        async with trio.open_nursery() as nursery:
            port = await serve_http(nursery, runner, config) if listen else None
            if signals:
                await nursery.start(watch_signals, runner, reload)

            async def streams(task_status: trio.TaskStatus[object]) -> None:
                await runner.run(task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop serving and watching

            await nursery.start(streams)
            task_status.started((runner, port))
    return runner.clean
