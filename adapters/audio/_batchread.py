"""Blocking reads (and writes) of many streams, batched: one worker-thread hop for every call queued.

A file read in a worker thread (``trio.to_thread.run_sync``) costs ~170 µs of CPU per
hop on the reference machine, five times the read of a second of 16 kHz audio. With
hundreds of files playing, reads come in every millisecond; :class:`ReadBatcher` runs
all the reads queued while the previous batch was in the thread in one hop, so the
hop's cost is shared. A read that is needed now (``--fast``, the first read) starts
a lone batch at once; a read with slack (``gather_s``: a paced file reads its next
second of audio a block before it is due) may wait that long for others to join
it when calls are coming in (another came less than ``gather_s`` before it), so
hundreds of paced files share a few hops a second instead of a hop each, and a
lone call (one file, a final every few seconds) is never held back.

Theory of operation: one server task per trio run (a system task, spawned by the first
read, so nothing outlives the run) waits for work, then until the earliest time a
queued job must start (``now + gather_s`` of each, on the trio clock; a job that
lowers it wakes the server), takes the whole queue, runs it in one ``to_thread``
call (each job's result or exception kept), and wakes each job's waiter. Reads
queued meanwhile form the next batch.

Two batchers per run: the file reads (:func:`current_read_batcher`) and the output
files' writes and closes (:func:`current_write_batcher`, the renderers'), apart, so a
slow write or ``fsync`` never delays a read-ahead that is due.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Generic, TypeVar, final

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["ReadBatcher", "current_read_batcher", "current_write_batcher"]

T = TypeVar("T")


@final
class _Job(Generic[T]):
    __slots__ = ("error", "fn", "task", "value")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.task = trio.lowlevel.current_task()  # parked until the batch has run
        self.value: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:  # in the worker thread
        try:
            self.value = self.fn()
        except BaseException as exc:  # handed back to the waiter, whatever it is
            self.error = exc


def _cannot_abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


def _run_all(batch: list[_Job[object]]) -> None:
    for job in batch:
        job.run()


@final
class ReadBatcher:
    """Runs blocking callables in a worker thread, many per hop (see the module).

    Args:
        name: the server task's name.
        runner: runs a batch's call off the loop (``trio.to_thread.run_sync``; a test
            may run it in place, so that virtual time does not leap during a hop).
    """

    def __init__(
        self,
        name: str = "steno.read_batcher",
        *,
        runner: Callable[[Callable[[], None]], Awaitable[None]] | None = None,
    ) -> None:
        self._name = name
        self._runner = runner
        self._queue: list[_Job[object]] = []
        self._wake = trio.Event()
        self._due = math.inf  # when the queued batch must start (trio clock)
        self._last = -math.inf  # when the last call came (trio clock)
        self._sooner = trio.Event()  # set when a job brings _due forward
        self._serving = False
        self.batches = 0  # worker-thread hops
        self.jobs = 0  # callables run

    async def run_sync(self, fn: Callable[[], T], *, gather_s: float = 0.0) -> T:
        """Run ``fn()`` in a worker thread, in the next batch; return its result.

        ``gather_s``: how long the batch may wait for other jobs before it starts
        when calls are coming in (0: at once; see the module); the job is run within
        that, plus the hop, unless a batch already in the thread holds it up.

        A checkpoint. Like ``trio.to_thread.run_sync`` (not abandoned on cancel):
        cancellation before the job is queued raises at once; once queued, the job
        runs to its end and its result is returned (a cancellation then lands at the
        caller's next checkpoint), so the state it touches is never left half done.

        Raises:
            BaseException: whatever ``fn`` raised.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        job = _Job(fn)
        self._queue.append(job)  # type: ignore[arg-type]
        now = trio.current_time()
        company, self._last = now - self._last < gather_s, now
        due = now + gather_s if company else -math.inf
        if due < self._due:
            self._due = due
            self._sooner.set()
        self._wake.set()
        if not self._serving:
            self._serving = True
            trio.lowlevel.spawn_system_task(self._serve, name=self._name)
        # Parked until the server reschedules it: a cancellation cannot abort the wait
        # (the job runs to its end), it lands at the caller's next checkpoint. The
        # same as a shielded wait on an Event, without the scope and the Event.
        await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]

    async def _serve(self) -> None:
        while True:
            await self._wake.wait()
            while self._due > trio.current_time():
                self._sooner = trio.Event()
                with trio.move_on_at(self._due):
                    await self._sooner.wait()
            self._wake = trio.Event()
            self._due = math.inf
            batch, self._queue = self._queue, []
            self.batches += 1
            self.jobs += len(batch)
            call = functools.partial(_run_all, batch)
            await (self._runner(call) if self._runner else trio.to_thread.run_sync(call))
            for job in batch:
                trio.lowlevel.reschedule(job.task)


_BATCHER: trio.lowlevel.RunVar[ReadBatcher] = trio.lowlevel.RunVar("steno_read_batcher")
_WRITER: trio.lowlevel.RunVar[ReadBatcher] = trio.lowlevel.RunVar("steno_write_batcher")


def current_read_batcher() -> ReadBatcher:
    """The running trio loop's batcher (made on first use; one per run)."""
    try:
        return _BATCHER.get()
    except LookupError:
        batcher = ReadBatcher()
        _BATCHER.set(batcher)
        return batcher


def current_write_batcher() -> ReadBatcher:
    """The running trio loop's batcher of output writes (made on first use; one per run)."""
    try:
        return _WRITER.get()
    except LookupError:
        batcher = ReadBatcher("steno.write_batcher")
        _WRITER.set(batcher)
        return batcher
