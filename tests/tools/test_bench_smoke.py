"""Smoke test of the capacity benchmark: it runs end to end and writes every field.

No performance thresholds: the numbers depend on the machine and its load; they are
read by people (tools/bench/README.md), not asserted."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from engine.runtime import FOR_STREAMS
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
    "stalls",
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
    assert result["settings"]["feeding"].startswith("pacer.drive + Stream.try_push")
    [step] = result["steps"]
    assert step.keys() >= STEP_FIELDS
    assert step["streams"] == 2
    assert step["completed"]
    assert step["streams_opened"] == 2
    assert step["frames_sent"] == step["frames_expected"] == 40
    assert {"p50", "p99", "max"} <= step["lateness_ms"].keys()
    assert step["finals"] > 0
    assert step["events"]["StreamEnded"] == 2
    stalls = step["stalls"]  # why the tail is what it is (tools/bench/_stalls.py)
    assert len(stalls["gc"]["count"]) == 3 and len(stalls["gc"]["max_ms"]) == 3
    assert stalls["gc"]["thresholds"] == list(FOR_STREAMS.thresholds)
    assert stalls["gc"]["frozen"] > 0
    assert stalls["pacer"]["ticks"] > 0 and stalls["pacer"]["tick_late_max_ms"] >= 0
    assert stalls["hub"]["rounds"] > 0
    assert "GC n0/n1/n2" in proc.stdout


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


RAMP_STEP_FIELDS = {
    "design",
    "streams",
    "status",
    "audio_s",
    "wall_s",
    "wall_per_audio",
    "streaming_wall_per_audio",
    "stream_wall_per_audio",
    "start_spread_s",
    "client_cpu_s",
    "client_maxrss_kb",
    "cpu_ms_per_stream_s",
    "cpu_ms_per_stream_s_all_in",
    "mem_kb_per_stream",
    "sim_cpu_s",
    "wire",
    "script",
    "errors",
    "engine",
    "client_lateness_ms",
    "fell_behind",
}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ramp_quick_runs_all_three_designs(tmp_path: pathlib.Path) -> None:
    """--quick: every design at N=2, a JSON with every field, a table and a PNG."""
    # real-time: a benchmark measures the real clock
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "tools.bench.ramp",
            "--quick",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "ramp.json").read_text())
    assert {"nproc", "python", "trio", "versions"} <= result["machine"].keys()
    assert result["settings"]["designs"] == ["cli", "embedded", "sdk"]
    steps = result["steps"]
    assert sorted(s["design"] for s in steps) == ["cli", "embedded", "sdk"]
    for step in steps:
        assert step.keys() >= RAMP_STEP_FIELDS, step["design"]
        assert step["status"] == "ok", step.get("stderr_tail")
        assert step["streams"] == 2
        assert step["wire"]["peak_connections"] == 2
        assert step["script"]["finals_expected"] == 4
        assert step["script"]["streams_reported"] == 2
    (cli,) = (s for s in steps if s["design"] == "cli")
    assert cli["engine"]["start_budget"] == {"source": "simulator", "limits": {}}
    assert cli["client_lateness_ms"].keys() == {"p50", "p99", "max"}
    assert cli["cpu_vs_embedded"] > 0
    table = (tmp_path / "ramp.md").read_text()
    assert table.count("\n| 2 |") == 3
    png = (tmp_path / "ramp.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stages_quick_writes_every_stage(tmp_path: pathlib.Path) -> None:
    """--quick: every stage is measured, absent or broken, each with its reason."""
    from tools.bench._stage_results import RESULT_STAGES
    from tools.bench.stages import FRAME_STAGES

    out = tmp_path / "stages.json"
    # real-time: a benchmark measures the real clock
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "tools.bench.stages", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    names = {name for name, _, _ in FRAME_STAGES}
    assert names <= result["per_frame"].keys()
    assert {"send.trio_websocket", "send.default_dialer"} <= result["per_frame"].keys()
    assert {name for name, _, _ in RESULT_STAGES} == result["per_result"].keys()
    for stage in [*result["per_frame"].values(), *result["per_result"].values()]:
        assert stage["status"] in {"ok", "absent", "error"}
        if stage["status"] == "ok":
            assert stage["us_median"] >= 0
        else:
            assert stage["reason"]
    # the code every checkout has is measured, not reported absent
    assert result["per_frame"]["send.trio_websocket"]["status"] == "ok"
    assert result["per_result"]["decode.json_loads"]["status"] == "ok"


class TestRampHelpers:
    def test_script_score_counts_right_wrong_and_exact_streams(self) -> None:
        """Finals match the script by words, whatever the case and punctuation."""
        from tools.bench._speech import score

        got = [["Good morning.", "Thank you."], ["Good morning.", "thank you, please"], []]
        result = score(got, 3, "quick")
        assert result["finals_expected"] == 6
        assert result["finals_right"] == 3
        assert result["finals_wrong"] == 1
        assert result["streams_all_right"] == 1
        assert not result["every_final_right"]

    def test_wire_lag_is_zero_on_time_and_the_delay_when_behind(self) -> None:
        """An on-time stream has no lag; one that stalls 1 s lags about 1 s after it."""
        from tools.bench._wire import lags

        rate, frame_s = 32080.0, 0.1
        on_time = [(t / 4, int(500 + rate * (t / 4 // frame_s) * frame_s)) for t in range(40)]
        stalled = [(t, b if t < 5 else b - int(rate)) for t, b in on_time]
        assert max(lags({b"a": on_time}, rate, frame_s)) == 0.0
        assert max(lags({b"b": stalled}, rate, frame_s)) == pytest.approx(1.0, abs=0.11)

    def test_first_audio_skips_the_connecting_phase(self) -> None:
        """Streaming starts when a connection has sent two frames past its first sample."""
        from tools.bench._wire import WireSampler

        sampler = WireSampler(1)
        sampler.samples = {
            b"a": [(0.0, 400), (1.0, 600), (2.0, 600), (2.5, 10_000)],
            b"b": [(0.5, 400), (3.0, 20_000)],
        }
        assert sampler.first_audio(3208) == 2.5
        assert WireSampler(1).first_audio(3208) is None

    def test_stream_spans_run_from_each_streams_first_audio_to_its_last_byte(self) -> None:
        """Per connection: the first sample two frames past its first count, the first at
        its final count; a connection that never sent audio is left out."""
        from tools.bench.ramp import stream_spans

        samples = {
            b"a": [(0.0, 400), (1.0, 600), (2.0, 7_000), (9.0, 50_000), (9.5, 50_000)],
            b"b": [(5.0, 400), (6.0, 7_000), (12.0, 60_000)],
            b"c": [(1.0, 400), (2.0, 500)],
        }
        assert stream_spans(samples, 3208) == [(2.0, 9.0), (6.0, 12.0)]

    def test_a_staggered_start_is_judged_per_stream(self) -> None:
        """Streams started one after another (the CLI under the task-start limit): the
        worst stream's own wall/audio decides, not the whole run's."""
        from types import SimpleNamespace

        from tools.bench.ramp import fell_behind

        args = SimpleNamespace(max_wall_ratio=1.5, max_lag_ms=1000.0)
        record = {
            "status": "ok",
            "streaming_wall_per_audio": 1.8,
            "stream_wall_per_audio": 1.06,
            "wire": {"lag_ms": {"p99": 0.0}},
            "script": {"finals_right": 10, "finals_expected": 10},
        }
        assert fell_behind(record, args) is None  # type: ignore[arg-type]
        record["stream_wall_per_audio"] = 1.7
        assert fell_behind(record, args) == "a stream's wall/audio 1.7 > 1.5"  # type: ignore[arg-type]

    def test_table_has_the_sdk_ratio_and_skipped_steps(self) -> None:
        """× SDK divides by the SDK's CPU at the same N; a skipped step says why."""
        from tools.bench._rampout import table

        def step(design: str, cpu: float) -> dict[str, object]:
            return {
                "design": design,
                "streams": 10,
                "status": "ok",
                "wall_per_audio": 1.1,
                "streaming_wall_per_audio": 1.0,
                "cpu_ms_per_stream_s": cpu,
                "mem_kb_per_stream": 90.0,
                "wire": {"peak_connections": 10, "lag_ms": {"p99": 0.0}},
                "client_lateness_ms": None,
                "engine": None,
                "script": {"finals_right": 20, "finals_expected": 20},
                "errors": 0,
                "fell_behind": None,
            }

        skipped = {"design": "cli", "streams": 20, "status": "skipped", "reason": "fell behind"}
        text = table({"steps": [step("sdk", 4.0), step("embedded", 1.0), skipped]})
        [embedded] = [line for line in text.splitlines() if "embedding API" in line]
        assert "| 0.25 |" in embedded
        assert text.splitlines()[-1].endswith("fell behind |")


