"""`steno transcribe` under every simulator fault plan, and Ctrl-C, as a user sees it.

Real processes on the real clock: each fault plan hits the first connection while
the file streams, and the transcript on disk must equal the fault-free one. The
audio is tone-coded speech that the scripted recognizer decodes exactly, so
"equal" means word for word and cue for cue.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import threading
import time
from typing import IO, NamedTuple

import pytest
import soundfile
from e2e_helpers import (
    CliRun,
    cli_env,
    parse_jsonl,
    run_steno,
    run_steno_concurrently,
    steno_command,
)

from adapters.recognizers.tonecode import synthesize
from engine.events import StreamEnded

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("any_transport")]  # both transports

SENTENCES = [
    "good morning",
    "the weather is sunny today",
    "we will have the budget",
    "thank you",
]


@pytest.fixture(name="tones", scope="module")
def _tones(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("faults") / "tones.wav"
    soundfile.write(path, synthesize(SENTENCES, 16000), 16000, subtype="PCM_16")
    return path


TRANSIENT_PLANS = [
    "drop:at=1.2;first=1",
    "half-open:at=1.2;first=1",
    "fail-task:InternalError,at=1.2;first=1",
    "fail-task:CLIENT_ERROR,message=request timeout after 23 seconds.,at=1.2;first=1",
    "no-task-finished;first=1",
    "reject:503;first=2",
    "throttle;first=1",
    "delay:0.4,jitter=0.2;seed=5",
    "slow-accept:1.5;first=1",
]
CONCURRENT_RUNS = 4
"""Processes at once: each mostly waits on the real-time pacing (``--speed 3``), so runs
overlap their waits instead of queueing them, without more than two cores' worth of work."""


def transcribe_args(tones: pathlib.Path, out: pathlib.Path, *extra: str) -> list[str]:
    return [
        "transcribe", os.fspath(tones), "--recognizer", "scripted", "--speed", "3",
        "--out", os.fspath(out), *extra,
    ]  # fmt: skip


def transcribe(
    tones: pathlib.Path, out: pathlib.Path, *extra: str, timeout: float = 90.0
) -> CliRun:
    return run_steno(*transcribe_args(tones, out, *extra), env=cli_env(None), timeout=timeout)


class FaultRun(NamedTuple):
    run: CliRun
    out: pathlib.Path


@pytest.fixture(name="fault_runs", scope="module")
def _fault_runs(
    tones: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, FaultRun]:
    """The fault-free baseline (key ``""``) and each transient plan, as real processes
    run side by side; each writes to a directory of its own."""
    outs = {plan: tmp_path_factory.mktemp("fault") for plan in ["", *TRANSIENT_PLANS]}
    extra = {plan: ["--sim-fault", plan, "--finish-timeout", "3"] if plan else [] for plan in outs}
    runs = run_steno_concurrently(
        [(transcribe_args(tones, out, *extra[plan]), cli_env(None)) for plan, out in outs.items()],
        timeout=90,
        jobs=CONCURRENT_RUNS,
    )
    return {plan: FaultRun(run, outs[plan]) for plan, run in zip(outs, runs, strict=True)}


@pytest.fixture(name="baseline", scope="module")
def _baseline(fault_runs: dict[str, FaultRun]) -> dict[str, str]:
    run, out = fault_runs[""]
    assert run.returncode == 0, run.describe()
    texts = {ext: (out / f"tones.{ext}").read_text() for ext in ("txt", "srt")}
    assert texts["txt"].splitlines() == [s[:1].upper() + s[1:] + "." for s in SENTENCES]
    return texts


