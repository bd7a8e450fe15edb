"""Segments merged equal one run, exactly: histograms, totals, history and verdicts."""

from __future__ import annotations

import pathlib

import pytest
import trio
import trio.testing

from engine.errors import ConfigError
from engine.scenario.executor import Iteration, run_executor
from engine.scenario.merge import merge_reports
from engine.scenario.metrics import Recorder
from engine.scenario.report import Report, ThresholdDef, Window, build_report, decode_report
from engine.scenario.runner import write_outputs
from engine.scenario.schedule import Segment
from engine.scenario.spec import decode_scenario

FILE = """
[[scenario]]
name = "callers"
executor = "session-arrival-rate"
rate = 9
duration = "20s"
max-sessions = 100  # no drops: which start finds a busy pool depends on the split (as in k6)
audio = { file = "x.wav" }

[[scenario]]
name = "rooms"
executor = "constant-sessions"
sessions = 5
duration = "20s"
audio = { file = "x.wav" }
"""
DEFS = [
    ThresholdDef("first_package_delay", "p(95)<800"),
    ThresholdDef("wer{scenario:rooms}", "max<0.35"),
    ThresholdDef("finals", "count>1000"),
]


class Played:
    """A deterministic body: what it records depends only on the iteration's identity."""

    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder

    async def __call__(self, it: Iteration) -> None:
        k = it.session * 31 + it.iteration * 7
        await trio.sleep(1.0 + k % 5 * 0.3)
        self.rec.observe("first_package_delay", it.scenario, 80 + (k * 7919) % 900 + 0.125)
        self.rec.observe("send_lateness", it.scenario, (k % 13) * 0.37)
        self.rec.observe("wer", it.scenario, (k % 4) / 10)
        self.rec.add("finals", it.scenario, k % 3)
        if k % 11 == 0:
            self.rec.add("errors", it.scenario, code="Throttling.RateQuota")
        self.rec.add("sessions_completed", it.scenario)


async def run(segment: Segment) -> Report:
    file = decode_scenario(FILE)
    rec = Recorder()
    start = trio.current_time()
    windows: list[Window] = []

    async def history() -> None:
        for i in range(1, 100):
            await trio.sleep_until(start + 5 * i + 0.0137)  # off any stream end: no ties
            windows.append(Window(5.0 * i, rec.cut()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(history)
        async with trio.open_nursery() as runs:
            for spec in file.scenarios:
                runs.start_soon(
                    lambda s=spec: run_executor(
                        s, Played(rec), rec, segment=segment, run_start=start
                    )
                )
        nursery.cancel_scope.cancel()
    windows.append(Window(99.0, rec.cut()))
    return build_report(
        scenario_file="f.toml",
        scenario_sha256="ab" * 32,
        target="embedded",
        segments=[str(segment)],
        started_at="2026-12-07T12:00:00Z",
        duration_s=40.0,
        series=rec.states(),
        history=windows,
        defs=DEFS,
        scenarios=["callers", "rooms"],
    )


class TestMerge:
    async def test_two_segments_equal_one_run(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """merge(0/2, 1/2) == the whole run: every metric, histogram, window and verdict."""
        whole = await run(Segment())
        halves = [await run(Segment(i, 2)) for i in range(2)]
        merged = merge_reports(halves)
        assert merged.series == whole.series
        assert merged.metrics == whole.metrics
        assert merged.thresholds == whole.thresholds
        assert merged.history == whole.history
        assert merged.segments == ["0/2", "1/2"]
        # the files round-trip: what merge reads back is what a run wrote
        for i, r in enumerate(halves):
            write_outputs(r, tmp_path / str(i))
        again = merge_reports(
            [decode_report((tmp_path / str(i) / "report.json").read_bytes()) for i in range(2)]
        )
        assert again.metrics == whole.metrics
        assert whole.metrics["first_package_delay"].values["count"] > 100
        assert not all(v.ok for vs in whole.thresholds.values() for v in vs)  # a real verdict

    async def test_partial_merge_says_what_is_missing(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """Merging 1 of 3 segments works and names the missing ones on stderr."""
        import io

        from engine.scenario.merge import merge_dirs

        write_outputs(await run(Segment(1, 3)), tmp_path / "1")
        err = io.StringIO()
        code = merge_dirs(
            [str(tmp_path / "1")], str(tmp_path / "m"), stdout=io.StringIO(), stderr=err
        )
        assert code in (0, 99)
        assert "segments 0/3, 2/3 are missing" in err.getvalue()

    async def test_refuses_mixed_inputs(self, autojump_clock: trio.testing.MockClock) -> None:
        """Different files, repeated or mixed splits are refused."""
        a = await run(Segment(0, 2))
        with pytest.raises(ConfigError, match="twice"):
            merge_reports([a, a])
        b = await run(Segment(1, 3))
        with pytest.raises(ConfigError, match="different splits"):
            merge_reports([a, b])
        import msgspec

        c = msgspec.structs.replace(b, scenario_sha256="cd" * 32, segments=["1/2"])
        with pytest.raises(ConfigError, match="different scenario files"):
            merge_reports([a, c])
        with pytest.raises(ConfigError, match="nothing to merge"):
            merge_reports([])
