"""report.html: one self-contained page (no network, no script) with inline SVG charts.

Charts, each an ``<svg class="chart" data-chart="…">`` so tests and tools find them:

* ``percentiles``: p(50), p(90), p(95), p(99) of ``first_package_delay`` per history
  interval, and the same for ``final_lag`` (``data-chart="percentiles-final-lag"``);
* ``sessions-latency``: active sessions (interval average) against the interval's
  p(95) first-package delay, one point per interval;
* ``errors``: errors, failed sessions and dropped starts per interval (bars).

Then the end table's numbers and the thresholds.
"""

from __future__ import annotations

import html
import itertools
from typing import TYPE_CHECKING, Final

from engine.scenario.metrics import SeriesState, roll_up, summarize
from engine.scenario.report import Report, end_table

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["render_html"]

_W: Final = 600
_H: Final = 260
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 64, 16, 28, 40
_COLORS: Final = ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd")

Points = list[tuple[float, float]]


def _whole(series: Sequence[SeriesState], metric: str) -> SeriesState | None:
    for s in roll_up(series):
        if s.metric == metric and not s.scenario and not s.code:
            return s
    return None


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10.0 ** (len(str(int(v))) - 1)
    for step in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if step * mag >= v:
            return step * mag
    return v  # pragma: no cover


