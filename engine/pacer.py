"""One pacer per trio run: every paced producer waits on it instead of a timer of its own.

A paced producer (a file played in real time, a bench feeder) sleeps to an absolute
deadline per frame. With ``trio.sleep_until`` that is one trio timer per stream per
frame (~34 µs of CPU each on the reference machine); with the pacer it is one cheap
unpark (~7 µs) plus a share of one ticker wake that serves every stream due at once.
A *driven* producer costs no task step per frame at all: its task parks once and the
ticker calls its synchronous step at each deadline, inside its own tick.

    await pacer.wait_until(deadline)        # like trio.sleep_until(deadline)
    await pacer.drive(step, deadline)       # step(now) -> next deadline, or None: back to me

Theory of operation
-------------------
Deadlines are grouped in *buckets* of ``tick`` seconds (``ceil(deadline / tick)``).
Each bucket holds its waiters (a :class:`trio.lowlevel.ParkingLot`) and its driven
steps, and remembers its latest member deadline (its *due* time). One ticker task
sleeps to the earliest bucket's due time, then serves every bucket that is due, in
bucket (time) order: it unparks the waiters (in arrival order) and calls the steps
(in deadline order). A step hands its frame over synchronously and returns its next
deadline, which joins a bucket like a new wait: a deadline already due is served by
the next tick, right after the other runnable tasks had their turn (a backlog goes
one frame per driver per tick, in order, never starving the run), a later one stays
registered and the driver's task never runs. ``None`` from a step, or an exception,
ends the drive: the task is rescheduled (and re-raises the exception). Rules:

1. Never early: a waiter wakes, a step is called, at or after its own deadline (a
   bucket is due at its latest member's deadline), at most about one ``tick`` after
   it when the loop is idle.
2. No lost wake: the ticker's sleep is a cancel scope whose deadline is moved
   forward whenever an earlier bucket appears, and a bucket is only dropped after
   its waiters were unparked and its steps called.
3. Cancellation is ``sleep_until``'s: a cancelled waiter leaves its lot (trio's
   ``ParkingLot.park`` is cancellable and atomic) and records nothing; a cancelled
   driver's step is never called again (calls made before stay made).
4. Steps run in the ticker, never raise into it: a step is called in its driver's
   ``contextvars`` context (the driver's structlog bindings hold), must not await or
   touch cancel scopes, and whatever it raises is caught and re-raised in the
   driver's task, with its traceback. A step must move its deadline forward (a
   deadline not later than the one it was called for ends the drive with a
   ``ValueError``), and a tick calls each step at most once, so a tick always ends.
5. A tick is bounded: it calls at most ``max_steps`` steps, the earliest deadlines
   first (bucket order, then deadline order in a bucket); the rest stay due and are
   served by the next tick, after the other runnable tasks (the read hub, the pumps)
   had their turn: a backlog (after a stall) goes in slices of bounded length, not one
   tick holding the loop. Deferred calls are counted (:attr:`PacerStatistics.deferred`);
   waiters are unparked whatever the budget (an unpark only makes a task runnable).
   The trade, measured overloaded (500 streams, 20 % of a core): send lag p99 ~0.2-10
   ms instead of ~0.9 s, but the backlog waits here, where it is not coalesced.

The ticker is a trio *system task*, spawned by the first wait of a run: it lives and
dies with that run (no task leaks out of ``trio.run``, nothing crosses runs), is
parked at no cost while nobody waits, and logs ``pacer.finished`` with the lateness
statistics when the run ends. Lateness (deadline -> the waiter running again, or the
step called) goes in a fixed-size histogram; :func:`statistics` reads it. The ticker's
own lateness (its earliest due bucket -> the tick) is a second histogram: the ticker
asks for the loop every millisecond while streams are paced, so that is how long the
loop was held by something else (a collection, a long step of another task), a
watchdog at no extra cost.
"""

from __future__ import annotations

import contextvars
import heapq
import math
from collections.abc import Callable
from operator import attrgetter
from typing import Final, TypeAlias, final

