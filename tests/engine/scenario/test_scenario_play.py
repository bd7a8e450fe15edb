"""One scenario's streams through the real engine against the in-memory simulator, in
virtual time: every metric recorded, faults per stream, words scored against the reference."""

from __future__ import annotations

import pathlib

import numpy as np
import soundfile as sf
import soxr
import trio
import trio.testing

from adapters.sim.config import SimConfig
from adapters.sim.memory import open_memory_net
from engine.config import Secret
from engine.ratelimit import StartLimiter
from engine.scenario.audio import load_audio
from engine.scenario.executor import run_executor
from engine.scenario.labeler import learn, recognizer
from engine.scenario.metrics import Recorder
from engine.scenario.play import Player, Target
from engine.scenario.spec import decode_scenario

AUDIO = pathlib.Path(__file__).resolve().parents[3] / "scenarios" / "audio"

FILE = f"""
[[scenario]]
name = "rooms"
executor = "per-session-iterations"
sessions = 3
iterations = 2
audio = {{ file = "{AUDIO / "numbers.wav"}", reference = "{AUDIO / "numbers.txt"}", tail-silence = "1s" }}
faults = "drop:at=3;first=1"
"""


def table() -> dict[int, list]:  # type: ignore[type-arg]
    x, r = sf.read(AUDIO / "numbers.wav", dtype="float32")
    pcm = (np.clip(soxr.resample(x, r, 16000), -1, 1) * 32767).astype(np.int16)
    return {16000: learn(pcm, 16000, (AUDIO / "numbers.txt").read_text().splitlines())}


async def test_streams_are_measured(autojump_clock: trio.testing.MockClock) -> None:
    """6 streams (3 sessions × 2), each dropped once at 3 s: all complete, nothing lost, every
    final word for word; connect, task start, package delays, lag and lateness recorded."""
    spec = decode_scenario(FILE).scenarios[0]
    audio = await load_audio(spec.audio)
    rec = Recorder()
    async with open_memory_net(SimConfig(), recognizer(table())) as net:
        player = Player(
            spec,
            audio,
            Target("ws://sim/api-ws/v1/inference", Secret("sk-test"), loopback=True),
            rec,
            limiter=StartLimiter(),
            run_seed=7,
            dial=net.dial,
        )
        await run_executor(spec, player, rec)
    count = {
        m: rec.count(m)
        for m in (
            "sessions_started",
            "sessions_completed",
            "sessions_failed",
            "finals",
            "reconnects",
        )
    }
    assert count == {
        "sessions_started": 6,
        "sessions_completed": 6,
        "sessions_failed": 0,
        "finals": 12,
        "reconnects": 6,
    }
    assert rec.count("errors") == 6  # each drop, by its category
    trends = {s.metric: s for s in rec.states() if s.scenario == "rooms" and not s.code}
    assert trends["wer"].count == 6 and trends["wer"].max == 0
    assert trends["audio_lost_ms"].count == 6 and trends["audio_lost_ms"].sum == 0
    assert trends["connect_time"].count == 12  # two connections per stream
    assert trends["task_start_time"].count == 12
    assert trends["first_package_delay"].count >= 6 and trends["last_package_delay"].count >= 6
    assert trends["final_lag"].count == 12
    chunks = len(audio.chunks)
    assert trends["send_lateness"].count == 6 * chunks
    assert player.active == {"rooms": 0}
