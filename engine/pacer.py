"""One pacer per trio run: every paced producer waits on it instead of a timer of its own.

A paced producer (a file played in real time, a bench feeder) sleeps to an absolute
deadline per frame. With ``trio.sleep_until`` that is one trio timer per stream per
frame (~34 µs of CPU each on the reference machine); with the pacer it is one cheap
unpark (~7 µs) plus a share of one ticker wake that serves every stream due at once.

    await pacer.wait_until(deadline)        # like trio.sleep_until(deadline)

Theory of operation
-------------------
Deadlines are grouped in *buckets* of ``tick`` seconds (``ceil(deadline / tick)``).
Each bucket is a :class:`trio.lowlevel.ParkingLot` and remembers its latest member
deadline (its *due* time). One ticker task sleeps to the earliest bucket's due time,
then unparks every waiter of every bucket that is due, in bucket (time) order and,
within a bucket, in arrival order. Rules:

1. Never early: a waiter wakes at or after its own deadline (a bucket is due at its
   latest member's deadline), at most about one ``tick`` after it when the loop is idle.
2. No lost wake: the ticker's sleep is a cancel scope whose deadline is moved
   forward whenever an earlier bucket appears, and a bucket is only dropped after
   its waiters were unparked.
3. Cancellation is ``sleep_until``'s: a cancelled waiter leaves its lot (trio's
   ``ParkingLot.park`` is cancellable and atomic) and records nothing.

The ticker is a trio *system task*, spawned by the first wait of a run: it lives and
dies with that run (no task leaks out of ``trio.run``, nothing crosses runs), is
parked at no cost while nobody waits, and logs ``pacer.finished`` with the lateness
statistics when the run ends. Lateness (deadline -> the waiter running again) goes in
a fixed-size histogram; :func:`statistics` reads it.
"""

from __future__ import annotations

import bisect
import heapq
import math
from typing import Final, final

import msgspec
import structlog
import trio

__all__ = [
    "DEFAULT_TICK",
    "LatenessHistogram",
    "Pacer",
    "PacerStatistics",
    "current_pacer",
    "statistics",
]

log = structlog.get_logger("steno.pacer")

#: Bucket width. 1 ms bounds the added lateness within the engine's 2 ms budget while
#: one ticker wake serves every stream due in the same millisecond. A tick is a trio
#: timer (as costly as a ``sleep_until``): measured at 300 paced streams, 5 ms roughly
#: halves the pacer's CPU per frame (0.06 instead of 0.2 ticks per frame) but adds up
#: to 5 ms of lateness; pass ``Pacer(tick=...)`` to choose.
DEFAULT_TICK: Final = 0.001

# Histogram bin upper edges in ms: exactly on time, 0.1 ms steps to 5 ms, 1 ms to 50 ms,
# 10 ms to 1 s, 100 ms to 10 s, then one overflow bin: 282 counters, its whole memory.
_EDGES_MS: Final[tuple[float, ...]] = (
    0.0,
    *(round(0.1 * i, 1) for i in range(1, 51)),
    *(float(i) for i in range(6, 51)),
    *(float(i) for i in range(60, 1001, 10)),
    *(float(i) for i in range(1100, 10001, 100)),
)


class PacerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a pacer (:func:`statistics`).

    Attributes:
        count: waits that completed (woken, or already due).
        p50_ms, p99_ms: lateness percentiles (deadline -> running), the upper edge of
            the histogram bin, so never an understatement.
        max_ms: the largest lateness seen, exactly.
        ticks: ticker wake-ups (each serves every bucket then due).
        waiting: waiters parked now.
        tick_s: the bucket width.
    """

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    ticks: int
    waiting: int
    tick_s: float


@final
class LatenessHistogram:
    """Lateness in fixed bins (bounded memory whatever the run length); pure, no trio."""

    def __init__(self) -> None:
        self._bins = [0] * (len(_EDGES_MS) + 1)
        self.count = 0
        self.max_ms = 0.0

    def record(self, lateness_s: float) -> None:
        ms = max(0.0, lateness_s * 1000.0)
        self._bins[bisect.bisect_left(_EDGES_MS, ms)] += 1
        self.count += 1
        if ms > self.max_ms:
            self.max_ms = ms

    def percentile(self, q: float) -> float:
        """The upper edge of the bin holding the ``q`` quantile (0 when empty)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i, n in enumerate(self._bins):
            seen += n
            if seen >= rank:
                return _EDGES_MS[i] if i < len(_EDGES_MS) else self.max_ms
        return self.max_ms  # pragma: no cover - the loop always reaches rank


@final
class _Bucket:
    __slots__ = ("due", "key", "lot")

    def __init__(self, key: int, due: float) -> None:
        self.key = key
        self.due = due
        self.lot = trio.lowlevel.ParkingLot()


@final
class Pacer:
    """Wakes paced producers at their deadlines with one shared ticker (see the module).

    Use :func:`current_pacer` for the run's pacer; construct one only for a test or
    a custom tick. One pacer must only be used inside one trio run.
    """

    def __init__(self, tick: float = DEFAULT_TICK) -> None:
        if not (math.isfinite(tick) and tick > 0):
            raise ValueError(f"tick must be a positive number of seconds, got {tick}")
        self.tick: Final = tick
        self.lateness = LatenessHistogram()
        self.ticks = 0
        self._buckets: dict[int, _Bucket] = {}
        self._heap: list[int] = []  # bucket keys; a key is in the heap iff in _buckets
        self._sleep = trio.CancelScope()  # the ticker's current sleep
        self._ticker = False

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
        now = trio.current_time()
        if deadline > now:
            key = math.ceil(deadline / self.tick)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(key, deadline)
                heapq.heappush(self._heap, key)
            elif deadline > bucket.due:
                bucket.due = deadline
            if self._heap[0] == key:  # the earliest bucket (new or later due): re-aim
                self._sleep.deadline = bucket.due
            if not self._ticker:
                self._ticker = True
                trio.lowlevel.spawn_system_task(self._run_ticker, name="steno.pacer")
            await bucket.lot.park()
        else:
            await trio.lowlevel.checkpoint()
        self.lateness.record(trio.current_time() - deadline)

    def statistics(self) -> PacerStatistics:
        """A snapshot (not a checkpoint)."""
        h = self.lateness
        return PacerStatistics(
            count=h.count,
            p50_ms=h.percentile(0.50),
            p99_ms=h.percentile(0.99),
            max_ms=round(h.max_ms, 3),
            ticks=self.ticks,
            waiting=sum(len(b.lot) for b in self._buckets.values()),
            tick_s=self.tick,
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

    def _wake_due(self, now: float) -> None:
        self.ticks += 1
        heap, buckets = self._heap, self._buckets
        while heap and buckets[heap[0]].due <= now:
            buckets.pop(heapq.heappop(heap)).lot.unpark_all()


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