def _frame(
    chart: str, title: str, x_label: str, y_label: str, x_max: float, y_max: float
) -> list[str]:
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
    out = [
        f'<svg class="chart" data-chart="{chart}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{_W / 2}" y="18" text-anchor="middle" class="title">{html.escape(title)}</text>',
        f'<rect x="{_PAD_L}" y="{_PAD_T}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    for i in range(5):
        y = _PAD_T + plot_h - plot_h * i / 4
        out.append(
            f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        out.append(
            f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{y_max * i / 4:g}</text>'
        )
        x = _PAD_L + plot_w * i / 4
        out.append(
            f'<text x="{x:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle">{x_max * i / 4:g}</text>'
        )
    out.append(
        f'<text x="{_W / 2}" y="{_H - 6}" text-anchor="middle">{html.escape(x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{_PAD_T + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_PAD_T + plot_h / 2})">{html.escape(y_label)}</text>'
    )
    return out


def _xy(x: float, y: float, x_max: float, y_max: float) -> tuple[float, float]:
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
    return _PAD_L + plot_w * x / x_max, _PAD_T + plot_h - plot_h * min(y, y_max) / y_max


def _legend(labels: Sequence[str], offset: int = 0) -> list[str]:
    out = []
    for i, label in enumerate(labels):
        x = _PAD_L + 8 + i * 130
        color = _COLORS[(i + offset) % 5]
        out.append(f'<rect x="{x}" y="{_PAD_T + 6}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{_PAD_T + 15}">{html.escape(label)}</text>')
    return out


def line_chart(chart: str, title: str, y_label: str, lines: Sequence[tuple[str, Points]]) -> str:
    xs = [x for _, pts in lines for x, _ in pts]
    ys = [y for _, pts in lines for _, y in pts]
    x_max, y_max = _nice_max(max(xs, default=1.0)), _nice_max(max(ys, default=1.0))
    out = _frame(chart, title, "seconds", y_label, x_max, y_max)
    for i, (label, pts) in enumerate(lines):
        coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in (_xy(x, y, x_max, y_max) for x, y in pts))
        out.append(
            f'<polyline class="series" data-series="{html.escape(label)}" fill="none" '
            f'stroke="{_COLORS[i % 5]}" stroke-width="2" points="{coords}"/>'
        )
        for a, b in (_xy(x, y, x_max, y_max) for x, y in pts):
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{_COLORS[i % 5]}"/>')
    out += _legend([label for label, _ in lines])
    if not ys:
        out.append(f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle">no data</text>')
    out.append("</svg>")
    return "\n".join(out)


def scatter_chart(chart: str, title: str, x_label: str, y_label: str, pts: Points) -> str:
    x_max = _nice_max(max((x for x, _ in pts), default=1.0))
    y_max = _nice_max(max((y for _, y in pts), default=1.0))
    out = _frame(chart, title, x_label, y_label, x_max, y_max)
    for x, y in pts:
        a, b = _xy(x, y, x_max, y_max)
        out.append(f'<circle class="point" cx="{a:.1f}" cy="{b:.1f}" r="4" fill="{_COLORS[0]}"/>')
    if not pts:
        out.append(f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle">no data</text>')
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(chart: str, title: str, bars: Sequence[tuple[str, Points]], width_s: float) -> str:
    xs = [x for _, pts in bars for x, _ in pts]
    ys = [y for _, pts in bars for _, y in pts]
    x_max, y_max = _nice_max(max(xs, default=1.0)), _nice_max(max(ys, default=1.0))
    out = _frame(chart, title, "seconds", "per interval", x_max, y_max)
    plot_w = _W - _PAD_L - _PAD_R
    bar_w = max(plot_w * width_s / x_max / (len(bars) + 1), 1.0)
    for i, (label, pts) in enumerate(bars):
        for x, y in pts:
            a, b = _xy(x - width_s, y, x_max, y_max)
            base = _xy(0, 0, x_max, y_max)[1]
            out.append(
                f'<rect class="bar" data-series="{html.escape(label)}" x="{a + i * bar_w:.1f}" '
                f'y="{b:.1f}" width="{bar_w:.1f}" height="{max(base - b, 0):.1f}" fill="{_COLORS[(i + 3) % 5]}"/>'
            )
    out += _legend([label for label, _ in bars], offset=3)
    out.append("</svg>")
    return "\n".join(out)


def _window_value(
    series: Sequence[SeriesState], metric: str, stat: str, interval: float
) -> float | None:
    s = _whole(series, metric)
    if s is None:
        return None
    return summarize(s, duration_s=interval).get(stat)


def charts(report: Report) -> list[str]:
    windows = report.history
    out = []
    for metric, chart in (
        ("first_package_delay", "percentiles"),
        ("final_lag", "percentiles-final-lag"),
    ):
        lines = []
        for stat in ("p(50)", "p(90)", "p(95)", "p(99)"):
            pts = [
                (w.t, v)
                for w in windows
                if (v := _window_value(w.series, metric, stat, 0.0)) is not None
            ]
            lines.append((stat, pts))
        out.append(line_chart(chart, f"{metric} percentiles over time", "ms", lines))
    pts = []
    for w in windows:
        sessions = _window_value(w.series, "sessions_active", "avg", 0.0)
        latency = _window_value(w.series, "first_package_delay", "p(95)", 0.0)
        if sessions is not None and latency is not None:
            pts.append((sessions, latency))
    out.append(
        scatter_chart(
            "sessions-latency",
            "sessions vs latency (per interval)",
            "active sessions (average)",
            "first_package_delay p(95) ms",
            pts,
        )
    )
    width = min((b.t - a.t for a, b in itertools.pairwise(windows)), default=10.0) or 10.0
    bars = []
    for metric in ("errors", "sessions_failed", "sessions_dropped"):
        pts = [(w.t, _window_value(w.series, metric, "count", 0.0) or 0.0) for w in windows]
        bars.append((metric, pts))
    out.append(bar_chart("errors", "errors over time", bars, width))
    return out


_CSS: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1340px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
svg.chart { background: #fff; border: 1px solid #ddd; font-size: 11px; }
svg.chart .title { font-size: 13px; font-weight: 600; }
svg.chart .plot { fill: #fafafa; stroke: #bbb; } svg.chart .grid { stroke: #e5e5e5; }
pre { background: #f6f6f6; padding: 12px; overflow-x: auto; font-size: 12px; }
.ok { color: #2ca02c; } .fail { color: #d62728; font-weight: 600; }
"""


def render_html(report: Report) -> str:
    """The whole page as one string."""
    breached = report.breached
    verdict = (
        '<p class="fail">a threshold failed</p>'
        if breached
        else '<p class="ok">every threshold held</p>'
        if report.thresholds
        else "<p>no thresholds</p>"
    )
    rows = []
    for key, verdicts in report.thresholds.items():
        for v in verdicts:
            cls = "ok" if v.ok else "fail"
            value = "-" if v.value is None else f"{v.value:.4g}"
            rows.append(
                f"<tr><td>{html.escape(key)}</td><td>{html.escape(v.threshold)}</td>"
                f'<td>{value}</td><td class="{cls}">{"ok" if v.ok else "FAIL"}</td></tr>'
            )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>steno scenario report: {html.escape(report.scenario_file)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>steno scenario: {html.escape(report.scenario_file)}</h1>",
            f"<p>target {html.escape(report.target)} · segments {html.escape(', '.join(report.segments))}"
            f" · started {html.escape(report.started_at)} · {report.duration_s:.1f} s"
            + (
                f' · <span class="fail">aborted: {html.escape(report.aborted)}</span>'
                if report.aborted
                else ""
            )
            + "</p>",
            verdict,
            '<div class="charts">',
            *charts(report),
            "</div>",
            "<h2>Thresholds</h2>",
            "<table><tr><th>metric</th><th>threshold</th><th>value</th><th></th></tr>",
            *rows,
            "</table>",
            "<h2>Summary</h2>",
            f"<pre>{html.escape(end_table(report))}</pre>",
            "</body></html>",
        ]
    )
