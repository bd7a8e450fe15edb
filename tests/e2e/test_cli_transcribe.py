"""``steno transcribe`` end to end: the real console script in a subprocess.

The main run transcribes all three demo files at once, ``--fast``, on the embedded
simulator (pocketsphinx, no ``DASHSCOPE_API_KEY``); the tests below check what it
printed and wrote. One more run goes at real-time speed to prove pacing; another
sets a recognizable API key against a simulator this module hosts and looks for
the key in everything the process produced.
"""

from __future__ import annotations

import pathlib
import re

import pytest
from e2e_helpers import (
    DEMO_NAMES,
    FORMATS,
    SIM_NOTICE,
    CliRun,
    SimulatorThread,
    cli_env,
    demo_duration_s,
    demo_sentences,
    demo_text,
    demo_wav,
    parse_jsonl,
    parse_srt,
    parse_vtt,
    run_steno,
    scripted_lines,
)
from skip_policy import real_time_trusted

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.wer import word_error_rate
from adapters.sim.config import SimConfig
from engine.events import Final, SessionOpened, StreamEnded, StreamStarted, TaskMetrics

pytestmark = pytest.mark.cpu_heavy  # pocketsphinx decodes the three demo files --fast

MAX_WER = 0.35
"""pocketsphinx on the flite demo speech measures about 0-0.15 per file."""

METRICS = re.compile(
    r"^request_id=[0-9a-f]{32} first_package_delay=\d+ ms last_package_delay=\d+ ms"
    r" finals=\d+ audio=\d+\.\d s$"
)


def _finals_printed(run: CliRun, stream: str) -> list[str]:
    """The transcript lines a stream printed (not its metrics, status or errors)."""
    return [
        line
        for line in run.stream_lines(stream)
        if not line.startswith(("request_id=", "done: ", "error: ", "reconnecting ", "lost audio "))
    ]


# ------------------------------------------------------- the demo, --fast


class DemoRun:
    def __init__(self, run: CliRun, out: pathlib.Path) -> None:
        self.run = run
        self.out = out

    def output(self, name: str, fmt: str) -> str:
        return (self.out / f"{name}.{fmt}").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """All three demo files in one run on the embedded simulator (about 10 s)."""
    out = tmp_path_factory.mktemp("demo-out")
    run = run_steno(
        "-v",  # info logs, as JSON lines off a terminal (capture.finished)
        "transcribe",
        *(demo_wav(name) for name in DEMO_NAMES),
        "--fast",
        "--out",
        out,
        env=cli_env(api_key=None),
        timeout=90,
    )
    if run.returncode != 0 or "reconnecting" in run.stdout:
        real_time_trusted("pocketsphinx answering within the finish deadline (10 s)")
    assert run.returncode == 0, run.describe()
    # The recognizer's --fast backlog must not trip the finish deadline (it measures
    # the server's silence, not the time since finish-task): no replays needed.
    assert "reconnecting" not in run.stdout, run.describe()
    return DemoRun(run, out)


def test_embedded_simulator_notice_is_one_line_on_stderr(demo: DemoRun) -> None:
    notices = [line for line in demo.run.stderr_lines if "embedded simulator" in line]
    assert len(notices) == 1, demo.run.describe()
    assert notices[0].startswith(SIM_NOTICE)
    assert "pocketsphinx" in notices[0]
    assert "embedded simulator" not in demo.run.stdout