class TestRampDesigns:
    def test_cli_engine_stats_and_the_ratio_to_the_embedding(self, tmp_path: pathlib.Path) -> None:
        """The CLI's lateness and budget come from its log lines; its CPU is set against
        the embedding API's at the same N."""
        from tools.bench.ramp import compare_to_embedded, engine_stats

        (tmp_path / "stderr").write_text(
            "steno: a text line\n"
            '{"event":"ratelimit.budget","source":"simulator","limits":{}}\n'
            '{"event":"session.end","send_lag_p99_ms":0.5}\n'
            '{"event":"pacer.finished","count":9,"p50_ms":1.0,"p99_ms":7.5,"max_ms":9.0}\n'
        )
        stats = engine_stats(tmp_path / "stderr")
        assert stats["pacer_p99_ms"] == 7.5
        assert stats["pacer_lateness_ms"] == {"p50": 1.0, "p99": 7.5, "max": 9.0}
        assert stats["start_budget"] == {"source": "simulator", "limits": {}}
        result = {
            "steps": [
                {"design": "cli", "streams": 300, "cpu_ms_per_stream_s_all_in": 1.3},
                {"design": "embedded", "streams": 300, "cpu_ms_per_stream_s_all_in": 1.0},
                {"design": "cli", "streams": 1000, "cpu_ms_per_stream_s_all_in": 1.2},
            ]
        }
        compare_to_embedded(result)
        assert [s.get("cpu_vs_embedded") for s in result["steps"]] == [1.3, None, None]

    def test_cli_designs_differ_only_in_processes(self, tmp_path: pathlib.Path) -> None:
        """cli runs in one process, cli-p2 in two; everything else on the line is the same."""
        from types import SimpleNamespace

        from tools.bench.ramp import client_argv

        sim = SimpleNamespace(url="ws://127.0.0.1:1/api-ws/v1/inference", pid=1)
        one, two = (
            client_argv(d, 3, sim, tmp_path, tmp_path / "a.wav", "quick")  # type: ignore[arg-type]
            for d in ("cli", "cli-p2")
        )
        i = one.index("--processes")
        assert (one[i + 1], two[i + 1]) == ("1", "2")
        assert one[:i] + one[i + 2 :] == two[:i] + two[i + 2 :]
        assert one.count(str(tmp_path / "a.wav")) == 3

    def test_cli_p2_is_asked_for_not_default(self) -> None:
        """The default ramp is the three designs of the README; --designs adds cli-p2."""
        from tools.bench.ramp import parse_args

        assert parse_args([]).designs == ["cli", "embedded", "sdk"]
        assert parse_args(["--designs", "cli", "cli-p2"]).designs == ["cli", "cli-p2"]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", ["full", "none"])
def test_output_path_runs(path: str) -> None:
    """The output-path bench: one JSON line, every event of every stream counted."""
    # real-time: a benchmark measures the real clock
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "tools.bench.output_path", "--streams", "3",
         "--seconds", "2", "--path", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["path"] == path
    assert record["events"] > 3 * 4  # partials, finals and the lifecycle, per stream
    assert record["cpu_s"] > 0
