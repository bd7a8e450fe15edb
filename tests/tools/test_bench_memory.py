"""Smoke test of the memory benchmark (tools/bench/memory.py): it runs and reports every field.

No thresholds: memory per stream depends on the allocator and the run; people read it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--streams", "3", "--frames", "5", "--settle", "0.5", "--trace"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_memory_benchmark_traces_two_steps_of_streams() -> None:
    """3 then 3 more streams of tone-coded speech: RSS, tasks and a tracemalloc top per stream."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "tools.bench.memory", *ARGS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["streams"] == 3
    assert record["frames"] == 5
    assert record["rss_kb"]["2n"] > 0
    assert record["events"] > 0  # the six streams were served
    # the streams are open when measured: each has the session's tasks, and its replay audio
    assert record["tasks_per_stream"] >= 1
    assert record["buffered_frames_mean"] > 0
    assert 0 < len(record["top"]) <= 30
    assert record["traced_kb_per_stream"] > 0
    assert any("engine/" in row["where"] for row in record["top"])
    assert "KiB RSS per stream" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_memory_benchmark_paced_reports_peaks_owners_and_types() -> None:
    """2 paced streams (one is the baseline): steady and peak RSS, replay seconds, owners, types."""
    args = ["--streams", "2", "--paced", "1", "--settle", "0.5", "--trace", "--depth", "8"]
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "tools.bench.memory", *args, "--census"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["streams"] == 2
    assert record["opened"] >= 2  # both streams had their task before the window
    peaks = record["rss_kb"]
    assert peaks["peak_connect"] <= peaks["peak_window"] <= peaks["peak_end"]
    assert record["replay_s"]["max"] >= record["replay_s"]["mean"] >= 0
    # the owners are our lines (a depth of 8 reaches past trio's frames)
    assert any(row["where"].split(":")[0].endswith(".py") for row in record["owners"])
    assert any("engine/" in row["where"] for row in record["owners"])
    assert any(row["type"] == "bytes" for row in record["types"])  # the replay audio
    assert "after connecting" in proc.stderr
