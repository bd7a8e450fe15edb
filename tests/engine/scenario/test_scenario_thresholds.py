"""Thresholds in k6 syntax: every operator and aggregation, refusals, and exit 99 on breach."""

from __future__ import annotations

import io
import pathlib

import msgspec
import pytest

from engine.scenario.merge import merge_dirs
from engine.scenario.metrics import Recorder
from engine.scenario.report import ThresholdDef, build_report, judge
from engine.scenario.runner import write_outputs
from engine.scenario.thresholds import ThresholdError, evaluate, parse_threshold

SUMMARY = {
    "count": 4.0,
    "sum": 10.0,
    "min": 1.0,
    "max": 4.0,
    "avg": 2.5,
    "med": 2.0,
    "p(95)": 4.0,
    "p(99.9)": 4.0,
    "rate": 0.5,
}


class TestOperators:
    @pytest.mark.parametrize(
        ("expr", "ok"),
        [
            ("p(95)<5", True),
            ("p(95)<4", False),
            ("max<=4", True),
            ("max<=3.99", False),
            ("min>0.5", True),
            ("min>1", False),
            ("avg>=2.5", True),
            ("avg>=2.51", False),
            ("sum==10", True),
            ("sum==0", False),
            ("count!=3", True),
            ("count!=4", False),
            ("med < 3", True),
            ("rate<0.1", False),
            ("p(99.9)<=4", True),
            ("avg<2.5e1", True),
        ],
    )
    def test_each_operator(self, expr: str, ok: bool) -> None:
        """<, <=, >, >=, ==, != on avg, min, max, med, sum, count, rate and p(N)."""
        t = parse_threshold("first_package_delay", expr)
        assert evaluate(t, SUMMARY).ok is ok

    def test_no_data_holds(self) -> None:
        """A trend with no values has no percentile; like k6, the threshold holds."""
        t = parse_threshold("wer", "p(95)<0.1")
        assert evaluate(t, {"count": 0.0, "p(95)": None}).ok

    @pytest.mark.parametrize(
        ("key", "expr", "words"),
        [
            ("wer", "p95<1", "AGGREGATION OPERATOR NUMBER"),
            ("wer", "max =< 1", "AGGREGATION OPERATOR NUMBER"),
            ("wer", "p(101)<1", "0–100"),
            ("latency", "max<1", "unknown metric"),
            ("finals", "avg<1", "counter"),
            ("wer{code:x}", "max<1", "code tag"),
            ("wer{scenario}", "max<1", "bad threshold metric"),
        ],
    )
    def test_refusals(self, key: str, expr: str, words: str) -> None:
        with pytest.raises(ThresholdError, match=words):
            parse_threshold(key, expr)

    def test_tagged_series(self) -> None:
        """wer{scenario:a} judges scenario a alone; errors{code:X} one service code."""
        rec = Recorder()
        rec.observe("wer", "a", 0.1)
        rec.observe("wer", "b", 0.9)
        rec.add("errors", "a", 3, code="Throttling.RateQuota")
        defs = [
            ThresholdDef("wer{scenario:a}", "max<0.35"),
            ThresholdDef("wer", "max<0.35"),
            ThresholdDef("errors{code:Throttling.RateQuota}", "count<=3"),
            ThresholdDef("errors{code:http-503}", "count==0"),
        ]
        verdicts = judge(defs, rec.states(), duration_s=1.0)
        assert [v.ok for vs in verdicts.values() for v in vs] == [True, False, True, True]


def report_dir(tmp_path: pathlib.Path, defs: list[ThresholdDef]) -> pathlib.Path:
    rec = Recorder()
    for v in (120.0, 450.0, 900.0):
        rec.observe("first_package_delay", "rooms", v)
    report = build_report(
        scenario_file="s.toml",
        scenario_sha256="0" * 64,
        target="t",
        segments=["0/1"],
        started_at="2026-12-07T00:00:00Z",
        duration_s=10.0,
        series=rec.states(),
        history=[],
        defs=defs,
        scenarios=["rooms"],
    )
    write_outputs(report, tmp_path)
    return tmp_path


class TestExitCode:
    def test_breach_exits_99(self, tmp_path: pathlib.Path) -> None:
        """A failed threshold makes the command exit 99 (k6's convention) and says FAIL."""
        out = io.StringIO()
        d = report_dir(tmp_path / "a", [ThresholdDef("first_package_delay", "p(95)<800")])
        assert merge_dirs([str(d)], str(tmp_path / "m"), stdout=out) == 99
        assert "FAIL first_package_delay: p(95)<800" in out.getvalue()
        saved = msgspec.json.decode((tmp_path / "m" / "report.json").read_bytes())
        assert saved["thresholds"]["first_package_delay"] == [
            {"threshold": "p(95)<800", "value": 900.0, "ok": False}
        ]

    def test_held_exits_0(self, tmp_path: pathlib.Path) -> None:
        out = io.StringIO()
        d = report_dir(tmp_path / "a", [ThresholdDef("first_package_delay", "max<=900")])
        assert merge_dirs([str(d)], str(tmp_path / "m"), stdout=out) == 0
        assert "ok   first_package_delay: max<=900" in out.getvalue()
