"""Real capture: PulseAudio null sink → ALSA ``pulse`` → PortAudio → ``steno listen``.

A headless PulseAudio (``tools/pulse-ci.sh``, everything in a temp dir) gets a
null sink; ``paplay`` plays flite speech into it while ``steno listen --device
pulse`` records its monitor and transcribes it on the embedded simulator
(pocketsphinx). The words are checked with a WER bound (capture and resampling
add a little noise, and pocketsphinx drifts between runs).

The second test unplugs the device for real: it SIGKILLs the server mid-capture,
restarts it, and checks ``DeviceLost`` → ``DeviceRestored``, a ``device`` gap of
the outage's length, and that speech played afterwards is still transcribed.

Skips (with the reason) when PulseAudio, its tools or the ALSA pulse plugin are
missing — a failure on CI, whose setup installs them — and fails when they are
installed but the server or the device does not work (tests/e2e/pulse_helpers.py).
Needs (Debian): pulseaudio pulseaudio-utils libasound2-plugins libportaudio2.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_helpers import ROOT, cli_env, demo_text, demo_wav
from pulse_helpers import pulse_ci, running_pulse

from adapters.recognizers.wer import word_error_rate

pytestmark = pytest.mark.slow

MAX_WER = 0.5


def live_command() -> list[str]:
    """``steno`` once ``listen`` is wired into it, else ``python -m engine.live_cli``."""
    from engine.cli import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["listen", "--duration", "1"])
        script = pathlib.Path(sys.executable).with_name("steno")
        if script.is_file():
            return [str(script)]
        return [sys.executable, "-m", "engine.cli"]
    except SystemExit:
        return [sys.executable, "-m", "engine.live_cli"]


@pytest.fixture(name="pulse", scope="module")
def _pulse() -> Iterator[dict[str, str]]:
    """A running PulseAudio with ``steno_sink``; yields the environment for clients.

    Missing tools skip (a failure on CI); a server or device that is installed but
    does not work fails the test.
    """
    with running_pulse(cli_env(), "paplay") as env:
        listing = subprocess.run(
            [*live_command(), "devices"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,  # real-time: a real process
            check=False,
        )
        assert listing.returncode == 0 and " pulse  (" in listing.stdout.split("output")[0], (
            "PortAudio does not see the ALSA 'pulse' device although the plugin is "
            f"installed: {listing.stdout}{listing.stderr[-500:]}"
        )
        yield env


class Listener:
    """``steno listen`` as a running process whose JSON log lines are watched."""

    def __init__(self, env: dict[str, str], out: pathlib.Path, *extra: str) -> None:
        self.out = out
        # -v: info logs, JSON lines off a terminal (the records watched here)
        self.argv = [*live_command(), "-v", "listen", "--device", "pulse", "--out", str(out)]
        self.argv += ["--format", "txt,jsonl", *extra]
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.stderr: list[str] = []
        self.stdout = ""
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._seen:
                self.stderr.append(line)
                self._seen.notify_all()

    def logs(self, name: str) -> list[dict[str, Any]]:
        records = []
        for line in list(self.stderr):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == name:
                    records.append(record)
        return records

    def wait_for(self, name: str, timeout: float) -> dict[str, Any]:
        """Block until the log event ``name`` appears (real time: a real process)."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while not self.logs(name):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {name!r} within {timeout} s\n{self.describe()}")
                self._seen.wait(min(left, 0.2))
        return self.logs(name)[0]

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C: drain and finish; return the exit code."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.stdout, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.stdout, _ = self.proc.communicate()
            raise AssertionError(f"listen did not finish after Ctrl-C\n{self.describe()}") from None
        self._reader.join(timeout=5)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def events(self) -> list[dict[str, Any]]:
        lines = (self.out / "listen.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def transcript(self) -> str:
        return (self.out / "listen.txt").read_text(encoding="utf-8")

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n--- stdout\n{self.stdout}"
            f"--- stderr\n{''.join(self.stderr)[-4000:]}"
        )


@contextlib.contextmanager
def listening(env: dict[str, str], out: pathlib.Path) -> Iterator[Listener]:
    listener = Listener(env, out)
    try:
        listener.wait_for("live.started", timeout=60)
        yield listener
    finally:
        listener.close()


