"""The parent side of ``--processes N``: start the workers, hand out files, gather results.

Theory of operation
-------------------
:func:`open_workers` starts N workers (``python -m engine.shard.worker`` through
:func:`adapters.children.open_child`: own process group, SIGINT/SIGTERM blocked,
``STENO_RATE_SHARE`` = this process's share / N) and waits for each one's
``Hello`` (its imports done), before the endpoint is resolved: the embedded
simulator's notice then means the files are about to stream, as it does in one
process. :meth:`WorkerPool.run` then:

1. sends each worker its :class:`~engine.shard._wire.Setup` and waits until all
   are ready (their first ``Want``), under :data:`READY_TIMEOUT_S`, so the first
   one up does not take every file;
2. hands out files in command-line order, each to the ready worker with a free
   slot and the fewest files in flight (a work queue: a worker asks for more as
   its files end, so a long file never holds up the short ones behind it);
3. forwards every worker's events to the one console, keeps each file's
   ``StreamEnded``, and sends ``NoMore`` when every file is handed out.

A drain (first Ctrl-C) stops the handing out (each file never handed out gets
its one ``interrupted before it started`` line) and sends ``Drain`` to every
worker. Cancelling :meth:`~WorkerPool.run` (second Ctrl-C) leaves the stopping
to :func:`open_workers`'s exit: ``Stop``, a grace period, then SIGKILL.

A worker that dies (SIGKILL, a crash, a broken pipe, a malformed message) has
each file in flight reported ``failed`` with a one-line reason; the others go on.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Final

import structlog
import trio

from adapters.children import open_child
from engine._stream_input import INTERRUPTED
from engine.events import Event, StreamEnded, StreamError
from engine.ratelimit import RATE_SHARE_VAR
from engine.shard._handle import Worker, file_template
from engine.shard._wire import (
    Drain,
    Finished,
    FromWorker,
    Hello,
    Job,
    NoMore,
    Out,
    ProtocolViolation,
    Setup,
    Stop,
    Want,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from engine.pipeline import FileStreamConfig
    from engine.policy import RateLimit

__all__ = ["WORKER_COMMAND", "WorkerPool", "open_workers"]

log = structlog.get_logger("steno.shard")

WORKER_COMMAND: Final = (sys.executable, "-P", "-m", "engine.shard.worker")
"""How a worker starts (``-P``: the working directory never shadows the package)."""

READY_TIMEOUT_S: Final = 60.0
"""From start to the first ``Want``: imports on a loaded machine; slower ones are killed."""
EXIT_TIMEOUT_S: Final = 10.0
"""From a worker's goodbye (its pipe closed) to its exit."""
STOP_GRACE_S: Final = 3.0
"""From ``Stop`` (second Ctrl-C) to SIGKILL."""
_READ_BYTES: Final = 1 << 16


