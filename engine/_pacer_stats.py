"""The pacer's figures: lateness in fixed bins and the statistics snapshot (pure, no trio).

Public through :mod:`engine.pacer` (``LatenessHistogram``, ``PacerStatistics``).
"""

from __future__ import annotations

import bisect
import math
from typing import Final, final

import msgspec

__all__ = ["LatenessHistogram", "PacerStatistics"]

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
        count: waits that completed (woken, or already due) and steps called.
        p50_ms, p99_ms: lateness percentiles (deadline -> running), the upper edge of
            the histogram bin, so never an understatement.
        max_ms: the largest lateness seen, exactly.
        ticks: ticker wake-ups (each serves the buckets then due, up to its budget).
        waiting: waiters and drivers parked now.
        tick_s: the bucket width.
        deferred: step calls a tick left to the next one (its ``max_steps`` reached).
        tick_late_p99_ms, tick_late_max_ms: the ticker's own lateness (its earliest
            due bucket -> the tick): how long the loop was held by others.
        tick_busy_max_ms: the longest tick (first step called -> last one returned).
    """

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    ticks: int
    waiting: int
    tick_s: float
    deferred: int = 0
    tick_late_p99_ms: float = 0.0
    tick_late_max_ms: float = 0.0
    tick_busy_max_ms: float = 0.0


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
