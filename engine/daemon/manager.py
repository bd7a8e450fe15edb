"""The daemon: many streams in one trio process, reloaded by id, drained within a deadline.

Theory of operation
-------------------
Each stream id has a :class:`StreamHandle`: its own cancel scope, drain event
and :class:`~engine.daemon.metrics.StreamMetrics` (kept across restarts). The
handle supervises :func:`~engine.daemon.runner.run_stream`: a source that ends
finishes the stream; a permanent failure (a rejected key, a missing file, an
unwritable directory) leaves it ``failed`` until a reload; anything else is
restarted with the stream's backoff (``engine.policy``, the daemon profile
never gives up).

Reload (SIGHUP) diffs the new configuration against the running one **by stream
id** (:func:`plan_reload`): a removed stream is drained alone, an added one
started, a changed one drained and restarted, and an unchanged one is not
touched — its task, task-started and files go on. A new key or endpoint changes
every stream. Failed streams are retried by a reload (the operator fixed
something). Daemon-level settings that need a new process (the listen address)
are reported, not applied.

Drain (SIGTERM or the first SIGINT) sets every stream's drain event, so each
finishes its task (finish-task … task-finished), and waits up to
``drain-deadline-s``; streams still running then are cancelled and reported. A
second signal cancels at once.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Final

import msgspec
import structlog
import trio

from engine.daemon.control import status_route, supervise
from engine.daemon.exposition import new_registry
from engine.daemon.metrics import DaemonSnapshot, StreamMetrics
from engine.daemon.runner import run_stream
from engine.daemon.sources import source_kind
from engine.errors import StenoError
from engine.policy import Backoff, classify

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from engine.daemon.config import DaemonConfig, DaemonSection, StreamSpec
    from engine.daemon.http import Response
    from engine.daemon.runner import StreamEnv

__all__ = [
    "RESTART_FIELDS",
    "Daemon",
    "ReloadPlan",
    "StreamHandle",
    "effective_spec",
    "plan_reload",
    "run_daemon",
]

log = structlog.get_logger("steno.daemon")

RESTART_FIELDS: Final = (
    "listen",
    "allow_non_loopback",
    "simulator",
    "log_level",
    "http_timeout_s",
    "workers",
)
"""``[daemon]`` settings a reload cannot change (they need a new process)."""


class ReloadPlan(msgspec.Struct, frozen=True):
    """Stream ids by what a reload does to them."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


def effective_spec(spec: StreamSpec, section: DaemonSection) -> StreamSpec:
    """``spec`` with the daemon defaults it inherits written in (so a diff sees them)."""
    if spec.outputs.dir is not None:
        return spec
    outputs = msgspec.structs.replace(spec.outputs, dir=section.output_dir)
    return msgspec.structs.replace(spec, outputs=outputs)


def plan_reload(
    running: Mapping[str, StreamSpec],
    new: Sequence[StreamSpec],
    *,
    everything_changed: bool = False,
    retry: frozenset[str] = frozenset(),
) -> ReloadPlan:
    """Diff by stream id (pure). ``retry`` ids (failed streams) count as changed."""
    wanted = {spec.id: spec for spec in new}
    added = tuple(i for i in wanted if i not in running)
    removed = tuple(i for i in running if i not in wanted)
    kept = [i for i in wanted if i in running]
    changed = tuple(i for i in kept if everything_changed or i in retry or wanted[i] != running[i])
    unchanged = tuple(i for i in kept if i not in changed)
    return ReloadPlan(added, removed, changed, unchanged)


