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

A worker that exits unasked, or sends nothing for :data:`STALE_S`
(:data:`FIRST_REPORT_S` after its start: imports take a while on a busy host),
is killed if need be and started again after the daemon's :class:`Backoff`;
meanwhile its streams are ``restarting`` with the reason (degraded on /healthz).
Its counters start again from zero with it, as a restarted daemon's would
(Prometheus' ``rate`` and ``increase`` handle the reset); ``steno_stream_restarts``
counts the worker restarts.

Drain (SIGTERM, the first SIGINT) sends Drain to every worker, which finishes its
streams within ``drain-deadline-s`` and exits; the parent waits that long plus
:data:`DRAIN_MARGIN_S`, then cancels. Cancel (a second signal, or the deadline)
sends Cancel and kills whatever is left after :data:`CANCEL_S`. The drain is
clean when every worker said so and exited 0.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, BinaryIO, Final

import msgspec
import structlog
import trio
from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from adapters.children import open_child
from engine._util import unwrap_single_group
from engine.daemon.exposition import new_registry
from engine.daemon.manager import (
    RESTART_FIELDS,
    effective_spec,
    serve_http,
    status_route,
    watch_signals,
)
from engine.daemon.shard import WorkerView, assign, merge, rate_share, reassign
from engine.daemon.worker_wire import (
    Cancel,
    Drain,
    FrameReader,
    Message,
    Reload,
    Report,
    Start,
    Stopped,
    WireError,
    encode,
)
from engine.policy import DAEMON, Backoff

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

    from engine.daemon.config import DaemonConfig, StreamSpec
    from engine.daemon.http import Response
    from engine.daemon.metrics import DaemonSnapshot
    from engine.daemon.runner import StreamEnv

__all__ = [
    "CANCEL_S",
    "DRAIN_MARGIN_S",
    "FIRST_REPORT_S",
    "STALE_S",
    "WORKER_COMMAND",
    "Pool",
    "WorkerProcesses",
    "run_pool",
]

log = structlog.get_logger("steno.daemon")

WORKER_COMMAND: Final = (sys.executable, "-m", "engine.daemon.worker")
#: A worker silent this long (no report) is killed and restarted.
STALE_S: Final = 10.0
#: The first report may take this long (the interpreter and imports, on a busy host).
FIRST_REPORT_S: Final = 60.0
#: Beyond the drain deadline the workers enforce themselves: their last files and reports.
DRAIN_MARGIN_S: Final = 5.0
#: After Cancel, a worker has this long to exit before it is killed.
CANCEL_S: Final = 5.0
#: An instruction the worker does not take this long closes its control pipe instead.
CONTROL_S: Final = 5.0
#: After a worker exits, its pipes are read this long for the last lines.
_EOF_S: Final = 2.0
#: A log line longer than this is cut (and says so): a bound on the relay's buffer.
MAX_LINE: Final = 256 * 1024


class _Slot:
    """One worker index: its streams, its current process, and what it last reported."""

    def __init__(self, index: int, specs: tuple[StreamSpec, ...], now: float) -> None:
        self.index = index
        self.specs = specs
        self.process: trio.Process | None = None
        self.control: trio.abc.SendStream | None = None
        self.lock = trio.Lock()
        self.snapshot: DaemonSnapshot | None = None
        self.reported_t = now
        self.down: str | None = None  # why its streams cannot be trusted now
        self.down_t = now  # since when (or since this life started, before its first report)
        self.restarts = 0
        self.stopped: bool | None = None  # this life's Stopped(clean)
        self.exit_code: int | None = None
        self.done = trio.Event()  # no life will follow (drained, cancelled)

    def view(self, now: float) -> WorkerView:
        return WorkerView(
            worker=self.index,
            streams=self.specs,
            snapshot=self.snapshot,
            down=self.down,
            down_s=now - self.down_t,
            restarts=self.restarts,
        )


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL`` (a negative ``returncode``)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class WorkerProcesses(Collector):
    """``process_*`` of the parent and every live worker, one family each, by ``worker``.

    ``worker="main"`` is the parent (HTTP, signals, logs, the embedded simulator if
    any), ``worker="0"`` … the workers; a worker being restarted has no series.
    """

    def __init__(self, pids: Callable[[], Sequence[tuple[str, int | str]]]) -> None:
        self._pids = pids

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for label, pid in self._pids():
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            for metric in collector.collect():
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = Metric(
                        metric.name, metric.documentation, metric.type
                    )
                for sample in metric.samples:
                    family.add_sample(sample.name, {**sample.labels, "worker": label}, sample.value)
        yield from families.values()


class Pool:
    """The parent of a ``workers = N`` daemon (module doc). Use :meth:`run` in a nursery.

    Duck-compatible with :class:`~engine.daemon.manager.Daemon` where the signal
    watcher and the status server need it (``manager.Supervisor``).
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
    ) -> None:
        self.config = config
        self.env = env
        self.workers = workers
        self._command = tuple(command)
        self._environ = {**environ, "STENO_RATE_SHARE": rate_share(workers)}
        self._out = out if out is not None else sys.stdout.buffer
        now = trio.current_time()
        self.placement = assign(config.streams, workers)
        self.slots = [_Slot(i, self._share(config, i), now) for i in range(workers)]
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
            if slot.process is not None and slot.process.returncode is None:
                pids.append((str(slot.index), slot.process.pid))
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
                    nursery.start_soon(self._tell, slot, Drain())
                with trio.move_on_after(deadline + DRAIN_MARGIN_S) as waited:
                    await self._all_done()
                if waited.cancelled_caught:
                    log.warning("daemon.drain_deadline", deadline_s=deadline)
                    self.cancel()
            with trio.move_on_after(CANCEL_S + _EOF_S + 1.0):
                await self._all_done()
            nursery.cancel_scope.cancel()  # kills any worker still there (_life's finally)
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
        """Stop now: Cancel to every worker, SIGKILL after :data:`CANCEL_S` (not a checkpoint)."""
        self.clean = False
        if self._cancelled or self._nursery is None:
            return
        self._cancelled = True
        self._stop.set()
        for slot in self.slots:
            self._nursery.start_soon(self._cancel_one, slot)

    async def _cancel_one(self, slot: _Slot) -> None:
        await self._tell(slot, Cancel())
        with trio.move_on_after(CANCEL_S):
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
            self._nursery.start_soon(self._tell, slot, self._reload_message(slot))
        log.info("daemon.reload.sent", placement=self.placement)
        return self.placement

    def _worker_config(self, slot: _Slot) -> DaemonConfig:
        return msgspec.structs.replace(self.config, streams=slot.specs)

    def _reload_message(self, slot: _Slot) -> Reload:
        env = self.env
        return Reload(config=self._worker_config(slot), url=env.url, api_key=env.api_key.reveal())

    # --------------------------------------------------------------- worker

    async def _keep(self, slot: _Slot) -> None:
        """Run worker ``slot`` until the daemon stops; restart it after a backoff if it dies."""
        backoff = Backoff(DAEMON, self._rng)
        try:
            while True:
                started = trio.current_time()
                code, pid = await self._life(slot)
                slot.exit_code = code
                if self._stop.is_set():
                    return
                delay = backoff.failed_forever(trio.current_time() - started)
                why = f"worker {slot.index} (pid {pid}) {describe_exit(code)}"
                if slot.down is None or "stopped reporting" not in slot.down:
                    slot.down = why
                log.error("daemon.worker.died", worker=slot.index, pid=pid, reason=slot.down, delay_s=round(delay, 3))  # fmt: skip
                slot.down = f"{slot.down}; restarting in {delay:.1f} s"
                slot.down_t = trio.current_time()
                slot.snapshot = None
                with trio.move_on_after(delay):
                    await self._stop.wait()
                if self._stop.is_set():
                    return
                slot.restarts += 1
                slot.down = f"{why}; restarted, waiting for its first report"
        finally:
            slot.done.set()

    async def _life(self, slot: _Slot) -> tuple[int, int | None]:
        """One worker process from start to exit: (its exit code, its pid)."""
        slot.stopped = None
        slot.reported_t = trio.current_time()
        if slot.down is None:
            slot.down_t = slot.reported_t
        try:
            process = await open_child(
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._environ,
            )
        except OSError as exc:
            slot.down = f"worker {slot.index} cannot start: {exc}"
            return 127, None
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        slot.process, slot.control = process, process.stdin
        log.info("daemon.worker.started", worker=slot.index, pid=process.pid, streams=[s.id for s in slot.specs])  # fmt: skip
        env = self.env
        start = Start(
            worker=slot.index,
            workers=self.workers,
            config=self._worker_config(slot),
            url=env.url,
            api_key=env.api_key.reveal(),
        )
        try:
            async with trio.open_nursery() as nursery:
                reports_done, logs_done = trio.Event(), trio.Event()
                nursery.start_soon(self._read_reports, slot, process, reports_done)
                nursery.start_soon(self._relay_logs, slot, process.stderr, logs_done)
                nursery.start_soon(self._watch, slot, process)
                await self._tell(slot, start)
                if self._cancelled:
                    await self._tell(slot, Cancel())
                elif self.draining:
                    await self._tell(slot, Drain())
                code = await process.wait()
                with trio.move_on_after(_EOF_S):
                    await reports_done.wait()
                    await logs_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            slot.control = None
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(_EOF_S):
                    await process.wait()
            with trio.CancelScope(shield=True), trio.move_on_after(_EOF_S):
                for pipe in (process.stdin, process.stdout, process.stderr):
                    if pipe is not None:
                        await pipe.aclose()
            slot.process = None
        return code, process.pid

    async def _tell(self, slot: _Slot, message: Message) -> None:
        """Send one instruction; a worker that takes none in :data:`CONTROL_S` gets EOF."""
        async with slot.lock:
            control = slot.control
            if control is None:
                return
            with trio.move_on_after(CONTROL_S) as waited:
                try:
                    await control.send_all(encode(message))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # it exited: _life sees that
            if waited.cancelled_caught:  # a partial frame may be out: end the pipe instead
                log.warning("daemon.worker.control_stuck", worker=slot.index)
                slot.control = None
                await control.aclose()

    async def _read_reports(self, slot: _Slot, process: trio.Process, done: trio.Event) -> None:
        assert process.stdout is not None
        reader = FrameReader(process.stdout)
        try:
            while True:
                try:
                    message = await reader.receive()
                except WireError as exc:
                    log.error("daemon.worker.report_broken", worker=slot.index, error=str(exc))
                    slot.down = f"worker {slot.index} (pid {process.pid}) sent garbage: {exc}"
                    process.kill()
                    return
                match message:
                    case None:
                        return
                    case Report(snapshot=snapshot):
                        slot.snapshot = snapshot
                        slot.reported_t = trio.current_time()
                        slot.down = None
                    case Stopped(clean=clean):
                        slot.stopped = clean
                    case _:
                        log.error("daemon.worker.unexpected", worker=slot.index, message=type(message).__name__)  # fmt: skip
        finally:
            done.set()

    async def _watch(self, slot: _Slot, process: trio.Process) -> None:
        """Kill a worker whose reports stopped (a hang, a stuck loop): it is then restarted."""
        while True:
            limit = FIRST_REPORT_S if slot.snapshot is None else STALE_S
            await trio.sleep_until(slot.reported_t + limit)
            silent = trio.current_time() - slot.reported_t
            if silent >= limit and process.returncode is None:
                slot.down = f"worker {slot.index} (pid {process.pid}) stopped reporting ({silent:.1f} s); killed"  # fmt: skip
                log.error("daemon.worker.silent", worker=slot.index, pid=process.pid, silent_s=round(silent, 3))  # fmt: skip
                process.kill()
                return

    async def _relay_logs(self, slot: _Slot, stderr: trio.abc.ReceiveStream, done: trio.Event) -> None:  # fmt: skip
        """Copy the worker's log lines, whole, to the daemon's stdout (one stream of lines)."""
        buffer = b""
        try:
            while chunk := await stderr.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > MAX_LINE:
                    lines.append(buffer[:MAX_LINE])
                    buffer = b""
                for line in lines:
                    self._emit(slot, line)
            if buffer:
                self._emit(slot, buffer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            done.set()

    def _emit(self, slot: _Slot, line: bytes) -> None:
        if not line.strip():
            return
        if not (line.startswith(b"{") and line.endswith(b"}")):  # not one of its JSON lines
            text = line.decode("utf-8", "replace")
            line = msgspec.json.encode(
                {
                    "event": "daemon.worker.output",
                    "worker": slot.index,
                    "level": "warning",
                    "line": text,
                }
            )
        self._out.write(line + b"\n")
        self._out.flush()

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
    with unwrap_single_group():
        async with trio.open_nursery() as nursery:
            port = await serve_http(nursery, pool, config) if listen else None
            if signals:
                await nursery.start(watch_signals, pool, reload)

            async def streams(task_status: trio.TaskStatus[Pool]) -> None:
                await pool.run(task_status=task_status)
                nursery.cancel_scope.cancel()  # drained: stop serving and watching

            await nursery.start(streams)
            task_status.started((pool, port))
    return pool.clean
