"""report.json, history.csv and the end table: built from serialized series (pure).

A run and a merge produce the same :class:`Report` from the same inputs: the raw
per-scenario series (:class:`~engine.scenario.metrics.SeriesState`, exact integers
and HDR encodings), the history windows, and the threshold expressions. So
``steno scenario merge`` of a run's segments writes what one process would have.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Final

import msgspec

from engine.scenario.catalog import METRICS
from engine.scenario.metrics import (
    PERCENTILES,
    SeriesState,
    merge_states,
    roll_up,
    series_key,
    summarize,
)
from engine.scenario.spec import ThresholdSpec, seconds
from engine.scenario.thresholds import Verdict, evaluate, parse_threshold

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "HISTORY_COLUMNS",
    "MetricSummary",
    "Report",
    "ThresholdDef",
    "Window",
    "build_report",
    "decode_report",
    "end_table",
    "history_rows",
    "judge",
]

REPORT_VERSION: Final = 1
_STATS: Final = (
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "med",
    *(f"p({p:g})" for p in PERCENTILES),
    "rate",
)
HISTORY_COLUMNS: Final = (
    "t_s",
    "scenario",
    "metric",
    "count",
    "sum",
    "min",
    "max",
    "avg",
    *(f"p({p:g})" for p in PERCENTILES),
)


class ThresholdDef(msgspec.Struct, frozen=True):
    """One expression as the scenario file gave it."""

    key: str
    threshold: str
    abort_on_fail: bool = False
    delay_abort_eval_s: float = 0.0


class Window(msgspec.Struct, frozen=True):
    """One history interval: its end (seconds after the run's start) and its series."""

    t: float
    series: list[SeriesState]


class MetricSummary(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``metrics.<name>`` in report.json, in the metric's unit, flat like k6's summary
    export: ``count``, ``sum``, ``rate``, and for trends ``min``, ``max``, ``avg``,
    ``med``, ``p(50)`` … ``p(99)`` and ``hdr`` (the HdrHistogram V2 encoding, base64).
    Statistics with no value (an empty trend) are left out."""

    type: str
    unit: str
    count: float = 0.0
    sum: float | None = None
    rate: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    med: float | None = None
    p50: float | None = msgspec.field(default=None, name="p(50)")
    p90: float | None = msgspec.field(default=None, name="p(90)")
    p95: float | None = msgspec.field(default=None, name="p(95)")
    p99: float | None = msgspec.field(default=None, name="p(99)")
    hdr: str = ""

    @classmethod
    def of(cls, kind: str, unit: str, stats: Mapping[str, float | None], hdr: str) -> MetricSummary:
        return cls(
            type=kind,
            unit=unit,
            count=stats.get("count") or 0.0,
            sum=stats.get("sum"),
            rate=stats.get("rate"),
            min=stats.get("min"),
            max=stats.get("max"),
            avg=stats.get("avg"),
            med=stats.get("med"),
            p50=stats.get("p(50)"),
            p90=stats.get("p(90)"),
            p95=stats.get("p(95)"),
            p99=stats.get("p(99)"),
            hdr=hdr,
        )

    @property
    def values(self) -> dict[str, float | None]:
        """The statistics by their k6 names (``p(95)``, ``avg``, …)."""
        return {
            "count": self.count, "sum": self.sum, "rate": self.rate, "min": self.min,
            "max": self.max, "avg": self.avg, "med": self.med, "p(50)": self.p50,
            "p(90)": self.p90, "p(95)": self.p95, "p(99)": self.p99,
        }  # fmt: skip


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """report.json. ``series`` and ``history`` are what ``merge`` reads back."""

    version: int = REPORT_VERSION
    scenario_file: str
    scenario_sha256: str
    target: str
    segments: list[str]
    started_at: str
    duration_s: float
    aborted: str | None = None
    metrics: dict[str, MetricSummary]
    thresholds: dict[str, list[Verdict]]
    threshold_defs: list[ThresholdDef]
    series: list[SeriesState]
    history: list[Window]
    scenarios: list[str]

    @property
    def breached(self) -> bool:
        return any(not v.ok for verdicts in self.thresholds.values() for v in verdicts)


def decode_report(raw: bytes) -> Report:
    return msgspec.json.decode(raw, type=Report)


def judge(
    defs: Sequence[ThresholdDef], series: Iterable[SeriesState], *, duration_s: float
) -> dict[str, list[Verdict]]:
    """Evaluate every threshold on the rolled-up series."""
    rolled = {series_key(s.metric, s.scenario, s.code): s for s in roll_up(series)}
    out: dict[str, list[Verdict]] = {}
    for d in defs:
        t = parse_threshold(d.key, d.threshold)
        state = rolled.get(d.key)
        if state is None:
            state = SeriesState(metric=t.metric)
        out.setdefault(d.key, []).append(evaluate(t, summarize(state, duration_s=duration_s)))
    return out


def build_report(
    *,
    scenario_file: str,
    scenario_sha256: str,
    target: str,
    segments: list[str],
    started_at: str,
    duration_s: float,
    series: list[SeriesState],
    history: list[Window],
    defs: list[ThresholdDef],
    scenarios: list[str],
    aborted: str | None = None,
) -> Report:
    series = merge_states(series)
    metrics = {}
    for s in roll_up(series):
        info = METRICS[s.metric]
        metrics[series_key(s.metric, s.scenario, s.code)] = MetricSummary.of(
            info.kind, info.unit, summarize(s, duration_s=duration_s), s.hdr
        )
    return Report(
        scenario_file=scenario_file,
        scenario_sha256=scenario_sha256,
        target=target,
        segments=segments,
        started_at=started_at,
        duration_s=round(duration_s, 3),
        aborted=aborted,
        metrics=dict(sorted(metrics.items())),
        thresholds=judge(defs, series, duration_s=duration_s),
        threshold_defs=defs,
        series=series,
        history=history,
        scenarios=scenarios,
    )


def merge_windows(groups: Iterable[Sequence[Window]]) -> list[Window]:
    """History windows of several segments, merged per interval end time."""
    by_t: dict[float, list[SeriesState]] = {}
    for windows in groups:
        for w in windows:
            by_t.setdefault(round(w.t, 3), []).extend(w.series)
    return [Window(t, merge_states(states)) for t, states in sorted(by_t.items())]


# --------------------------------------------------------------------------- output


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.1f}ms" if value < 10_000 else f"{value / 1000:.2f}s"
    if value == int(value) and abs(value) < 1e12:
        return f"{int(value)}"
    return f"{value:.3f}"


def history_rows(window: Window) -> list[list[str]]:
    """history.csv rows of one window (every rolled-up series)."""
    rows = []
    for s in roll_up(window.series):
        info = METRICS[s.metric]
        v = summarize(s, duration_s=0.0)
        scenario = s.scenario or ("*" if not s.code else f"*code:{s.code}")
        row = [f"{window.t:g}", scenario, s.metric, _csv(v.get("count")), _csv(v.get("sum"))]
        if info.kind == "trend":
            row += [
                _csv(v.get(k)) for k in ("min", "max", "avg", *(f"p({p:g})" for p in PERCENTILES))
            ]
        else:
            row += [""] * (3 + len(PERCENTILES))
        rows.append(row)
    return rows


def _csv(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def history_csv(windows: Iterable[Window], *, header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(HISTORY_COLUMNS)
    for window in windows:
        w.writerows(history_rows(window))
    return buf.getvalue()


_TABLE_TRENDS: Final = ("avg", "min", "p(50)", "p(90)", "p(95)", "p(99)", "max")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  "
        + "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
        for r in [header, *rows]
    ]


def _section(report: Report, scenario: str) -> list[str]:
    """One scenario's trends and counters (``""``: the whole run, with errors by code)."""
    trends: list[list[str]] = []
    counters: list[list[str]] = []
    for name, m in report.metrics.items():
        metric, _, tag = name.partition("{")
        mine = tag == f"scenario:{scenario}}}" if scenario else not tag or tag.startswith("code:")
        if not mine:
            continue
        label = metric if scenario else name
        v = m.values
        if m.type == "counter":
            rate = v.get("rate")
            counters.append([label, _fmt(v["count"]), "-" if rate is None else f"{rate:.2f}/s"])
        elif v.get("count"):
            trends.append(
                [label, _fmt(v["count"]), *(_fmt(v.get(k), m.unit) for k in _TABLE_TRENDS)]
            )
    lines: list[str] = []
    if trends:
        lines += _table(["trend", "count", *_TABLE_TRENDS], trends)
    if counters:
        lines += ([""] if trends else []) + _table(["counter", "count", "rate"], counters)
    return lines


def end_table(report: Report) -> str:
    """The end-of-test summary: per scenario and for the run, trends, counters, thresholds."""
    aborted = f", ABORTED: {report.aborted}" if report.aborted else ""
    lines = [
        f"steno scenario: {report.scenario_file} -> {report.target} "
        f"(segments {', '.join(report.segments)}, {report.duration_s:.1f} s{aborted})"
    ]
    for scenario in [*report.scenarios, ""]:
        section = _section(report, scenario)
        if section:
            lines += ["", f"scenario {scenario}" if scenario else "all scenarios", *section]
    if report.thresholds:
        lines += ["", "thresholds"]
        for key, verdicts in report.thresholds.items():
            unit = METRICS[key.partition("{")[0]].unit
            for verdict in verdicts:
                mark = "ok  " if verdict.ok else "FAIL"
                lines.append(
                    f"  {mark} {key}: {verdict.threshold} (value {_fmt(verdict.value, unit)})"
                )
    return "\n".join(lines)


def threshold_defs(items: Iterable[tuple[str, ThresholdSpec]]) -> list[ThresholdDef]:
    """The file's ``[thresholds]`` (``ScenarioFile.threshold_items()``) as flat definitions."""
    return [
        ThresholdDef(key, t.threshold, t.abort_on_fail, seconds(t.delay_abort_eval))
        for key, t in items
    ]