class StreamHandle:
    """One stream id's supervised runs."""

    def __init__(self, spec: StreamSpec, env: StreamEnv, metrics: StreamMetrics) -> None:
        self.spec = spec
        self.env = env
        self.metrics = metrics
        self.scope = trio.CancelScope()
        self.drain = trio.Event()
        self.done = trio.Event()
        self.runs = 0

    async def run(self, after: StreamHandle | None = None) -> None:
        """Supervise the stream until it ends, fails for good, or is drained/cancelled."""
        try:
            with self.scope, structlog.contextvars.bound_contextvars(stream=self.spec.id):
                if after is not None:
                    await after.done.wait()  # a changed stream: the old one finishes first
                await self._supervise()
        finally:
            self.metrics.stats = None
            self.done.set()

    async def _supervise(self) -> None:
        backoff = Backoff(self.spec.restart.policy(), random.Random(self.env.seed))
        metrics = self.metrics
        while not self.drain.is_set():
            self.runs += 1
            started = trio.current_time()
            metrics.set_state("starting", started)
            try:
                outcome, reason = await run_stream(self.spec, self.env, metrics, self.drain)
            except Exception as exc:  # a stream never takes the daemon down (R8)
                permanent = isinstance(exc, OSError) or (
                    isinstance(exc, StenoError) and classify(exc).is_permanent
                )
                metrics.error = str(exc) or type(exc).__name__
                if permanent:
                    log.error("daemon.stream.failed", error=metrics.error)
                    metrics.set_state("failed")
                    return
                delay = backoff.failed_forever(trio.current_time() - started)
                log.exception(
                    "daemon.stream.crashed", attempt=backoff.attempt, delay_s=round(delay, 3)
                )
                metrics.set_state("restarting", trio.current_time())
                metrics.restarts += 1
                with trio.move_on_after(delay):
                    await self.drain.wait()
                continue
            metrics.error = reason if outcome == "failed" else metrics.error
            metrics.set_state("failed" if outcome == "failed" else "finished")
            return
        metrics.set_state("finished")  # drained during a restart backoff

    async def stop(self, deadline_s: float) -> bool:
        """Drain this stream; cancel it after ``deadline_s``. True when it finished in time."""
        self.drain.set()
        if not self.done.is_set():
            self.metrics.set_state("draining")
        with trio.move_on_after(deadline_s):
            await self.done.wait()
            return True
        log.warning("daemon.stream.drain_deadline", stream=self.spec.id, deadline_s=deadline_s)
        self.scope.cancel()
        await self.done.wait()
        return False