import msgspec
import structlog
import trio

from engine._pacer_stats import LatenessHistogram as LatenessHistogram
from engine._pacer_stats import PacerStatistics as PacerStatistics

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_TICK",
    "LatenessHistogram",
    "Pacer",
    "PacerStatistics",
    "Step",
    "current_pacer",
    "statistics",
]

log = structlog.get_logger("steno.pacer")

Step: TypeAlias = Callable[[float], float | None]
"""A driven producer's step: ``step(now) -> next_deadline | None`` (see :meth:`Pacer.drive`)."""

#: Steps a tick calls at most (rule 5). 1,000 streams over a 100 ms frame put ~10 in a
#: 1 ms bucket; 64 steps are ~1-3 ms of work, a backlog of 1,000 goes in ~16 slices.
DEFAULT_MAX_STEPS: Final = 64

#: Bucket width. 1 ms bounds the added lateness within the engine's 2 ms budget while
#: one ticker wake serves every stream due in the same millisecond. A tick is a trio
#: timer (as costly as a ``sleep_until``): measured at 300 paced streams, 5 ms roughly
#: halves the pacer's CPU per frame (0.06 instead of 0.2 ticks per frame) but adds up
#: to 5 ms of lateness; pass ``Pacer(tick=...)`` to choose.
DEFAULT_TICK: Final = 0.001


@final
class _Driver:
    """One :meth:`Pacer.drive` call: its step, next deadline and parked task."""

    __slots__ = ("context", "deadline", "error", "step", "task")

    def __init__(
        self, step: Step, deadline: float, task: trio.lowlevel.Task, context: contextvars.Context
    ) -> None:
        self.step: Step | None = step  # None once the drive ended (done, failed, cancelled)
        self.deadline = deadline
        self.task = task
        self.context = context
        self.error: BaseException | None = None


_by_deadline: Final = attrgetter("deadline")


@final
class _Bucket:
    __slots__ = ("drivers", "due", "key", "lot")

    def __init__(self, key: int, due: float) -> None:
        self.key = key
        self.due = due
        self.lot: trio.lowlevel.ParkingLot | None = None  # made for the first waiter
        self.drivers: list[_Driver] | None = None  # made for the first step


