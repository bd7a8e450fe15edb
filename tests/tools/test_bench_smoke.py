"""Smoke test of the capacity benchmark: it runs end to end and writes every field.

No performance thresholds: the numbers depend on the machine and its load; they are
read by people (tools/bench/README.md), not asserted."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from tools.bench.capacity import audio_loop, percentiles_ms

ROOT = pathlib.Path(__file__).resolve().parents[2]

STEP_FIELDS = {
    "streams",
    "completed",
    "streams_opened",
    "window_s",
    "client_cpu_s",
    "client_cpu_pct",
    "client_ms_per_stream_s",
    "client_pct_core_per_stream",
    "client_us_per_frame",
    "sim_cpu_s",
    "sim_cpu_pct",
    "sim_ms_per_stream_s",
    "others_cpu_pct",
    "lateness_ms",
    "frames_expected",
    "frames_sent",
    "events",
    "partials",
    "finals",
    "final_lag_ms",
    "errors",
    "reconnects",
    "gaps",
    "wall_s",
    "loadavg_start",
    "loadavg_end",
    "start_limiter",
}


@pytest.mark.slow
def test_capacity_benchmark_runs_and_writes_json(tmp_path: pathlib.Path) -> None:
    """Two streams for two seconds: a table on stdout, a JSON record with finals."""
    out = tmp_path / "bench.json"
    # real-time: a benchmark measures the real clock
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "tools.bench.capacity",
            "--streams",
            "2",
            "--duration",
            "2",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| N |" in proc.stdout
    result = json.loads(out.read_text())
    assert {"nproc", "python", "trio"} <= result["machine"].keys()
    assert result["settings"]["start_limit"]["rate_per_s"] > 0
    [step] = result["steps"]
    assert step.keys() >= STEP_FIELDS
    assert step["streams"] == 2
    assert step["completed"]
    assert step["streams_opened"] == 2
    assert step["frames_sent"] == step["frames_expected"] == 40
    assert {"p50", "p99", "max"} <= step["lateness_ms"].keys()
    assert step["finals"] > 0
    assert step["events"]["StreamEnded"] == 2


class TestHelpers:
    def test_percentiles_of_nothing_are_none(self) -> None:
        """No samples (a step that never streamed) gives None, not an error."""
        assert percentiles_ms([]) == {"p50": None, "p99": None, "max": None}
        assert percentiles_ms([0.001, 0.002]) == {"p50": 1.5, "p99": 1.99, "max": 2.0}

    def test_audio_loop_is_whole_frames_of_speech(self) -> None:
        """The looped audio is cut into equal frames, and not all of it is silence."""
        frames = audio_loop(1600)
        assert {len(f) for f in frames} == {3200}
        assert any(any(f) for f in frames)