def test_stdout_holds_only_the_transcript(demo: DemoRun) -> None:
    """stdout is the transcript, ``[stream] text``, in plain text; metrics, ``done:``
    lines and logs go to stderr."""
    streams = tuple(f"[{name}.wav] " for name in DEMO_NAMES)
    assert demo.run.stdout_lines
    for line in demo.run.stdout_lines:
        assert line.startswith(streams), line
        assert "\x1b" not in line and "\r" not in line, repr(line)
        assert not line.split("] ", 1)[1].startswith(("request_id=", "done: ")), line
    for name in DEMO_NAMES:
        status = demo.run.status_lines(f"{name}.wav")
        assert status[-1].startswith("done: ok, "), demo.run.describe()
        assert any(line.startswith("request_id=") for line in status), status


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_prints_the_spoken_text(demo: DemoRun, name: str) -> None:
    printed = _finals_printed(demo.run, f"{name}.wav")
    assert printed, demo.run.describe()
    wer = word_error_rate(demo_text(name), printed)
    assert wer <= MAX_WER, f"{name}: WER {wer:.2f} of printed {printed!r}"
    assert f"done: ok, {len(printed)} finals, " in "\n".join(demo.run.stream_lines(f"{name}.wav"))


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_word_error_rate_of_the_txt_output(demo: DemoRun, name: str) -> None:
    txt = demo.output(name, "txt")
    wer = word_error_rate(demo_text(name), txt)
    print(f"{name}: WER {wer:.3f}")  # shown with -s; the report quotes these
    assert wer <= MAX_WER, f"{name}: WER {wer:.2f}\nheard: {txt!r}\nsaid: {demo_text(name)!r}"
    # What was printed is what was written.
    assert txt.splitlines() == _finals_printed(demo.run, f"{name}.wav")


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_metrics_line_per_file(demo: DemoRun, name: str) -> None:
    lines = demo.run.stream_lines(f"{name}.wav")
    metrics = [line for line in lines if line.startswith("request_id=")]
    assert metrics, demo.run.describe()
    for line in metrics:
        assert METRICS.match(line), line
    # The request ids match the tasks recorded in the JSONL.
    events = parse_jsonl(demo.output(name, "jsonl"))
    ids = {e.request_id for e in events if isinstance(e, TaskMetrics)}
    assert {line.split()[0].removeprefix("request_id=") for line in metrics} == ids


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_output_files_are_well_formed(demo: DemoRun, name: str) -> None:
    assert sorted(p.name for p in demo.out.glob(f"{name}.*")) == sorted(
        f"{name}.{fmt}" for fmt in FORMATS
    )
    sentences = demo.output(name, "txt").splitlines()
    srt = parse_srt(demo.output(name, "srt"))
    vtt = parse_vtt(demo.output(name, "vtt"))
    events = parse_jsonl(demo.output(name, "jsonl"))

    # A cue wraps at 42 characters (2 lines): its lines joined are the sentence.
    assert [" ".join(c.text.splitlines()) for c in srt] == sentences
    assert [(c.start_ms, c.end_ms, c.text) for c in vtt] == [
        (c.start_ms, c.end_ms, c.text) for c in srt
    ]
    assert srt[-1].end_ms <= demo_duration_s(name) * 1000 + 1
    assert [e.text for e in events if isinstance(e, Final)] == sentences
    assert isinstance(events[0], StreamStarted)
    assert pathlib.Path(events[0].source) == demo_wav(name)
    assert isinstance(events[-1], StreamEnded)
    assert events[-1].status == "ok"
    assert events[-1].audio_lost_ms == 0
    assert {e.stream for e in events} == {f"{name}.wav"}


def test_fast_sends_faster_than_real_time(demo: DemoRun) -> None:
    captures = demo.run.log_events("capture.finished")
    assert len(captures) == len(DEMO_NAMES), demo.run.describe()
    for record in captures:
        assert record["speed"] is None
        assert record["elapsed_s"] < record["audio_s"] / 2, record


# -------------------------------------------------- real time, speed 1


