"""A bounded histogram of small durations (the session's send lag), in log buckets.

Durations are counted in microseconds in buckets of four per power of two (each
bucket at most 19 % wide), up to about 35 minutes; longer ones land in the last
bucket. The memory is fixed whatever the count: :data:`BUCKETS` counters packed in
4 bytes each (~560 B a stream, where a list of ints took ~1 KB and, once counts pass
256, an int object per busy bucket); a bucket that reaches 2**32 (13 years of
frames) widens them to 8 bytes, once. :meth:`LagHistogram.add` is a few integer
operations: it runs once per frame.
Quantiles are the upper bound of their bucket (never an underestimate by more
than the microsecond durations are truncated to).
"""

from __future__ import annotations

import math
from array import array
from typing import Final

__all__ = ["BUCKETS", "LagHistogram"]

_SUB: Final = 2
"""log2 of the buckets per power of two."""

_EXACT: Final = 1 << (_SUB + 1)
"""Durations below this many microseconds have a bucket each."""

_MAX_US: Final = (1 << 31) - 1

BUCKETS: Final = _EXACT + (31 - _SUB - 1) * (1 << _SUB)

_OFFSET: Final = _EXACT - 2 * (1 << _SUB)
""":func:`_index` of ``us`` >= :data:`_EXACT` is ``(shift << _SUB) + (us >> shift) + _OFFSET``."""


def _index(us: int) -> int:
    if us < _EXACT:
        return max(us, 0)
    us = min(us, _MAX_US)
    shift = us.bit_length() - _SUB - 1
    return _EXACT + (shift - 1) * (1 << _SUB) + (us >> shift) - (1 << _SUB)


def _upper_us(index: int) -> int:
    """The largest duration (µs) that lands in bucket ``index``."""
    if index < _EXACT:
        return index
    shift, sub = divmod(index - _EXACT, 1 << _SUB)
    shift += 1
    return (((1 << _SUB) + sub + 1) << shift) - 1


class LagHistogram:
    """Counts of durations; see the module docstring."""

    __slots__ = ("_counts", "count", "max_s")

    def __init__(self) -> None:
        self._counts = array("I", [0]) * BUCKETS  # exact size (from bytes: 7 % more)
        self.count = 0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        """Count one duration (negative ones count as zero)."""
        us = int(seconds * 1e6)
        if us < _EXACT:
            index = us if us > 0 else 0
        else:  # _index, inlined: this runs for every frame of every stream
            if us > _MAX_US:
                us = _MAX_US
            shift = us.bit_length() - _SUB - 1
            index = (shift << _SUB) + (us >> shift) + _OFFSET
        try:
            self._counts[index] += 1
        except OverflowError:  # a bucket at 2**32: widen every counter, once
            self._counts = array("Q", self._counts)
            self._counts[index] += 1
        self.count += 1
        if seconds > self.max_s:
            self.max_s = seconds

    def quantile_s(self, q: float) -> float:
        """The ``q`` quantile (0 < q <= 1) as its bucket's upper bound; 0.0 when empty."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return min(_upper_us(index) / 1e6, self.max_s)
        return self.max_s  # pragma: no cover - the counts sum to count