class WorkerPool:
    """Started workers; :meth:`run` streams one command line's files over them."""

    def __init__(
        self, processes: Sequence[trio.Process], *, log_json: bool = False, log_level: int = 30
    ) -> None:
        self._workers = [Worker(p) for p in processes]
        self._log = (log_json, log_level)
        self._changed = trio.lowlevel.ParkingLot()  # a worker got ready, freed a slot or died

    @property
    def size(self) -> int:
        return len(self._workers)

    @property
    def started(self) -> bool:
        """At least one worker said hello (:meth:`wait_started`)."""
        return any(w.greeted for w in self._workers)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    async def run(
        self,
        configs: Sequence[FileStreamConfig],
        *,
        jobs: int,
        console: trio.MemorySendChannel[Event],
        drain: trio.Event,
        console_tty: bool = True,
        translate: bool = False,
        start_limits: Mapping[str, RateLimit] | None = None,
    ) -> list[StreamEnded]:
        """Stream every file over the workers; each file's ending, in command-line order.

        ``configs`` differ only in ``path``, ``output_stem`` and ``session.stream``.
        At most ``jobs`` files stream at once in all: each worker gets its part of
        them (``jobs // N``, one more for the first ``jobs % N``). ``start_limits``:
        the run's task-start budgets (None: the service's), split over the workers.

        ``console_tty`` and ``translate`` describe the console: off a terminal the
        workers leave out what it would not print (:attr:`Setup.console_tty`).

        Channels: sends to ``console`` (a clone), closes it at the end.

        Cancellation: leaves the workers running; :func:`open_workers` stops them.
        """
        template = file_template(configs)
        log_json, log_level = self._log
        results: dict[int, StreamEnded] = {}
        share, extra = divmod(jobs, len(self._workers))
        for i, worker in enumerate(self._workers):
            setup = Setup(
                template=template,
                jobs=share + (i < extra),
                log_json=log_json,
                log_level=log_level,
                console_tty=console_tty,
                translate=translate,
                start_limits=None if start_limits is None else dict(start_limits),
            )
            await worker.tell(setup)  # first, so no other message can overtake it
        async with console, trio.open_nursery() as nursery:
            nursery.start_soon(self._drain_on, drain)
            async with trio.open_nursery() as readers:
                for worker in self._workers:
                    readers.start_soon(self._serve, worker, console, results)
                await self._all_ready()
                left = await self._hand_out(configs, drain)
                for worker in self._workers:
                    await worker.tell(NoMore())
                await self._report_left(left, configs, console, results, drain)
            nursery.cancel_scope.cancel()
        return [results[i] for i in sorted(results)]

    async def _all_ready(self) -> None:
        with trio.move_on_after(READY_TIMEOUT_S):
            while any(w.alive and not w.ready for w in self._workers):
                await self._changed.park()
        for worker in self._workers:
            if worker.alive and not worker.ready:
                log.error("shard.worker.not_ready", pid=worker.pid, timeout_s=READY_TIMEOUT_S)
                worker.kill()

    async def _hand_out(self, configs: Sequence[FileStreamConfig], drain: trio.Event) -> list[int]:
        """Hand out files in order while a worker can take one; the indexes left over."""
        pending = collections.deque(range(len(configs)))
        while pending and not drain.is_set():
            worker = self._pick()
            if worker is None:
                if not any(w.alive for w in self._workers):
                    break
                await self._changed.park()
                continue
            index = pending.popleft()
            config = configs[index]
            worker.credits -= 1
            worker.inflight[index] = config.session.stream
            worker.handed += 1
            await worker.tell(
                Job(
                    index=index,
                    path=config.path,
                    stream=config.session.stream,
                    stem=config.output_stem or "",
                )
            )
        return list(pending)

    def _pick(self) -> Worker | None:
        """The ready worker with a free slot and the fewest files in flight."""
        free = [w for w in self._workers if w.alive and w.ready and w.credits > 0]
        return min(free, key=lambda w: len(w.inflight), default=None)

    async def _report_left(
        self,
        left: list[int],
        configs: Sequence[FileStreamConfig],
        console: trio.MemorySendChannel[Event],
        results: dict[int, StreamEnded],
        drain: trio.Event,
    ) -> None:
        """One line per file never handed out: interrupted, or no worker was left."""
        for index in left:
            stream = configs[index].session.stream
            now = trio.current_time()
            if drain.is_set():
                message = "interrupted before it started: nothing of it was sent"
                await console.send(
                    StreamError(INTERRUPTED, message, permanent=False, stream=stream, t=now)
                )
                continue
            message = "not started: every worker process had ended"
            await console.send(StreamError("worker", message, stream=stream, t=now))
            results[index] = StreamEnded("failed", stream=stream, t=now)
            await console.send(results[index])

    async def _drain_on(self, drain: trio.Event) -> None:
        await drain.wait()
        self._changed.unpark_all()
        for worker in self._workers:
            await worker.tell(Drain())

    async def _serve(
        self,
        worker: Worker,
        console: trio.MemorySendChannel[Event],
        results: dict[int, StreamEnded],
    ) -> None:
        """Read one worker's messages until its pipe closes; then account for it."""
        try:
            while batch := await worker.read():
                for message in batch:
                    await self._take(worker, message, console, results)
        except (ProtocolViolation, trio.BrokenResourceError) as exc:
            log.error("shard.worker.broken", pid=worker.pid, error=str(exc))
            worker.kill()
        await self._ended(worker, console, results)

    async def _take(
        self,
        worker: Worker,
        message: FromWorker,
        console: trio.MemorySendChannel[Event],
        results: dict[int, StreamEnded],
    ) -> None:
        if isinstance(message, Out):
            await console.send(message.event)
        elif isinstance(message, Finished):
            if worker.inflight.pop(message.index, None) is None:
                raise ProtocolViolation(f"Finished for file {message.index}, not its own")
            results[message.index] = message.ended
        elif isinstance(message, Hello):
            raise ProtocolViolation("a second Hello")
        elif isinstance(message, Want):
            worker.credits += message.n
            worker.ready = True
            self._changed.unpark_all()

    async def _ended(
        self,
        worker: Worker,
        console: trio.MemorySendChannel[Event],
        results: dict[int, StreamEnded],
    ) -> None:
        """The worker closed its pipe: wait for its exit; its unfinished files failed."""
        with trio.move_on_after(EXIT_TIMEOUT_S):
            await worker.process.wait()
        if worker.process.returncode is None:
            worker.kill()
            await worker.process.wait()
        worker.alive = False
        self._changed.unpark_all()
        if not worker.inflight:
            log.info(
                "shard.worker.exited",
                pid=worker.pid,
                status=worker.process.returncode,
                files=worker.handed,
            )
            return
        how = worker.how_it_ended()
        log.error("shard.worker.died", pid=worker.pid, how=how, files=len(worker.inflight))
        for index, stream in sorted(worker.inflight.items()):
            now = trio.current_time()
            message = f"its worker process ({worker.pid}) {how}: the file did not finish"
            await console.send(StreamError("worker", message, stream=stream, t=now))
            results[index] = StreamEnded("failed", stream=stream, t=now)
            await console.send(results[index])
        worker.inflight.clear()

    async def wait_started(self) -> None:
        """Wait (under :data:`READY_TIMEOUT_S`) until each worker says hello: its imports
        are done. A worker that does not is killed (its reader then finds it gone)."""
        async with trio.open_nursery() as nursery:
            for worker in self._workers:
                nursery.start_soon(self._hello, worker)

    async def _hello(self, worker: Worker) -> None:
        try:
            with trio.fail_after(READY_TIMEOUT_S):
                batch = await worker.read()
            if len(batch) != 1 or not isinstance(batch[0], Hello):
                raise ProtocolViolation(f"{batch[:1]!r} instead of Hello")
            worker.greeted = True
        except (ProtocolViolation, trio.BrokenResourceError, trio.TooSlowError) as exc:
            log.error("shard.worker.no_hello", pid=worker.pid, error=repr(exc))
            worker.kill()

    async def aclose(self) -> None:
        """Stop every worker still running: ``Stop``, :data:`STOP_GRACE_S`, then SIGKILL.

        Cancellation: shielded; it always returns with every worker reaped.
        """
        with trio.CancelScope(shield=True):
            running = [w for w in self._workers if w.process.returncode is None]
            with trio.move_on_after(STOP_GRACE_S):
                for worker in running:
                    await worker.tell(Stop())
                for worker in running:
                    await worker.process.wait()
            for worker in self._workers:
                worker.kill()
                await worker.process.wait()
                for pipe in (worker.process.stdin, worker.process.stdout):
                    if pipe is not None:
                        await pipe.aclose()


