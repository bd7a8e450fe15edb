"""A real run: ``steno scenario run`` in a process of its own, against the simulator in
another, with a fault plan; then its HTML report in a real headless Chromium."""

from __future__ import annotations

import csv
import os
import pathlib
import re
import select
import shutil
import subprocess
import sys

import msgspec
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
AUDIO = ROOT / "scenarios" / "audio"

SMALL = f"""
[run]
seed = 3
history-interval = "2s"

[[scenario]]
name = "rooms"
executor = "per-session-iterations"
sessions = 3
iterations = 1
audio = {{ file = "{AUDIO / "numbers.wav"}", reference = "{AUDIO / "numbers.txt"}", speed = 4.0 }}

[[scenario]]
name = "callers"
executor = "session-arrival-rate"
rate = 2
duration = "3s"
max-sessions = 4
audio = {{ file = "{AUDIO / "weather.wav"}", reference = "{AUDIO / "weather.txt"}", speed = 4.0 }}
faults = "drop:at=1;first=1"

[thresholds]
first_package_delay = ["p(95)<5000"]
audio_lost_ms = ["sum==0"]
wer = ["max<0.35"]
"errors{{code:network}}" = ["count>=1"]
"""

STENO = [sys.executable, "-c", "from engine.cli import main; raise SystemExit(main())"]


def steno(*args: str | pathlib.Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STENO, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "DASHSCOPE_API_KEY": ""},
        check=False,
    )


@pytest.fixture(name="run", scope="module")
def _run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], pathlib.Path]:
    d = tmp_path_factory.mktemp("scenario")
    (d / "small.toml").write_text(SMALL)
    return steno("scenario", "run", d / "small.toml", "--out", d / "out"), d / "out"


