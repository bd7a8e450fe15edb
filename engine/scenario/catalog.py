"""The metrics a scenario run records: their kind, unit and integer recording scale.

A *trend* records one value per observation into an HDR histogram (p(50/90/95/99),
min, max, avg, sum, count); a *counter* only adds up. Trend values are recorded as
integers of ``1 / scale`` of their unit (microseconds for times in ms, millionths
for WER), so sums are exact and histograms merge exactly.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = ["COUNTERS", "METRICS", "TRENDS", "MetricInfo"]


class MetricInfo(msgspec.Struct, frozen=True):
    """One metric: ``kind``, display ``unit``, integer units per display unit, highest value."""

    kind: Literal["trend", "counter"]
    unit: str
    scale: int = 1
    highest: int = 3_600_000_000  # an hour in µs; larger values are clamped (and counted)
    help: str = ""


_MS: Final = 1000  # times are recorded in µs and shown in ms

METRICS: Final[dict[str, MetricInfo]] = {
    "connect_time": MetricInfo("trend", "ms", _MS, help="TCP connect + WebSocket upgrade"),
    "task_start_time": MetricInfo("trend", "ms", _MS, help="run-task → task-started"),
    "first_package_delay": MetricInfo(
        "trend", "ms", _MS, help="first non-empty result − first audio sent (SDK)"
    ),
    "last_package_delay": MetricInfo(
        "trend", "ms", _MS, help="task-finished − finish-task sent (SDK)"
    ),
    "final_lag": MetricInfo(
        "trend", "ms", _MS, help="scheduled send of a sentence's last sample → its final"
    ),
    "send_lateness": MetricInfo(
        "trend", "ms", _MS, help="audio push against the absolute schedule"
    ),
    "audio_lost_ms": MetricInfo(
        "trend", "ms", 1, highest=86_400_000, help="audio lost per stream (AudioGap)"
    ),
    "wer": MetricInfo(
        "trend", "", 1_000_000, highest=100_000_000, help="word error rate per stream"
    ),
    "cpu_per_stream_s": MetricInfo(
        "trend", "ms", _MS, help="client CPU per stream-second, per interval"
    ),
    "rss_mb": MetricInfo("trend", "MB", 1000, highest=1_000_000_000, help="client RSS"),
    "sessions_active": MetricInfo(
        "trend", "", 1, highest=10_000_000, help="streams running, sampled per second"
    ),
    "sessions_started": MetricInfo("counter", "", help="streams opened"),
    "sessions_completed": MetricInfo("counter", "", help="streams that ended (ok or partial)"),
    "sessions_failed": MetricInfo("counter", "", help="streams that failed"),
    "sessions_interrupted": MetricInfo("counter", "", help="streams cancelled at graceful stop"),
    "sessions_dropped": MetricInfo("counter", "", help="starts that found no free session"),
    "finals": MetricInfo("counter", "", help="final sentences"),
    "reconnects": MetricInfo("counter", "", help="reconnects"),
    "errors": MetricInfo("counter", "", help="failures by service code ({code:…})"),
}

TRENDS: Final = frozenset(k for k, v in METRICS.items() if v.kind == "trend")
COUNTERS: Final = frozenset(k for k, v in METRICS.items() if v.kind == "counter")