@contextlib.asynccontextmanager
async def open_workers(
    processes: int, *, share: float = 1.0, log_json: bool = False, log_level: int = 30
) -> AsyncIterator[WorkerPool]:
    """Start ``processes`` workers and wait until they are up, for the body of the ``async with``.

    Args:
        processes: how many (at least 2 makes sense; 1 works).
        share: this process's share of the task-start budgets; each worker gets
            ``share / processes`` (``STENO_RATE_SHARE``).
        log_json, log_level: how the workers log (as the parent: JSON lines or
            plain text, and the least severe level), on the stderr they inherit.

    Raises:
        OSError: a worker cannot be started, or none said hello (those started are
            stopped).

    Resource handling: leaving the block stops every worker still running
    (:meth:`WorkerPool.aclose`), even when cancelled.
    """
    env = {**os.environ, RATE_SHARE_VAR: repr(share / processes)}
    started: list[trio.Process] = []
    try:
        for _ in range(processes):
            started.append(
                await open_child(
                    WORKER_COMMAND,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=None,
                    env=env,
                )
            )
    except BaseException:
        await WorkerPool(started).aclose()
        raise
    pool = WorkerPool(started, log_json=log_json, log_level=log_level)
    try:
        await pool.wait_started()
        if not pool.started:
            raise OSError(f"none of {processes} worker processes started (see the log above)")
        log.info("shard.workers.started", pids=pool.pids, share=share / processes)
        yield pool
    finally:
        await pool.aclose()
