"""HDR trends: exact totals, percentiles within the histogram's precision, exact merges."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from engine.scenario.catalog import METRICS
from engine.scenario.metrics import Recorder, SeriesState, Trend, merge_states, roll_up, summarize


def values(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.lognormvariate(5, 1), 3) for _ in range(n)]  # ms, a long tail


class TestTrend:
    def test_summary_matches_numpy(self) -> None:
        """count/sum/min/max/avg exact; percentiles within 0.1 % (3 significant figures)."""
        data = values(1, 5000)
        trend = Trend(METRICS["first_package_delay"])
        for v in data:
            trend.record(v)
        s = summarize(trend.state("first_package_delay"), duration_s=10.0)
        assert s["count"] == 5000
        assert s["sum"] == pytest.approx(sum(data), abs=1e-6)
        assert s["min"] == min(data) and s["max"] == max(data)
        assert s["avg"] == pytest.approx(np.mean(data), rel=1e-9)
        ranked = sorted(data)
        for p in (50, 90, 95, 99):  # nearest rank, as HdrHistogram defines it
            exact = ranked[math.ceil(p / 100 * len(data)) - 1]
            assert s[f"p({p})"] == pytest.approx(exact, rel=2e-3)
        assert s["med"] == s["p(50)"]
        assert s["rate"] == 500.0

    def test_out_of_range_is_clamped_and_counted(self) -> None:
        """Values beyond the histogram's range are kept at its bound and counted."""
        trend = Trend(METRICS["wer"])
        trend.record(-0.5)
        trend.record(1e9)
        trend.record(float("nan"))
        assert (trend.count, trend.clamped) == (2, 3)
        assert trend.min == 0 and trend.max == METRICS["wer"].highest

    def test_memory_is_constant(self) -> None:
        """Twenty thousand values take the same histogram as ten (counts per bucket)."""
        small, big = Trend(METRICS["send_lateness"]), Trend(METRICS["send_lateness"])
        for v in values(2, 10):
            small.record(v)
        rng = np.random.default_rng(3)
        for v in rng.integers(0, 60_000_000, 20_000):
            big.record_int(int(v))
        assert len(small.state("send_lateness").hdr) > 0
        assert big._hist is not None and small._hist is not None
        assert big._hist.counts_len == small._hist.counts_len

    def test_merge_is_exact(self) -> None:
        """Two halves merged equal one trend of everything, to the histogram's encoding."""
        data = values(4, 3000)
        whole, a, b = (Trend(METRICS["final_lag"]) for _ in range(3))
        for i, v in enumerate(data):
            whole.record(v)
            (a if i % 2 else b).record(v)
        (merged,) = merge_states([a.state("final_lag", "x"), b.state("final_lag", "x")])
        assert merged == whole.state("final_lag", "x")


class TestRecorder:
    def test_windows_and_totals(self) -> None:
        """cut() hands over the interval and starts afresh; states() keep everything."""
        rec = Recorder()
        rec.observe("wer", "a", 0.25)
        rec.add("errors", "a", code="Throttling.RateQuota")
        first = rec.cut()
        rec.observe("wer", "a", 0.5)
        rec.add("errors", "b", 2, code="http-503")
        second = rec.cut()
        assert [s.count for s in first] == [1, 1] and {s.metric for s in second} == {
            "wer",
            "errors",
        }
        totals = {(s.metric, s.scenario, s.code): s for s in rec.states()}
        assert totals["wer", "a", ""].sum == 750_000
        assert rec.count("errors") == 3 and rec.count("errors", "b") == 2

    def test_roll_up(self) -> None:
        """Per scenario, the whole run, and errors by code."""
        rec = Recorder()
        rec.observe("wer", "a", 0.1)
        rec.observe("wer", "b", 0.3)
        rec.add("errors", "a", code="x")
        rec.add("errors", "b", 2, code="x")
        rec.add("errors", "b", code="y")
        rec.observe("rss_mb", "", 80.0)
        rolled = {(s.metric, s.scenario, s.code): s for s in roll_up(rec.states())}
        assert rolled["wer", "", ""].count == 2 and rolled["wer", "a", ""].count == 1
        assert rolled["errors", "", ""].sum == 4
        assert rolled["errors", "", "x"].sum == 3 and rolled["errors", "b", ""].sum == 3
        assert rolled["rss_mb", "", ""].count == 1

    def test_counter_summary(self) -> None:
        """Counters have count, sum and a rate per second."""
        state = SeriesState(metric="finals", count=30, sum=30)
        assert summarize(state, duration_s=15.0) == {"count": 30.0, "sum": 30.0, "rate": 2.0}