@pytest.mark.slow
class TestRealRun:
    def test_exit_code_and_end_table(
        self, run: tuple[subprocess.CompletedProcess[str], pathlib.Path]
    ) -> None:
        """Every threshold held: exit 0; the end table has both scenarios and the verdicts."""
        result, _ = run
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "embedded simulator (pid" in out
        assert "scenario rooms" in out and "scenario callers" in out
        assert re.search(r"ok +first_package_delay: p\(95\)<5000", out)
        assert "Traceback" not in result.stderr

    def test_report_json(self, run: tuple[subprocess.CompletedProcess[str], pathlib.Path]) -> None:
        """Streams ran, the scripted recognizer answered the references, the faults reconnected."""
        _, out = run
        report = msgspec.json.decode((out / "report.json").read_bytes())
        m = report["metrics"]
        assert m["sessions_started{scenario:rooms}"]["count"] == 3
        assert m["sessions_completed"]["count"] == m["sessions_started"]["count"]
        assert m["sessions_dropped{scenario:callers}"]["count"] >= 1  # 4 sessions, 6 starts
        assert m["wer"]["max"] == 0.0  # every final word for word, across reconnects
        assert m["audio_lost_ms"]["sum"] == 0.0
        assert m["reconnects{scenario:callers}"]["count"] >= 1
        assert m["finals{scenario:rooms}"]["count"] == 6  # 2 sentences × 3
        for name in (
            "connect_time",
            "task_start_time",
            "first_package_delay",
            "last_package_delay",
            "final_lag",
            "send_lateness",
        ):
            values = m[name]
            assert values["count"] > 0 and values["p(50)"] is not None and m[name]["hdr"], name
        assert all(v["ok"] for vs in report["thresholds"].values() for v in vs)
        assert report["segments"] == ["0/1"]

    def test_history_csv(self, run: tuple[subprocess.CompletedProcess[str], pathlib.Path]) -> None:
        """A header, then a row per metric per interval."""
        _, out = run
        with (out / "history.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert rows and {"t_s", "scenario", "metric", "p(95)"} <= set(rows[0])
        assert {r["t_s"] for r in rows} >= {"2", "4"}
        assert any(r["metric"] == "first_package_delay" and r["scenario"] == "*" for r in rows)

    def test_check_prints_the_plan(self) -> None:
        """check validates and prints sessions over time; a bad file is one line, exit 2."""
        result = steno("scenario", "check", ROOT / "scenarios" / "example.toml")
        assert result.returncode == 0, result.stderr
        assert "rooms: per-session-iterations" in result.stdout
        assert "starts/s per" in result.stdout
        bad = steno("scenario", "check", ROOT / "pyproject.toml")
        assert bad.returncode == 2
        assert bad.stderr.count("\n") == 1 and "steno scenario: error:" in bad.stderr

    def test_remote_target_needs_yes(self, tmp_path: pathlib.Path) -> None:
        """A non-loopback target states the audio hours and refuses without --yes."""
        (tmp_path / "s.toml").write_text(SMALL)
        result = subprocess.run(
            [
                *STENO,
                "scenario",
                "run",
                str(tmp_path / "s.toml"),
                "--target",
                "wss://example.invalid/api-ws/v1/inference",
                "--out",
                str(tmp_path / "o"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "DASHSCOPE_API_KEY": "sk-test"},
            check=False,
        )
        assert result.returncode == 2
        assert "audio hours" in result.stderr and "--yes" in result.stderr


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.slow
class TestHtmlInChromium:
    def test_charts_render(
        self, run: tuple[subprocess.CompletedProcess[str], pathlib.Path], tmp_path: pathlib.Path
    ) -> None:
        """report.html, rendered by headless Chromium, holds its four charts with data, and
        loads nothing from the network."""
        browser = chromium()
        if browser is None:
            if os.environ.get("CI") == "true":
                pytest.fail("chromium is missing; tools/setup-system.sh installs it")
            pytest.skip("chromium is not installed (tools/setup-system.sh installs it)")
        _, out = run
        page = (out / "report.html").as_uri()
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
        ]
        dom = subprocess.run(
            [browser, *flags, "--dump-dom", page],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        charts = re.findall(r'<svg class="chart" data-chart="([\w-]+)"', dom)
        assert charts == ["percentiles", "percentiles-final-lag", "sessions-latency", "errors"]
        assert len(re.findall(r'<polyline class="series"[^>]* points="[\d., ]+"', dom)) >= 4
        assert re.search(r'<circle class="point"', dom)
        assert re.search(r'<rect class="bar" data-series="errors"', dom)
        assert not re.search(r'(src|href)="https?:', dom)
        shot = tmp_path / "report.png"
        subprocess.run(
            [browser, *flags, "--window-size=1300,900", f"--screenshot={shot}", page],
            capture_output=True,
            timeout=120,
            check=True,
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@pytest.mark.slow
class TestProcessesAgainstUrl:
    def test_two_processes_against_a_served_simulator(self, tmp_path: pathlib.Path) -> None:
        """``scenario simulate`` serves the scenario's simulator on a URL; ``run --processes 2``
        runs segments 0/2 and 1/2 against it and merges them into one report."""
        (tmp_path / "s.toml").write_text(SMALL)
        server = subprocess.Popen(
            [*STENO, "scenario", "simulate", str(tmp_path / "s.toml"), "--port", "0"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        try:
            assert server.stderr is not None
            ready, _, _ = select.select([server.stderr], [], [], 60.0)  # a deadline on the wait
            assert ready, "the scenario simulator did not start within 60 s"
            line = server.stderr.readline()
            m = re.search(r"(ws://127\.0\.0\.1:\d+/api-ws/v1/inference)", line)
            assert m, line
            result = steno(
                "scenario",
                "run",
                tmp_path / "s.toml",
                "--target",
                m.group(1),
                "--processes",
                "2",
                "--out",
                tmp_path / "out",
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
            server.stderr.close()  # type: ignore[union-attr]
        assert result.returncode == 0, result.stderr
        report = msgspec.json.decode((tmp_path / "out" / "report.json").read_bytes())
        assert report["segments"] == ["0/2", "1/2"]
        assert report["metrics"]["sessions_started{scenario:rooms}"]["count"] == 3
        assert report["metrics"]["wer"]["max"] == 0.0
        for i in range(2):
            seg = msgspec.json.decode(
                (tmp_path / "out" / f"segment-{i}" / "report.json").read_bytes()
            )
            assert seg["segments"] == [f"{i}/2"]
        assert (tmp_path / "out" / "report.html").is_file()
        assert "segments 0/2, 1/2" in result.stdout
