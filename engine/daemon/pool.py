"""``workers = N``: the daemon's parent process, supervising N worker processes.

Theory of operation
-------------------
::

    signals ──► Pool ──Start/Reload/Drain/Cancel──► worker 0 … N-1  (python -m engine.daemon.worker)
                  ▲ ◄──────── Report (1 s), Stopped ────────┘  │
    /healthz ─────┤                                            └─ JSON log lines ─► parent's stdout
    /metrics ─────┘  merge() of the latest reports (shard.py); process_* per worker

The parent owns what must be one: the HTTP server, the signals, the log stream
(it relays each worker's lines, whole, to its stdout) and the lifecycle. Each
worker runs an ordinary :class:`~engine.daemon.manager.Daemon` over its share of
the streams (``shard.assign``) with ``STENO_RATE_SHARE = 1/N`` in its
environment, so the N task-start budgets add up to one (``engine.ratelimit``).

A worker that exits unasked, or sends nothing for ``Limits.stale_s`` (10 s;
``first_report_s``, 60 s, after its start: imports take a while on a busy host),
is killed if need be and started again after the daemon's :class:`Backoff`;
meanwhile its streams are ``restarting`` with the reason (degraded on /healthz).
Its streams' counters carry on from its last report (``shard`` rule 4), and
``steno_stream_restarts`` counts the worker restarts.

Drain (SIGTERM, the first SIGINT) sends Drain to every worker, which finishes its
streams within ``drain-deadline-s`` and exits; the parent waits that long plus
``drain_margin_s`` (5 s), then cancels. Cancel (a second signal, or the deadline)
sends Cancel and kills whatever is left after ``cancel_s`` (5 s). The drain is
clean when every worker said so and exited 0.
"""

from __future__ import annotations

import os
import random
import sys
from typing import TYPE_CHECKING, BinaryIO, Final

import msgspec
import structlog
import trio
from prometheus_client import PlatformCollector

from engine.daemon.control import status_route, supervise
from engine.daemon.exposition import WorkerProcesses, new_registry
from engine.daemon.manager import RESTART_FIELDS, effective_spec
from engine.daemon.shard import assign, merge, rate_share, reassign
from engine.daemon.worker_slot import Limits, WorkerSlot, describe_exit
from engine.daemon.worker_wire import Cancel, Drain, Message, Reload, Start
from engine.policy import DAEMON, Backoff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from engine.daemon.config import DaemonConfig, StreamSpec
    from engine.daemon.http import Response
    from engine.daemon.metrics import DaemonSnapshot
    from engine.daemon.runner import StreamEnv

__all__ = ["WORKER_COMMAND", "Limits", "Pool", "run_pool"]

log = structlog.get_logger("steno.daemon")

WORKER_COMMAND: Final = (sys.executable, "-m", "engine.daemon.worker")


