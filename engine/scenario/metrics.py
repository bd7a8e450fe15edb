"""Metric series in HDR histograms: constant memory, exactly mergeable (pure, no clock).

A :class:`Trend` keeps an HdrHistogram (3 significant figures, the ``hdrhistogram``
package, whose encoding other HdrHistogram tools read) beside the exact count, sum,
min and max of the integers it recorded (see :mod:`engine.scenario.catalog` for the
scales). Percentiles come from the histogram (within 0.1 %); everything else is exact.
Merging two trends adds their histograms and totals, so merging the segments of a run
gives exactly what one process recording every value would have.

A :class:`Recorder` holds one series per (metric, scenario, code) for the whole run
and a second set for the current history interval, which :meth:`Recorder.cut` hands
over and resets. :class:`SeriesState` is the serialized form (report.json, merge).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import msgspec
from hdrh.histogram import HdrHistogram

from engine.scenario.catalog import METRICS, MetricInfo

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "PERCENTILES",
    "Recorder",
    "SeriesKey",
    "SeriesState",
    "Trend",
    "merge_states",
    "roll_up",
    "series_key",
    "summarize",
]

PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0)
_SIG_FIGS: Final = 3

SeriesKey = tuple[str, str, str]
"""(metric, scenario, code); scenario "" is every scenario, code "" every code."""


def series_key(metric: str, scenario: str = "", code: str = "") -> str:
    """The report's name of a series: ``metric``, ``metric{scenario:x}``, ``errors{code:y}``."""
    if code:
        return (
            f"{metric}{{code:{code}}}"
            if not scenario
            else f"{metric}{{scenario:{scenario},code:{code}}}"
        )
    return f"{metric}{{scenario:{scenario}}}" if scenario else metric


class SeriesState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A series, serialized. Integers are in the metric's recording units.

    ``hdr`` is the HdrHistogram V2 encoding (base64, compressed); empty for counters and
    for trends with no values. ``clamped`` counts values outside the histogram's range
    (recorded at its bound).
    """

    metric: str
    scenario: str = ""
    code: str = ""
    count: int = 0
    sum: int = 0
    min: int | None = None
    max: int | None = None
    clamped: int = 0
    hdr: str = ""


class Trend:
    """One trend series: an HDR histogram plus exact count, sum, min and max."""

    __slots__ = ("_hist", "clamped", "count", "info", "max", "min", "sum")

    def __init__(self, info: MetricInfo) -> None:
        self.info = info
        self._hist: HdrHistogram | None = None  # allocated on the first value
        self.count = 0
        self.sum = 0
        self.min: int | None = None
        self.max: int | None = None
        self.clamped = 0

    def record(self, value: float) -> None:
        """Add one observation in the metric's display unit (ms, a fraction, …)."""
        if not math.isfinite(value):
            self.clamped += 1
            return
        self.record_int(round(value * self.info.scale))

    def record_int(self, units: int, times: int = 1) -> None:
        if units < 0 or units > self.info.highest:
            self.clamped += times
            units = min(max(units, 0), self.info.highest)
        self._histogram().record_value(units, times)
        self.count += times
        self.sum += units * times
        self.min = units if self.min is None else min(self.min, units)
        self.max = units if self.max is None else max(self.max, units)

    def _histogram(self) -> HdrHistogram:
        if self._hist is None:
            self._hist = HdrHistogram(1, self.info.highest, _SIG_FIGS)
        return self._hist

    def percentile_units(self, p: float) -> int | None:
        if self._hist is None or not self.count:
            return None
        value = int(self._hist.get_value_at_percentile(p))
        assert self.min is not None
        assert self.max is not None
        return min(max(value, self.min), self.max)  # the bucket's edge never passes the extremes

    def merge(self, other: Trend) -> None:
        """Add ``other``'s observations (exact)."""
        if other._hist is not None and other.count:
            self._histogram().add(other._hist)
        self.count += other.count
        self.sum += other.sum
        self.clamped += other.clamped
        for attr, pick in (("min", min), ("max", max)):
            a, b = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, b if a is None else a if b is None else pick(a, b))

    def state(self, metric: str, scenario: str = "", code: str = "") -> SeriesState:
        hdr = self._hist.encode().decode("ascii") if self._hist is not None and self.count else ""
        return SeriesState(
            metric=metric,
            scenario=scenario,
            code=code,
            count=self.count,
            sum=self.sum,
            min=self.min,
            max=self.max,
            clamped=self.clamped,
            hdr=hdr,
        )

    @classmethod
    def from_state(cls, state: SeriesState) -> Trend:
        trend = cls(METRICS[state.metric])
        trend.count, trend.sum, trend.clamped = state.count, state.sum, state.clamped
        trend.min, trend.max = state.min, state.max
        if state.hdr:
            decoded = HdrHistogram.decode(state.hdr.encode("ascii"))
            trend._histogram().add(decoded)
        return trend


