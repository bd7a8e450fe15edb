"""Real playback: the playback actor → PortAudio → ALSA ``pulse`` → a PulseAudio null sink.

A headless PulseAudio (``tools/pulse-ci.sh``, everything in a temp dir) gets a null
sink; ``parec`` records the sink's monitor while a child process runs
:func:`engine.actors.playback.run` on device ``pulse`` with one second of a 1 kHz
tone as ``TranslatedAudio`` chunks. The recording must hold that tone: its
frequency, level and length. A child process is used because PortAudio lists
devices once, when it initialises, and the server must be up by then.

Skips (with the reason) when PulseAudio, its tools or the ALSA pulse plugin are
missing — a failure on CI, whose setup installs them — and fails when they are
installed but do not work (tests/e2e/pulse_helpers.py). Needs (Debian): pulseaudio
pulseaudio-utils libasound2-plugins libportaudio2.
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from pulse_helpers import base_env, running_pulse
from skip_policy import real_time_trusted

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
RATE = 24000

PLAYER = """
import json
import numpy as np
import trio
from engine.actors import playback
from engine.events import TranslatedAudio

async def main():
    t = np.arange(24000) / 24000
    pcm = (np.sin(2 * np.pi * 1000 * t) * 16384).astype("<i2").tobytes()
    send, receive = trio.open_memory_channel(0)
    config = playback.PlaybackConfig(device="pulse", stall_timeout_s=2.0)
    async with trio.open_nursery() as nursery:
        stats = await nursery.start(lambda task_status: playback.run(
            inbox=receive, config=config, task_status=task_status))
        async with send:
            for at in range(0, len(pcm), 4800):  # 100 ms chunks
                await send.send(TranslatedAudio("r1", pcm[at:at + 4800]))
    print(json.dumps({"rate": stats.rate, "played": stats.played_frames,
                      "underruns": stats.underruns, "lost": stats.lost}))

trio.run(main)
"""


@pytest.fixture(name="pulse", scope="module")
def _pulse() -> Iterator[dict[str, str]]:
    """A running PulseAudio with ``steno_sink``; yields the environment for clients.

    Missing tools skip (a failure on CI); a server that is installed but does not
    start fails the test.
    """
    with running_pulse(base_env(), "parec") as env:
        yield env


class Recorder:
    """``parec`` on the sink's monitor, read by a thread into :attr:`data`."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [
                *("parec", "--device=steno_sink.monitor", "--raw", "--format=s16le"),
                *(f"--rate={RATE}", "--channels=1", "--latency-msec=20"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.data = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            self.data += chunk

    def samples(self) -> np.ndarray:
        raw = bytes(self.data)
        return np.frombuffer(raw[: len(raw) // 2 * 2], "<i2").astype(np.float64) / 32768

    def wait_for_silence_after_sound(self, seconds: float, timeout: float = 10.0) -> None:
        """Until the recording ends in ``seconds`` of quiet after something loud (parec
        lags the sink by its buffering), or ``timeout`` (real time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            loud = np.flatnonzero(np.abs(self.samples()) > 0.05)
            if len(loud) and len(self.samples()) - loud[-1] > seconds * RATE:
                return
            time.sleep(0.05)  # real-time: poll the recording

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_translated_voice_reaches_the_sink(pulse: dict[str, str]) -> None:
    """One second of a 1 kHz tone comes back from the sink's monitor intact."""
    recorder = Recorder(pulse)
    try:
        player = subprocess.run(
            [sys.executable, "-c", PLAYER],
            env=pulse,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,  # real time: plays one second of audio
            check=False,
        )
        recorder.wait_for_silence_after_sound(0.3)
    finally:
        recorder.stop()
    assert player.returncode == 0, player.stderr[-2000:]
    stats = json.loads(player.stdout.strip().splitlines()[-1])
    assert stats == {"rate": RATE, "played": RATE, "underruns": 0, "lost": None}
    x = recorder.samples()
    assert len(x) > RATE, f"parec recorded only {len(x)} samples"
    loud = np.flatnonzero(np.abs(x) > 0.05)
    assert len(loud), "the sink's monitor heard only silence"
    tone = x[loud[0] : loud[-1] + 1]  # contiguous: from the first to the last loud sample
    spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone))))
    peak = np.fft.rfftfreq(len(tone), 1 / RATE)[np.argmax(spectrum)]
    windows = tone[: len(tone) // 240 * 240].reshape(-1, 240)  # 10 ms each
    quiet = int(np.sum(np.sqrt(np.mean(windows**2, axis=1)) < 0.1))
    if abs(len(tone) / RATE - 1.0) >= 0.02 or quiet:
        real_time_trusted("PulseAudio playing a second of tone without a dropout")
    assert abs(len(tone) / RATE - 1.0) < 0.02, len(tone) / RATE
    assert abs(peak - 1000) < 5, peak
    assert abs(float(np.sqrt(np.mean(tone**2))) - 0.5 / np.sqrt(2)) < 0.02
    assert quiet == 0, f"{quiet} silent 10 ms windows inside the tone (dropouts)"
