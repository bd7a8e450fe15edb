"""Smoke test of the transport benchmark: it runs end to end, for every transport, and
writes its fields. No performance thresholds (people read the numbers, see its docstring)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from tools.bench.transport import masking

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_masking_names_every_routine_it_timed() -> None:
    """The masking comparison times numpy and pure Python at least, in µs per frame."""
    timed = masking(n=50)
    assert {"numpy", "python"} <= set(timed)
    assert all(v > 0 for v in timed.values())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_runs_every_transport_and_writes_json(tmp_path: pathlib.Path) -> None:
    """Three streams for half a second per transport: one row each, every field there."""
    # real-time: a benchmark measures the real clock
    out = tmp_path / "transport.json"
    args = ["--streams", "3", "--duration", "0.5", "--warmup", "0.3", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.transport", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [row["transport"] for row in report["rows"]] == ["null", "trio-websocket", "fast"]
    for row in report["rows"]:
        assert row["frames"] > 0
        assert {"us_cpu_per_frame", "results", "kept_pace", "tick_lateness_ms"} <= set(row)
    assert [r["results"] > 0 for r in report["rows"]] == [False, True, True]
    assert "masking_us_per_frame" in report