@pytest.mark.parametrize("plan", TRANSIENT_PLANS)
def test_transient_faults_change_nothing(
    plan: str, fault_runs: dict[str, FaultRun], baseline: dict[str, str]
) -> None:
    """Same TXT and SRT as without faults, exit 0, and the console says it reconnected."""
    run, out = fault_runs[plan]
    assert run.returncode == 0, run.describe()
    assert (out / "tones.txt").read_text() == baseline["txt"]
    assert (out / "tones.srt").read_text() == baseline["srt"]
    done = run.stream_lines("tones.wav")[-1]
    assert done.startswith("done: ok")
    assert done.endswith("audio lost 0 ms")
    if not plan.startswith(("delay", "slow-accept")):
        assert any(
            line.startswith("reconnecting (attempt 1") for line in run.stream_lines("tones.wav")
        )


def test_permanent_fault_is_one_clear_error(tones: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """401 at the upgrade: one error line naming the fix, exit 1, no retries."""
    run = transcribe(tones, tmp_path, "--sim-fault", "reject:401")
    assert run.returncode == 1, run.describe()
    lines = run.stream_lines("tones.wav")
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1
    assert "DASHSCOPE_API_KEY" in errors[0]
    assert not any(line.startswith("reconnecting") for line in lines)


class Running:
    """``steno ARGS`` as a running process; two threads collect its stdout and stderr.

    Every wait is bounded (real time): :meth:`wait_for` polls the collected stderr
    until a deadline, :meth:`finish` waits for the exit with a timeout, and leaving
    the ``with`` block kills a process still running. A blocking ``for line in
    proc.stderr`` could hang the test forever on a process that stops writing.
    """

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*steno_command(), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._out: list[str] = []
        self._err: list[str] = []
        self._changed = threading.Condition()
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._changed:
                into.append(line)
                self._changed.notify_all()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)  # real time: a killed process exits at once
        for pump in self._pumps:
            pump.join(timeout=30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def wait_for(self, text: str, timeout: float) -> None:
        """Until a stderr line contains ``text``; fails after ``timeout`` s or at exit."""
        deadline = time.monotonic() + timeout  # real time: a real process
        with self._changed:
            while not any(text in line for line in self._err):
                left = deadline - time.monotonic()
                if self.proc.poll() is not None and not any(p.is_alive() for p in self._pumps):
                    raise AssertionError(f"steno exited before {text!r}:\n{''.join(self._err)}")
                assert left > 0, f"no {text!r} on stderr within {timeout} s"
                self._changed.wait(min(left, 0.5))

    def finish(self, timeout: float) -> float:
        """Wait for the exit (at most ``timeout`` s); returns how long it took."""
        started = time.monotonic()
        try:
            self.proc.wait(timeout=timeout)  # real time: a real process draining
        except subprocess.TimeoutExpired:
            raise AssertionError(f"steno still running after {timeout} s:\n{self.err}") from None
        for pump in self._pumps:
            pump.join(timeout=10)
        return time.monotonic() - started

    @property
    def out(self) -> str:
        with self._changed:
            return "".join(self._out)

    @property
    def err(self) -> str:
        with self._changed:
            return "".join(self._err)


class TestInterrupt:
    def test_first_ctrl_c_finishes_within_the_deadline(
        self, tones: pathlib.Path, tmp_path: pathlib.Path
    ) -> None:
        """SIGINT against a server that never finishes: exit 130 once the finish deadline passes."""
        args = [
            "transcribe", os.fspath(tones), "--recognizer", "scripted", "--out", os.fspath(tmp_path),
            "--sim-fault", "no-task-finished", "--finish-timeout", "3",
        ]  # fmt: skip
        with Running(args, cli_env(None)) as steno:
            steno.wait_for("embedded simulator", timeout=30)  # then it is streaming
            time.sleep(1.5)  # real-time: let it stream a while before the Ctrl-C
            steno.proc.send_signal(signal.SIGINT)
            elapsed = steno.finish(timeout=8.0)
            assert steno.proc.returncode == 130, steno.err
            assert elapsed >= 2.5, f"exited {elapsed:.1f} s after Ctrl-C"
            assert "finishing every stream" in steno.err
            assert "lost audio" in steno.err  # the unfinalized tail is reported (status: stderr)
        assert (tmp_path / "tones.jsonl").exists()

    def test_second_ctrl_c_stops_at_once(self, tones: pathlib.Path, tmp_path: pathlib.Path) -> None:
        """Two SIGINTs: the run stops at once, without waiting for any deadline."""
        args = [
            "transcribe", os.fspath(tones), "--recognizer", "scripted", "--out", os.fspath(tmp_path),
            "--sim-fault", "no-task-finished", "--finish-timeout", "30",
        ]  # fmt: skip
        with Running(args, cli_env(None)) as steno:
            steno.wait_for("embedded simulator", timeout=30)
            time.sleep(1.0)  # real-time: streaming
            steno.proc.send_signal(signal.SIGINT)
            time.sleep(0.5)  # real-time: the drain has begun
            steno.proc.send_signal(signal.SIGINT)
            steno.finish(timeout=5.0)
            assert steno.proc.returncode == 130, steno.err

    def test_an_interrupted_run_says_so_for_every_file(
        self, tones: pathlib.Path, tmp_path: pathlib.Path
    ) -> None:
        """--jobs 1, three files, one Ctrl-C in the first: it ends ``interrupted`` with its
        unsent span (console and JSONL), each file never started gets one line, in
        command-line order, and the exit code is 130."""
        files = []
        for name in ("first", "second", "third"):
            (tmp_path / f"{name}.wav").symlink_to(tones)
            files.append(os.fspath(tmp_path / f"{name}.wav"))
        out = tmp_path / "out"
        args = ["transcribe", *files, "--jobs", "1", "--recognizer", "scripted", "--out", os.fspath(out)]  # fmt: skip
        with Running(args, cli_env(None)) as steno:
            steno.wait_for("embedded simulator", timeout=30)
            time.sleep(1.5)  # real-time: the first file streams a while
            steno.proc.send_signal(signal.SIGINT)
            steno.finish(timeout=30)
            stdout, stderr = steno.out, steno.err
        assert steno.proc.returncode == 130, stderr
        assert "Traceback" not in stdout + stderr
        lines = stderr.splitlines()  # errors and done: lines are status (stderr)
        (unsent,) = [line for line in lines if line.startswith("[first.wav] error: interrupted at")]
        assert re.fullmatch(r"\[first\.wav\] error: interrupted at [\d.]+ s of [\d.]+ s: [\d.]+–[\d.]+ s not sent", unsent)  # fmt: skip
        assert any(line.startswith("[first.wav] done: interrupted,") for line in lines)
        never = [line for line in lines if "interrupted before it started" in line]
        assert [line.split("]")[0] for line in never] == ["[second.wav", "[third.wav"]
        ended = parse_jsonl((out / "first.jsonl").read_text())[-1]
        assert isinstance(ended, StreamEnded) and ended.status == "interrupted"
        assert not (out / "second.jsonl").exists()

    @pytest.mark.parametrize("pause", [0.0, 0.3, 1.0])
    def test_a_second_ctrl_c_during_shutdown_is_130_without_a_traceback(
        self, tones: pathlib.Path, tmp_path: pathlib.Path, pause: float
    ) -> None:
        """Ctrl-C, then another once the drain is over (the simulator shutting down) or
        while it runs: exit 130 at once, and no traceback. Paced (2x real time, 3.5 s of
        streaming): with ``--fast`` the 7 s file can end before the first Ctrl-C."""
        args = ["transcribe", os.fspath(tones), "--recognizer", "scripted", "--speed", "2"]
        with Running(args, cli_env(None)) as steno:
            steno.wait_for("embedded simulator", timeout=30)
            time.sleep(0.5)  # real-time: streaming
            steno.proc.send_signal(signal.SIGINT)
            time.sleep(pause)  # real-time: somewhere in the drain or the shutdown
            if steno.proc.poll() is None:
                steno.proc.send_signal(signal.SIGINT)
            steno.finish(timeout=10)
            assert steno.proc.returncode == 130, steno.err
            assert "Traceback" not in steno.out + steno.err
