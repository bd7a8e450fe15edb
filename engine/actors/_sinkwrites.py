"""The sink writes of every stream of a run, in a few worker-thread hops per second.

Sinks do blocking file I/O, so their writes leave the trio thread. A worker-thread hop
(``trio.to_thread.run_sync``) costs ~170 µs of CPU here, and a stream's renderer has
~3 events a second to write (partials, finals, its lifecycle): a hop per event made
the outputs of 300 files cost more CPU than their transport. :class:`WriteBatcher`
runs every write queued by any stream in one hop, and makes at most one hop per
:data:`LINGER_S`: under load, the writes queued meanwhile share the next hop; an idle
batcher writes at once, so one stream's files are not slowed down.

Theory of operation: one server task per trio run (a system task, spawned by the
first write, so nothing outlives the run) waits for work, takes the whole queue, runs
it in one ``to_thread`` call (each job's result or exception kept), wakes each job's
waiter, then rests until :data:`LINGER_S` after the hop began. The queue holds one job
per waiting caller (each caller waits for its job), so it is bounded by the renderers
of the run: policy *block*, counted in :attr:`WriteBatcher.jobs`.

The same shape as :mod:`adapters.audio._batchread` (which reads audio and never
lingers: a read is on the audio's critical path, a write is not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Generic, TypeVar, final

import outcome
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LINGER_S", "WriteBatcher", "current_write_batcher"]

T = TypeVar("T")

LINGER_S: Final = 0.1
"""The least time from one hop's start to the next: at most 10 hops a second."""


@final
class _Job(Generic[T]):
    __slots__ = ("fn", "result", "task")

    def __init__(self, fn: Callable[[], T], task: trio.lowlevel.Task) -> None:
        self.fn = fn
        self.task = task  # the caller, parked until the hop is back
        self.result: outcome.Outcome[T] | None = None

    def run(self) -> None:  # in the worker thread
        # Whatever fn raises is handed back to the caller.
        self.result = outcome.capture(self.fn)


def _run_all(batch: list[_Job[object]]) -> None:
    for job in batch:
        job.run()


@final
class WriteBatcher:
    """Runs blocking callables in a worker thread, all queued ones per hop (see the module).

    Args:
        linger_s: the least time between the starts of two hops (0: hop as soon as
            the previous one is back, as the read batcher does).

    Attributes:
        hops: worker-thread hops made.
        jobs: callables run.
    """

    def __init__(self, *, linger_s: float = LINGER_S) -> None:
        if not linger_s >= 0.0:
            raise ValueError(f"linger_s must be >= 0, got {linger_s}")
        self.linger_s = linger_s
        self._queue: list[_Job[object]] = []
        self._wake = trio.Event()
        self._serving = False
        self.hops = 0
        self.jobs = 0

    async def run_sync(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in a worker thread, in the next hop; return its result.

        A checkpoint. Like ``trio.to_thread.run_sync`` (not abandoned on cancel):
        cancellation before the job is queued raises at once; once queued, the job
        runs to its end and its result is returned (a cancellation then lands at the
        caller's next checkpoint), so a record is never left half written.

        Raises:
            BaseException: whatever ``fn`` raised.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        job = _Job(fn, trio.lowlevel.current_task())
        self._queue.append(job)  # type: ignore[arg-type]
        self._wake.set()
        if not self._serving:
            self._serving = True
            trio.lowlevel.spawn_system_task(self._serve, name="steno.write_batcher")
        # Parked without a timer or a cancel scope; a cancel waits for the hop (FAILED),
        # as ``trio.to_thread.run_sync`` does.
        result: T = await trio.lowlevel.wait_task_rescheduled(_wait_for_the_hop)
        return result

    async def _serve(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batch, self._queue = self._queue, []
            began = trio.current_time()
            self.hops += 1
            self.jobs += len(batch)
            try:
                await trio.to_thread.run_sync(_run_all, batch)
            except Exception as exc:  # no worker thread to be had: every waiter hears why
                failed: outcome.Outcome[object] = outcome.Error(exc)
            else:
                failed = outcome.Error(RuntimeError("write batcher: a job did not run"))
            for job in batch:
                trio.lowlevel.reschedule(job.task, job.result or failed)
            await trio.sleep_until(began + self.linger_s)


def _wait_for_the_hop(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


_BATCHER: trio.lowlevel.RunVar[WriteBatcher] = trio.lowlevel.RunVar("steno_write_batcher")


def current_write_batcher() -> WriteBatcher:
    """The running trio loop's write batcher (made on first use; one per run)."""
    try:
        return _BATCHER.get()
    except LookupError:
        batcher = WriteBatcher()
        _BATCHER.set(batcher)
        return batcher
