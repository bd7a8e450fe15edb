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
    assert record["gc_tracked_per_stream"] > 0  # a stream's tasks and channels are tracked
    assert record["buffered_frames_mean"] > 0
    assert 0 < len(record["top"]) <= 30
    assert record["traced_kb_per_stream"] > 0
    assert any("engine/" in row["where"] for row in record["top"])
    assert "KiB RSS per stream" in proc.stderr


def _paced(*extra: str) -> tuple[dict[str, object], str]:
    """Run the paced mode with 2 streams (one is the baseline) for 1 s; its record and stderr."""
    args = ["--streams", "2", "--paced", "1", "--settle", "0.5", *extra]
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "tools.bench.memory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_memory_benchmark_paced_reports_peaks_replay_audio_and_types() -> None:
    """Paced streams: steady and peak RSS, the replay audio held, live objects by type."""
    record, stderr = _paced("--census")
    assert record["streams"] == 2
    assert record["opened"] >= 2  # both streams had their task before the window
    peaks = record["rss_kb"]
    assert isinstance(peaks, dict)
    assert peaks["peak_connect"] <= peaks["peak_window"] <= peaks["peak_end"]
    replay = record["replay_s"]
    assert isinstance(replay, dict) and replay["max"] >= replay["mean"] >= 0
    besides = record["rss_kb_per_stream_besides_replay_audio"]
    assert isinstance(besides, float) and besides <= float(str(record["rss_kb_per_stream"]))
    types = record["types"]
    assert isinstance(types, list)
    assert any(row["type"] == "bytes" for row in types)  # the replay audio
    assert record["gc_tracked_per_stream"] > 0
    assert "after connecting" in stderr
    assert "GC-tracked objects per stream" in stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_memory_benchmark_paced_charges_allocations_to_our_lines() -> None:
    """With a deep trace, trio's objects are charged to the engine line that made them."""
    record, _ = _paced("--trace", "--depth", "6")
    owners = record["owners"]
    assert isinstance(owners, list) and owners
    assert any("engine/" in row["where"] for row in owners)