def summarize(state: SeriesState, *, duration_s: float) -> dict[str, float | None]:
    """The k6-style aggregates of a series in display units.

    Trends: count, sum, min, max, avg, med, p(50), p(90), p(95), p(99), rate; counters:
    count, sum, rate (per second of ``duration_s``).
    """
    info = METRICS[state.metric]
    rate = state.sum / duration_s if duration_s > 0 else None
    if info.kind == "counter":
        return {"count": float(state.count), "sum": float(state.sum), "rate": rate}
    scale = info.scale
    trend = Trend.from_state(state)
    out: dict[str, float | None] = {
        "count": float(state.count),
        "sum": state.sum / scale,
        "min": None if state.min is None else state.min / scale,
        "max": None if state.max is None else state.max / scale,
        "avg": state.sum / state.count / scale if state.count else None,
        "rate": state.count / duration_s if duration_s > 0 else None,
    }
    for p in PERCENTILES:
        units = trend.percentile_units(p)
        out[f"p({p:g})"] = None if units is None else units / scale
    out["med"] = out["p(50)"]
    return out


def merge_states(states: Iterable[SeriesState]) -> list[SeriesState]:
    """Merge series with the same (metric, scenario, code) key, exactly."""
    trends: dict[SeriesKey, Trend] = {}
    counters: dict[SeriesKey, int] = {}
    for s in states:
        key = (s.metric, s.scenario, s.code)
        if METRICS[s.metric].kind == "counter":
            counters[key] = counters.get(key, 0) + s.sum
            continue
        trend = Trend.from_state(s)
        if key in trends:
            trends[key].merge(trend)
        else:
            trends[key] = trend
    out = [t.state(*k) for k, t in trends.items()]
    out += [
        SeriesState(metric=k[0], scenario=k[1], code=k[2], count=v, sum=v)
        for k, v in counters.items()
    ]
    return sorted(out, key=lambda s: (s.metric, s.scenario, s.code))


def roll_up(states: Iterable[SeriesState]) -> list[SeriesState]:
    """Per-scenario series plus the whole-run series (scenario "") of each metric.

    ``errors`` keeps its codes: the whole run gets ``errors`` (all codes) and
    ``errors{code:X}``; each scenario gets ``errors{scenario:S}``.
    """
    states = list(states)
    base = [s for s in states if s.scenario]
    process = [s for s in states if not s.scenario]  # process-wide: cpu, rss
    whole = [msgspec.structs.replace(s, scenario="") for s in base]
    totals = [msgspec.structs.replace(s, scenario="", code="") for s in base if s.code]
    per_scenario = [msgspec.structs.replace(s, code="") for s in base if s.code]
    return merge_states(
        [*(s for s in base if not s.code), *per_scenario, *whole, *totals, *process]
    )


class Recorder:
    """Every series of one process's run: cumulative and for the current interval.

    Not thread-safe; not a checkpoint. Scenario names are the series' scenario tag.
    """

    def __init__(self) -> None:
        self._trends: dict[SeriesKey, Trend] = {}
        self._window: dict[SeriesKey, Trend] = {}
        self._counters: dict[SeriesKey, int] = {}
        self._window_counters: dict[SeriesKey, int] = {}

    def observe(self, metric: str, scenario: str, value: float) -> None:
        """Record one trend value (display units) for ``scenario``."""
        key = (metric, scenario, "")
        for table in (self._trends, self._window):
            trend = table.get(key)
            if trend is None:
                trend = table[key] = Trend(METRICS[metric])
            trend.record(value)

    def add(self, metric: str, scenario: str, n: int = 1, *, code: str = "") -> None:
        """Add to a counter."""
        key = (metric, scenario, code)
        self._counters[key] = self._counters.get(key, 0) + n
        self._window_counters[key] = self._window_counters.get(key, 0) + n

    def count(self, metric: str, scenario: str | None = None) -> int:
        """A counter's total so far (every scenario when ``scenario`` is None)."""
        return sum(
            v for (m, s, _), v in self._counters.items() if m == metric and scenario in (None, s)
        )

    def trend(self, metric: str, scenario: str) -> Trend | None:
        return self._trends.get((metric, scenario, ""))

    def states(self) -> list[SeriesState]:
        """The cumulative series, serialized (per scenario; see :func:`roll_up`)."""
        return _states(self._trends, self._counters)

    def cut(self) -> list[SeriesState]:
        """The current interval's series, serialized; the interval starts afresh."""
        out = _states(self._window, self._window_counters)
        self._window, self._window_counters = {}, {}
        return out


def _states(
    trends: Mapping[SeriesKey, Trend], counters: Mapping[SeriesKey, int]
) -> list[SeriesState]:
    out = [t.state(*k) for k, t in trends.items()]
    out += [
        SeriesState(metric=k[0], scenario=k[1], code=k[2], count=v, sum=v)
        for k, v in counters.items()
    ]
    return sorted(out, key=lambda s: (s.metric, s.scenario, s.code))