class Pool:
    """The parent of a ``workers = N`` daemon (module doc). Use :meth:`run` in a nursery.

    Duck-compatible with :class:`~engine.daemon.manager.Daemon` where the signal
    watcher and the status server need it (``control.Supervisor``).
    """

    def __init__(
        self,
        config: DaemonConfig,
        env: StreamEnv,
        workers: int,
        *,
        command: Sequence[str] = WORKER_COMMAND,
        environ: Mapping[str, str] = os.environ,
        out: BinaryIO | None = None,
        limits: Limits = Limits(),  # noqa: B008 (frozen)
    ) -> None:
        self.config = config
        self.env = env
        self.workers = workers
        self._command = tuple(command)
        self._environ = {**environ, "STENO_RATE_SHARE": rate_share(workers)}
        out = out if out is not None else sys.stdout.buffer
        now = trio.current_time()
        self.placement = assign(config.streams, workers)
        self.limits = limits
        self.slots = [
            WorkerSlot(i, self._share(config, i), now, out, limits) for i in range(workers)
        ]
        self._stop = trio.Event()
        self._cancelled = False
        self._nursery: trio.Nursery | None = None
        self._started_t = now
        self._rng = random.Random(env.seed)
        self.clean = True
        self.registry = new_registry(self.snapshot, process=False)
        PlatformCollector(registry=self.registry)
        self.registry.register(WorkerProcesses(self._pids))

    def _share(self, config: DaemonConfig, worker: int) -> tuple[StreamSpec, ...]:
        return tuple(s for s in config.streams if self.placement[s.id] == worker)

    def _pids(self) -> list[tuple[str, int | str]]:
        pids: list[tuple[str, int | str]] = [("main", "self")]
        for slot in self.slots:
            pid = slot.pid()
            if pid is not None:
                pids.append((str(slot.index), pid))
        return pids

    @property
    def draining(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[Pool] = trio.TASK_STATUS_IGNORED) -> bool:
        """Start every worker, then wait for :meth:`request_drain`; True after a clean drain.

        Cancellation: kills every worker (their streams stop without finish-task).
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for slot in self.slots:
                nursery.start_soon(self._keep, slot)
            log.info(
                "daemon.started",
                streams=[s.id for s in self.config.streams],
                workers={str(s.index): [x.id for x in s.specs] for s in self.slots},
            )
            task_status.started(self)
            await self._stop.wait()
            if not self._cancelled:
                deadline = self.config.daemon.drain_deadline_s
                log.info("daemon.draining", deadline_s=deadline, workers=self.workers)
                for slot in self.slots:
                    nursery.start_soon(slot.tell, Drain())
                with trio.move_on_after(deadline + self.limits.drain_margin_s) as waited:
                    await self._all_done()
                if waited.cancelled_caught:
                    log.warning("daemon.drain_deadline", deadline_s=deadline)
                    self.cancel()
            with trio.move_on_after(self.limits.cancel_s + self.limits.eof_s + 1.0):
                await self._all_done()
            nursery.cancel_scope.cancel()  # kills any worker still there (WorkerSlot.life)
        if any(s.stopped is not True or s.exit_code != 0 for s in self.slots):
            self.clean = False
        log.info("daemon.stopped", clean=self.clean)
        return self.clean

    async def _all_done(self) -> None:
        for slot in self.slots:
            await slot.done.wait()

    def request_drain(self) -> None:
        """Drain every worker (within the drain deadline), then return from :meth:`run`."""
        self._stop.set()

    def cancel(self) -> None:
        """Stop now: Cancel to every worker, SIGKILL after ``cancel_s`` (not a checkpoint)."""
        self.clean = False
        if self._cancelled or self._nursery is None:
            return
        self._cancelled = True
        self._stop.set()
        for slot in self.slots:
            self._nursery.start_soon(self._cancel_one, slot)

    async def _cancel_one(self, slot: WorkerSlot) -> None:
        await slot.tell(Cancel())
        with trio.move_on_after(self.limits.cancel_s):
            await slot.done.wait()
            return
        if slot.process is not None and slot.process.returncode is None:
            log.warning("daemon.worker.killed", worker=slot.index, reason="cancel deadline")
            slot.process.kill()

    def reload(self, config: DaemonConfig, env: StreamEnv | None = None) -> dict[str, int]:
        """Apply a new configuration: each worker reloads its share by stream id.

        Streams never move between workers (``shard.reassign``); a stream added goes to
        the emptiest worker. Not a checkpoint: the instructions go in the background.
        """
        if self.draining or self._nursery is None:
            log.warning("daemon.reload.ignored", reason="draining")
            return self.placement
        old = self.config.daemon
        needs_restart = [f for f in RESTART_FIELDS if getattr(old, f) != getattr(config.daemon, f)]
        if needs_restart:
            log.warning("daemon.reload.needs_restart", fields=needs_restart)
            daemon = msgspec.structs.replace(
                config.daemon, **{f: getattr(old, f) for f in needs_restart}
            )
            config = msgspec.structs.replace(config, daemon=daemon)
        self.env = env or self.env
        specs = [effective_spec(s, config.daemon) for s in config.streams]
        self.placement = reassign(self.placement, specs, self.workers)
        self.config = config
        for slot in self.slots:
            slot.specs = self._share(config, slot.index)
            self._nursery.start_soon(slot.tell, self._reload_message(slot))
        log.info("daemon.reload.sent", placement=self.placement)
        return self.placement

    def _worker_config(self, slot: WorkerSlot) -> DaemonConfig:
        return msgspec.structs.replace(self.config, streams=slot.specs)

    def _reload_message(self, slot: WorkerSlot) -> Reload:
        env = self.env
        return Reload(config=self._worker_config(slot), url=env.url, api_key=env.api_key.reveal())

    # --------------------------------------------------------------- worker

    async def _keep(self, slot: WorkerSlot) -> None:
        """Run worker ``slot`` until the daemon stops; restart it after a backoff if it dies."""
        backoff = Backoff(DAEMON, self._rng)
        try:
            while True:
                started = trio.current_time()
                code, pid = await slot.life(
                    self._command, self._environ, self._start_message(slot), self._followup
                )
                slot.exit_code = code
                if self._stop.is_set():
                    return
                delay = backoff.failed_forever(trio.current_time() - started)
                why = slot.failure or f"worker {slot.index} (pid {pid}) {describe_exit(code)}"
                log.error(
                    "daemon.worker.died",
                    worker=slot.index,
                    pid=pid,
                    code=code,
                    reason=why,
                    delay_s=round(delay, 3),
                )
                slot.down = f"{why}; restarting in {delay:.1f} s"
                slot.down_t = trio.current_time()
                slot.fold()
                with trio.move_on_after(delay):
                    await self._stop.wait()
                if self._stop.is_set():
                    return
                slot.restarts += 1
                slot.down = f"{why}; restarted, waiting for its first report"
        finally:
            slot.done.set()

    def _start_message(self, slot: WorkerSlot) -> Start:
        env = self.env
        return Start(
            worker=slot.index,
            workers=self.workers,
            config=self._worker_config(slot),
            url=env.url,
            api_key=env.api_key.reveal(),
        )

    def _followup(self) -> Message | None:
        """What a worker that just started must hear next: the drain or cancel it missed."""
        if self._cancelled:
            return Cancel()
        return Drain() if self._stop.is_set() else None

    # ------------------------------------------------------------- the view

    def snapshot(self) -> DaemonSnapshot:
        """The whole daemon: every worker's streams once (``shard.merge``)."""
        now = trio.current_time()
        return merge(
            [slot.view(now) for slot in self.slots],
            uptime_s=now - self._started_t,
            draining=self.draining,
            wall_time=self.env.clock(),
        )

    def http_app(self, method: str, path: str) -> Response:
        """/healthz, /readyz and /metrics over every worker (GET/HEAD)."""
        return status_route(path, self.snapshot, self.registry, self.config.daemon.degraded_after_s)


async def run_pool(
    config: DaemonConfig,
    env: StreamEnv,
    workers: int,
    *,
    reload: Callable[[], Awaitable[tuple[DaemonConfig, StreamEnv]]] | None = None,
    listen: bool = True,
    signals: bool = True,
    command: Sequence[str] = WORKER_COMMAND,
    task_status: trio.TaskStatus[tuple[Pool, int | None]] = trio.TASK_STATUS_IGNORED,
) -> bool:
    """:func:`~engine.daemon.manager.run_daemon` with the streams in ``workers`` processes.

    Raises:
        OSError: the listen address cannot be bound (before any worker starts).
    """
    pool = Pool(config, env, workers, command=command)
    return await supervise(
        pool, config, reload, listen=listen, signals=signals, task_status=task_status
    )