def play(env: dict[str, str], wav: pathlib.Path) -> None:
    subprocess.run(
        ["paplay", "--device=steno_sink", str(wav)],
        env=env,
        check=True,
        timeout=60,  # real-time: paplay plays in real time (about 10 s)
    )


def test_devices_lists_pulse(pulse: dict[str, str]) -> None:
    """``steno devices`` lists the ALSA pulse device as an input, with its native rate."""
    done = subprocess.run(
        [*live_command(), "devices"],
        env=pulse,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    inputs = done.stdout.split("output devices:")[0]
    assert "pulse  (ALSA, " in inputs and " Hz, " in inputs


def test_listen_transcribes_speech_played_into_the_sink(
    pulse: dict[str, str], tmp_path: pathlib.Path
) -> None:
    """Speech played into the null sink comes out of ``steno listen`` as the right words;
    Ctrl-C drains it (every sentence final, the stream ``ok``, nothing lost)."""
    with listening(pulse, tmp_path) as listener:
        play(pulse, demo_wav("weather"))
        time.sleep(1.0)  # real-time: let the last sentence's trailing silence be captured
        code = listener.interrupt()
    assert code == 130, listener.describe()
    wer = word_error_rate(demo_text("weather"), listener.transcript())
    assert wer <= MAX_WER, f"WER {wer:.2f}\n{listener.transcript()}\n{listener.describe()}"
    events = listener.events()
    ended = [e for e in events if e["type"] == "StreamEnded"]
    assert len(ended) == 1 and ended[0]["status"] == "ok", listener.describe()
    assert ended[0]["audio_lost_ms"] == 0
    assert not [e for e in events if e["type"] in ("AudioGap", "DeviceLost")]
    opened = listener.logs("mic.opened")[0]
    assert opened["device"] == "pulse" and opened["rate"] > 0


def test_device_loss_on_the_real_stack(pulse: dict[str, str], tmp_path: pathlib.Path) -> None:
    """Killing the server mid-capture is DeviceLost; restarting it is DeviceRestored after
    a device gap of the outage; speech played afterwards is transcribed."""
    with listening(pulse, tmp_path) as listener:
        time.sleep(1.0)  # real-time: capture a little before the "unplug"
        pid = (pathlib.Path(pulse["STENO_PULSE_DIR"]) / "pid").read_text().strip()
        os.kill(int(pid), signal.SIGKILL)
        lost = listener.wait_for("mic.device_lost", timeout=10)
        time.sleep(1.5)  # real-time: stay unplugged across reopen attempts
        assert pulse_ci("stop", pulse).returncode == 0
        restarted = pulse_ci("start", pulse)
        assert restarted.returncode == 0, restarted.stderr
        listener.wait_for("mic.device_restored", timeout=30)
        play(pulse, demo_wav("weather"))
        time.sleep(1.0)  # real-time: trailing silence
        code = listener.interrupt()
    assert code == 130, listener.describe()
    assert lost["cause"] in ("finished", "inactive"), lost
    events = listener.events()
    (device_lost,) = [e for e in events if e["type"] == "DeviceLost"]
    (restored,) = [e for e in events if e["type"] == "DeviceRestored"]
    gaps = [e for e in events if e["type"] == "AudioGap"]
    assert [g["reason"] for g in gaps] == ["device"], listener.describe()
    gap = gaps[0]
    assert gap["start"] == device_lost["at"] and gap["end"] == restored["at"]
    assert restored["outage_s"] >= 1.5
    assert abs((gap["end"] - gap["start"]) / gap["rate"] - restored["outage_s"]) < 0.01
    (ended,) = [e for e in events if e["type"] == "StreamEnded"]
    assert ended["status"] == "partial"
    assert abs(ended["audio_lost_ms"] - restored["outage_s"] * 1000) < 10
    finals = [e for e in events if e["type"] == "Final"]
    assert finals and all(f["start"] >= restored["at"] for f in finals)
    wer = word_error_rate(demo_text("weather"), listener.transcript())
    assert wer <= MAX_WER, f"WER {wer:.2f}\n{listener.transcript()}\n{listener.describe()}"
