"""Thresholds in k6's expression syntax, parsed and evaluated (pure).

A threshold is keyed by a metric, optionally with one tag (``first_package_delay``,
``wer{scenario:rooms}``, ``errors{code:Throttling.RateQuota}``), and holds
expressions ``AGGREGATION OPERATOR NUMBER``:

* aggregations: ``avg``, ``min``, ``max``, ``med``, ``sum``, ``count``, ``rate``,
  ``p(N)`` for 0 ≤ N ≤ 100 (trends); ``count``, ``sum``, ``rate`` (counters). ``rate`` is
  the count per second of the run, like a k6 counter's.
* operators: ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``.

Numbers are in the metric's unit (ms for times, a fraction for ``wer``). An empty
trend has no percentiles: a threshold on it holds (k6 does the same), except
``count``/``sum`` which are 0.
"""

from __future__ import annotations

import operator
import re
from typing import TYPE_CHECKING, Final

import msgspec

from engine.scenario.catalog import METRICS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["Threshold", "ThresholdError", "Verdict", "evaluate", "parse_threshold"]

_KEY: Final = re.compile(r"^([a-z_]+)(?:\{(scenario|code):([^{}:]+)\})?$")
_EXPR: Final = re.compile(
    r"^\s*(avg|min|max|med|sum|count|rate|p\(\s*(\d+(?:\.\d+)?)\s*\))\s*(<=|>=|==|!=|<|>)\s*"
    r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$"
)
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_COUNTER_AGGS: Final = frozenset({"count", "sum", "rate"})


class ThresholdError(ValueError):
    """A threshold that does not parse, or names an unknown metric, tag or aggregation."""


class Threshold(msgspec.Struct, frozen=True):
    """One parsed expression on one metric series (``tag`` None: the whole run)."""

    key: str
    metric: str
    tag: tuple[str, str] | None
    source: str
    aggregation: str  # avg, min, max, med, sum, count, rate or p(N) as "p"
    percentile: float | None
    op: str
    bound: float

    def holds(self, value: float | None) -> bool:
        """Whether ``value`` (None: no data) satisfies the expression."""
        if value is None:
            return True
        return _OPS[self.op](value, self.bound)


class Verdict(msgspec.Struct, frozen=True):
    """One expression's outcome for report.json."""

    threshold: str
    value: float | None
    ok: bool


def parse_threshold(key: str, text: str, *, scenarios: frozenset[str] | None = None) -> Threshold:
    """Parse ``text`` on the metric series ``key``.

    Raises:
        ThresholdError: naming what is wrong and what would be right.
    """
    k = _KEY.match(key)
    if k is None:
        raise ThresholdError(
            f"bad threshold metric {key!r}; fix: a metric name, optionally with one tag "
            "like first_package_delay{scenario:rooms}"
        )
    metric, tag_name, tag_value = k.groups()
    info = METRICS.get(metric)
    if info is None:
        raise ThresholdError(f"unknown metric {metric!r}; fix: one of {', '.join(sorted(METRICS))}")
    if tag_name == "scenario" and scenarios is not None and tag_value not in scenarios:
        raise ThresholdError(f"no scenario is named {tag_value!r}")
    if tag_name == "code" and metric != "errors":
        raise ThresholdError("only errors{code:…} takes a code tag")
    m = _EXPR.match(text)
    if m is None:
        raise ThresholdError(
            f"bad threshold {text!r}; fix: AGGREGATION OPERATOR NUMBER, e.g. p(95)<800 or sum==0"
        )
    agg, pct, op, bound = m.groups()
    percentile = float(pct) if pct is not None else None
    if percentile is not None:
        if percentile > 100:
            raise ThresholdError(f"bad threshold {text!r}: a percentile is 0–100")
        agg = "p"
    if info.kind == "counter" and agg not in _COUNTER_AGGS:
        raise ThresholdError(
            f"{metric} is a counter: it has count, sum and rate, not {agg if agg != 'p' else 'p(N)'}"
        )
    tag = (tag_name, tag_value) if tag_name else None
    return Threshold(key, metric, tag, text.strip(), agg, percentile, op, float(bound))


def evaluate(threshold: Threshold, summary: Mapping[str, float | None]) -> Verdict:
    """Judge one expression against a series' summary (see ``metrics.Series.summary``)."""
    if threshold.aggregation == "p":
        value = summary.get(_pkey(threshold.percentile))
    else:
        value = summary.get(threshold.aggregation)
    return Verdict(threshold.source, value, threshold.holds(value))


def _pkey(percentile: float | None) -> str:
    assert percentile is not None
    return f"p({percentile:g})"