class Daemon:
    """Runs the streams of a :class:`DaemonConfig`. Use :meth:`run` in a nursery."""

    def __init__(self, config: DaemonConfig, env: StreamEnv) -> None:
        self.config = config
        self.env = env
        self.handles: dict[str, StreamHandle] = {}
        self.metrics: dict[str, StreamMetrics] = {}
        self._stop = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._started_t = trio.current_time()
        self.clean = True
        self.registry = new_registry(self.snapshot)  # this daemon's own (no global registry)

    @property
    def draining(self) -> bool:
        return self._stop.is_set()

    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> bool:
        """Start every stream, then wait for :meth:`request_drain`; True after a clean drain.

        Cancellation: :meth:`cancel` (the second signal) stops every stream at once.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for spec in self.config.streams:
                self._start(effective_spec(spec, self.config.daemon))
            log.info("daemon.started", streams=[s.id for s in self.config.streams])
            task_status.started(self)
            await self._stop.wait()
            deadline = self.config.daemon.drain_deadline_s
            log.info("daemon.draining", deadline_s=deadline)
            async with trio.open_nursery() as stopping:
                for handle in list(self.handles.values()):
                    stopping.start_soon(self._stop_one, handle, deadline)
            nursery.cancel_scope.cancel()
        log.info("daemon.stopped", clean=self.clean)
        return self.clean

    async def _stop_one(self, handle: StreamHandle, deadline: float) -> None:
        if not await handle.stop(deadline):
            self.clean = False

    def request_drain(self) -> None:
        """Finish every stream gracefully (within the drain deadline), then return from run."""
        self._stop.set()

    def cancel(self) -> None:
        """Stop now: every task is abandoned without finish-task."""
        self.clean = False
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _start(self, spec: StreamSpec, after: StreamHandle | None = None) -> StreamHandle:
        assert self._nursery is not None
        metrics = self.metrics.get(spec.id)
        if metrics is None:
            metrics = self.metrics[spec.id] = StreamMetrics(
                spec.id, source=source_kind(spec.source), model=spec.model
            )
        else:
            metrics.restarts += 1
            metrics.source, metrics.model, metrics.error = (
                source_kind(spec.source),
                spec.model,
                None,
            )
        handle = self.handles[spec.id] = StreamHandle(spec, self.env, metrics)
        self._nursery.start_soon(handle.run, after)
        return handle

    def reload(self, config: DaemonConfig, env: StreamEnv | None = None) -> ReloadPlan:
        """Apply a new configuration by stream id (not a checkpoint; stops run in the background)."""
        if self.draining or self._nursery is None:
            log.warning("daemon.reload.ignored", reason="draining")
            return ReloadPlan()
        old = self.config.daemon
        needs_restart = [f for f in RESTART_FIELDS if getattr(old, f) != getattr(config.daemon, f)]
        if needs_restart:
            log.warning("daemon.reload.needs_restart", fields=needs_restart)
            config = msgspec.structs.replace(
                config,
                daemon=msgspec.structs.replace(
                    config.daemon, **{f: getattr(old, f) for f in needs_restart}
                ),
            )
        new_env = env or self.env
        env_changed = (new_env.url, new_env.api_key) != (self.env.url, self.env.api_key)
        if env_changed:
            log.info("daemon.reload.endpoint_or_key_changed")
        # The limiter, dialer and sources stay the process's own.
        self.env = dataclasses.replace(new_env, limiter=self.env.limiter)
        specs = [effective_spec(s, config.daemon) for s in config.streams]
        failed = frozenset(i for i, h in self.handles.items() if h.metrics.state == "failed")
        plan = plan_reload(
            {i: h.spec for i, h in self.handles.items()},
            specs,
            everything_changed=env_changed,
            retry=failed,
        )
        self.config = config
        deadline = config.daemon.drain_deadline_s
        by_id = {s.id: s for s in specs}
        for stream_id in plan.removed:
            handle = self.handles.pop(stream_id)
            self.metrics.pop(stream_id, None)
            self._nursery.start_soon(handle.stop, deadline)
        for stream_id in plan.changed:
            old_handle = self.handles[stream_id]
            self._nursery.start_soon(old_handle.stop, deadline)
            self._start(by_id[stream_id], after=old_handle)
        for stream_id in plan.added:
            self._start(by_id[stream_id])
        log.info(
            "daemon.reloaded",
            added=list(plan.added),
            removed=list(plan.removed),
            changed=list(plan.changed),
            unchanged=len(plan.unchanged),
        )
        return plan

    def snapshot(self) -> DaemonSnapshot:
        now = trio.current_time()
        return DaemonSnapshot(
            uptime_s=now - self._started_t,
            draining=self.draining,
            streams=tuple(m.snapshot(now) for m in self.metrics.values()),
            ratelimit_wait_s=self.env.limiter.waited_s,
            wall_time=self.env.clock(),
        )

    def http_app(self, method: str, path: str) -> Response:
        """/healthz (liveness, degraded), /readyz (readiness) and /metrics (GET/HEAD)."""
        return status_route(path, self.snapshot, self.registry, self.config.daemon.degraded_after_s)


async def run_daemon(
    config: DaemonConfig,
    env: StreamEnv,
    *,
    reload: Callable[[], Awaitable[tuple[DaemonConfig, StreamEnv]]] | None = None,
    listen: bool = True,
    signals: bool = True,
    task_status: trio.TaskStatus[tuple[Daemon, int | None]] = trio.TASK_STATUS_IGNORED,
) -> bool:
    """Run the daemon with its HTTP endpoint and signal handling; True after a clean drain.

    ``task_status`` gets ``(daemon, bound port or None)`` once streams are starting.
    ``reload`` reads the configuration again (SIGHUP); a failure there is logged
    and the running configuration stays.

    Raises:
        OSError: the listen address cannot be bound (before any stream starts).
    """
    daemon = Daemon(config, env)
    return await supervise(
        daemon, config, reload, listen=listen, signals=signals, task_status=task_status
    )