@pytest.mark.slow
def test_real_time_speed_paces_the_audio(tmp_path: pathlib.Path) -> None:
    """At the default speed 1 the shortest demo file takes its own length to send,
    and the first sentence is printed while the rest is still being sent."""
    name = "numbers"
    duration = demo_duration_s(name)
    run = run_steno(
        "-v",
        "transcribe",
        demo_wav(name),
        "--out",
        tmp_path,
        env=cli_env(api_key=None),
        timeout=60,
    )
    assert run.returncode == 0, run.describe()
    assert run.elapsed_s >= duration, run.describe()
    (capture,) = run.log_events("capture.finished")
    assert capture["speed"] == 1.0
    assert capture["elapsed_s"] >= 0.95 * capture["audio_s"], capture

    txt = (tmp_path / f"{name}.txt").read_text(encoding="utf-8")
    assert word_error_rate(demo_text(name), txt) <= MAX_WER, txt
    events = parse_jsonl((tmp_path / f"{name}.jsonl").read_text(encoding="utf-8"))
    # The file plays from its task's start (SessionOpened), after the stream started.
    started = next(e for e in events if isinstance(e, StreamStarted))
    opened = next(e for e in events if isinstance(e, SessionOpened))
    first_final = next(e for e in events if isinstance(e, Final))
    assert started.t <= opened.t < first_final.t
    # Streaming, not batch: a result came back before the file had been played out.
    if first_final.t - opened.t >= duration:
        real_time_trusted("the first final before the end of the file")
    assert first_final.t - opened.t < duration, (first_final.t - opened.t, duration)


# ------------------------------------------- the API key never leaks

SECRET = "sk-e2e-SECRET-5f1d9c2b7a3e4e08"


def test_api_key_never_appears_in_any_output(tmp_path: pathlib.Path) -> None:
    """The key is sent (the simulator accepts only it) yet printed and written nowhere,
    even with verbose logging."""
    name = "numbers"
    out = tmp_path / "out"
    with SimulatorThread(
        SimConfig(api_keys=[SECRET]),
        lambda: ScriptedRecognizer.transcript(demo_sentences(name)),
    ) as url:
        assert url.startswith("ws://127.0.0.1:")
        run = run_steno(
            "-v",
            "transcribe",
            demo_wav(name),
            "--fast",
            "--url",
            url,
            "--out",
            out,
            env=cli_env(api_key=SECRET),
            timeout=30,
        )
    assert run.returncode == 0, run.describe()
    assert _finals_printed(run, f"{name}.wav") == scripted_lines(name)
    assert "embedded simulator" not in run.stderr
    files = sorted(out.iterdir())
    assert [p.name for p in files] == sorted(f"{name}.{fmt}" for fmt in FORMATS)
    for path in files:
        assert SECRET not in path.read_text(encoding="utf-8"), path
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in run.stdout
    assert SECRET not in run.stderr
    # Nor any recognizable part of it.
    assert "5f1d9c2b7a3e4e08" not in run.stdout + run.stderr


# ----------------------------------------- two inputs with one stem


def test_inputs_with_the_same_name_get_their_own_output_files(tmp_path: pathlib.Path) -> None:
    """The same file twice: two streams, ``numbers.*`` and ``numbers-2.*``, each whole."""
    name = "numbers"
    out = tmp_path / "out"
    with SimulatorThread(
        SimConfig(api_keys=["right"]),
        lambda: ScriptedRecognizer.transcript(demo_sentences(name)),
    ) as url:
        run = run_steno(
            "transcribe",
            demo_wav(name),
            demo_wav(name),
            "--fast",
            "--url",
            url,
            "--out",
            out,
            env=cli_env(api_key="right"),
            timeout=30,
        )
    assert run.returncode == 0, run.describe()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}.{fmt}" for stem in (name, f"{name}-2") for fmt in FORMATS
    )
    for stem, stream in ((name, f"{name}.wav"), (f"{name}-2", f"{name}.wav#2")):
        assert (out / f"{stem}.txt").read_text().splitlines() == scripted_lines(name)
        assert [c.text for c in parse_srt((out / f"{stem}.srt").read_text())] == (
            scripted_lines(name)
        )
        parse_vtt((out / f"{stem}.vtt").read_text())
        events = parse_jsonl((out / f"{stem}.jsonl").read_text())
        assert {e.stream for e in events} == {stream}