@final
class Pacer:
    """Wakes paced producers at their deadlines with one shared ticker (see the module).

    Use :func:`current_pacer` for the run's pacer; construct one only for a test or
    a custom tick. One pacer must only be used inside one trio run.

    Args:
        tick: the bucket width in seconds.
        max_steps: step calls per tick at most (rule 5).
    """

    def __init__(self, tick: float = DEFAULT_TICK, *, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        if not (math.isfinite(tick) and tick > 0):
            raise ValueError(f"tick must be a positive number of seconds, got {tick}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.tick: Final = tick
        self.max_steps: Final = max_steps
        self.lateness = LatenessHistogram()
        self.tick_lateness = LatenessHistogram()
        self.tick_busy_max = 0.0
        self.deferred = 0
        self.ticks = 0
        self._buckets: dict[int, _Bucket] = {}
        self._heap: list[int] = []  # bucket keys; a key is in the heap iff in _buckets
        self._sleep = trio.CancelScope()  # the ticker's current sleep
        self._ticker = False
        self._driving = 0  # drivers parked in drive()

    async def wait_until(self, deadline: float) -> None:
        """Return at or after ``deadline`` on the trio clock, like ``trio.sleep_until``.

        Always a checkpoint; a deadline already past checkpoints and returns.

        Cancellation: cancellable like ``trio.sleep_until``; a cancelled wait leaves
        nothing behind and records no lateness.

        Raises:
            ValueError: ``deadline`` is NaN.
        """
        if math.isnan(deadline):
            raise ValueError("deadline must not be NaN")
        if deadline > trio.current_time():
            bucket = self._bucket(deadline)
            lot = bucket.lot
            if lot is None:
                lot = bucket.lot = trio.lowlevel.ParkingLot()
            await lot.park()
        else:
            await trio.lowlevel.checkpoint()
        self.lateness.record(trio.current_time() - deadline)

    async def drive(self, step: Step, deadline: float) -> None:
        """Park this task; the ticker calls ``step(now)`` at ``deadline`` and each next one.

        ``step`` runs synchronously inside the ticker's tick, in this task's
        ``contextvars`` context, with ``now`` the trio time of the tick (at or after
        its deadline). It does one paced thing (hand a frame over without waiting)
        and returns the deadline of the next one, which must be later than the one
        it was called for: the task stays parked and the ticker calls it again then
        (at its next tick, when that deadline is already due). It returns
        ``None`` when the task must take over (its source needs an await: a read, a
        frame refused); ``drive`` then returns. Each call's lateness (deadline ->
        called) is recorded, as a wait's is. Always a checkpoint (the park), even
        when ``deadline`` has passed (the step is then called at the next tick).

        ``step`` must not await, enter or cancel cancel scopes of its own task, or
        block: the ticker serves every stream of the run.

        Cancellation:
            Cancellable while parked; the step is never called again (calls already
            made stay made: what they handed over was handed over) and nothing is
            left registered.

        Raises:
            ValueError: ``deadline`` is NaN, or ``step`` returned a deadline that is
                not a finite time later than the one it was called for.
            BaseException: whatever ``step`` raised, re-raised here with its
                traceback (the ticker never sees it).
        """
        if math.isnan(deadline):
            raise ValueError("deadline must not be NaN")
        driver = _Driver(step, deadline, trio.lowlevel.current_task(), contextvars.copy_context())
        self._add(driver)
        self._driving += 1

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            driver.step = None  # left in its bucket, skipped by the ticker
            self._driving -= 1
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        error, driver.error = driver.error, None
        if error is not None:
            raise error

    def statistics(self) -> PacerStatistics:
        """A snapshot (not a checkpoint)."""
        h = self.lateness
        return PacerStatistics(
            count=h.count,
            p50_ms=h.percentile(0.50),
            p99_ms=h.percentile(0.99),
            max_ms=round(h.max_ms, 3),
            ticks=self.ticks,
            waiting=self._driving
            + sum(len(b.lot) for b in self._buckets.values() if b.lot is not None),
            tick_s=self.tick,
            deferred=self.deferred,
            tick_late_p99_ms=self.tick_lateness.percentile(0.99),
            tick_late_max_ms=round(self.tick_lateness.max_ms, 3),
            tick_busy_max_ms=round(self.tick_busy_max * 1000.0, 3),
        )

    async def _run_ticker(self) -> None:
        """Sleep to the earliest due bucket, wake its waiters; forever (a system task).

        Cancellation: cancelled when the run ends; logs the statistics once then.
        """
        try:
            while True:
                self._sleep = trio.CancelScope(
                    deadline=self._buckets[self._heap[0]].due if self._heap else math.inf
                )
                with self._sleep:
                    await trio.sleep_forever()
                self._wake_due(trio.current_time())
        finally:
            if self.lateness.count:
                log.info("pacer.finished", **msgspec.structs.asdict(self.statistics()))

    def _bucket(self, deadline: float) -> _Bucket:
        """The bucket ``deadline`` joins (made, and the ticker re-aimed, as needed)."""
        key = math.ceil(deadline / self.tick)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(key, deadline)
            heapq.heappush(self._heap, key)
        elif deadline > bucket.due:
            bucket.due = deadline
        # The earliest bucket (new or later due): re-aim. During a tick this moves the
        # ended sleep's deadline, which is harmless: the ticker aims anew after it.
        if self._heap[0] == key:
            self._sleep.deadline = bucket.due
        if not self._ticker:
            self._ticker = True
            trio.lowlevel.spawn_system_task(self._run_ticker, name="steno.pacer")
        return bucket

    def _add(self, driver: _Driver) -> None:
        bucket = self._bucket(driver.deadline)
        if bucket.drivers is None:
            bucket.drivers = [driver]
        else:
            bucket.drivers.append(driver)

    def _wake_due(self, now: float) -> None:
        self.ticks += 1
        heap, buckets = self._heap, self._buckets
        if not heap:
            return
        self.tick_lateness.record(now - buckets[heap[0]].due)
        due: list[_Bucket] = []
        while heap and buckets[heap[0]].due <= now:
            due.append(buckets.pop(heapq.heappop(heap)))
        # Steps re-registered now join buckets of the next tick, even when already due:
        # a backlog then goes one frame per driver per tick, with the other tasks
        # running between ticks (the reader, the consumers), as waiters would.
        budget = self.max_steps
        for bucket in due:
            if bucket.lot is not None:  # waiters never wait for the budget (rule 5)
                bucket.lot.unpark_all()
                bucket.lot = None
            drivers = bucket.drivers
            if drivers is None:
                continue
            if not budget:
                self._requeue(bucket)
                continue
            if len(drivers) > budget:  # rule 5: the latest deadlines wait for the next tick
                drivers.sort(key=_by_deadline)
                bucket.drivers = drivers[budget:]
                drivers = drivers[:budget]
                self._requeue(bucket)
            budget -= len(drivers)
            self._call_steps(drivers, now)
        busy = trio.current_time() - now
        if busy > self.tick_busy_max:
            self.tick_busy_max = busy

    def _requeue(self, bucket: _Bucket) -> None:
        """Put a due bucket's unserved steps back (rule 5), counted; merged with a bucket
        of the same key that re-registered steps made meanwhile (due at the later of the
        two: within its tick, as rule 1 allows)."""
        drivers = bucket.drivers
        if not drivers:
            return
        self.deferred += len(drivers)  # (a cancelled one too: it is skipped when due)
        existing = self._buckets.get(bucket.key)
        if existing is None:
            self._buckets[bucket.key] = bucket
            heapq.heappush(self._heap, bucket.key)
        elif existing.drivers is None:
            existing.drivers = drivers
        else:
            existing.drivers.extend(drivers)

    def _call_steps(self, drivers: list[_Driver], now: float) -> None:
        """Call each live driver's step once (rule 4: nothing escapes into the ticker)."""
        if len(drivers) > 1:
            drivers.sort(key=_by_deadline)
        record = self.lateness.record
        for driver in drivers:
            step = driver.step
            if step is None:  # cancelled while it waited here
                continue
            record(now - driver.deadline)
            try:
                nxt = driver.context.run(step, now)
            except BaseException as exc:  # handed to the driver's task, never raised here
                self._end(driver, exc)
                continue
            if nxt is None:
                self._end(driver, None)
            elif not (math.isfinite(nxt) and nxt > driver.deadline):
                self._end(
                    driver,
                    ValueError(
                        f"a drive step returned {nxt!r} after its deadline {driver.deadline!r}: "
                        "the next deadline must be a finite, later time"
                    ),
                )
            elif driver.step is not None:  # else its task was cancelled by the step itself
                driver.deadline = nxt
                self._add(driver)

    def _end(self, driver: _Driver, error: BaseException | None) -> None:
        """End a drive: its task runs again (and raises ``error``)."""
        if driver.step is None:  # the step cancelled its own task: nobody left to tell
            if error is not None:
                log.error("pacer.step_failed", exc_info=error)
            return
        driver.step = None
        driver.error = error
        self._driving -= 1
        trio.lowlevel.reschedule(driver.task)


_PACER: trio.lowlevel.RunVar[Pacer] = trio.lowlevel.RunVar("steno_pacer")


def current_pacer() -> Pacer:
    """The pacer of the running trio loop (made on first use; one per run)."""
    try:
        return _PACER.get()
    except LookupError:
        pacer = Pacer()
        _PACER.set(pacer)
        return pacer


def statistics() -> PacerStatistics:
    """The running trio loop's pacer statistics (:meth:`Pacer.statistics`)."""
    return current_pacer().statistics()
