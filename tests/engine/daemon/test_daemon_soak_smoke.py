"""tools/soak.py runs: a daemon process, the simulator, samples, a slope and a JSON report.

# real-time: the soak tool measures a real process on the wall clock (about 10 s here).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.mark.slow  # a real daemon process sampled once a second for ~9 s of real time
@pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_short_soak_reports_a_slope(tmp_path: pathlib.Path) -> None:
    """Two streams for ~9 s: exit 0, samples of RSS and fds, a slope, finals and no loss."""
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [
            *(sys.executable, "tools/soak.py", "--streams", "2", "--minutes", "0.15"),
            *("--sample-s", "1", "--silence-s", "3", "--out", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MB/min" in done.stdout
    result = json.loads(out.read_text())
    assert result["exit_code"] == 0  # the daemon drained cleanly on SIGTERM
    assert len(result["samples"]) >= 8
    assert all(s["rss_kb"] > 0 and s["fds"] > 0 for s in result["samples"])
    assert isinstance(result["rss_slope_mb_per_min"], float)
    assert result["finals"] >= 2 and result["audio_lost_s"] == 0.0
