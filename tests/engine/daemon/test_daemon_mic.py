"""A daemon stream from a microphone: the capture actor on a fake PortAudio, in virtual time.

The device is ``adapters.audio.fakeportaudio.FakeBackend`` (48 kHz stereo), fed
tone-coded speech by the test; the stream dials the in-memory simulator. The
device is unplugged mid-stream: the daemon must keep the session, reopen the
device, keep every sentence at its place on the global timeline, and write the
outage to its outputs and metrics.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
from daemon_helpers import (
    KEY,
    _inline_threads,  # noqa: F401 - the inline_threads fixture
    config,
    wall_clock,
)

from adapters.audio.fakeportaudio import FakeBackend
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from adapters.sim.memory import open_memory_net
from engine.actors.mic import MicConfig
from engine.config import Secret
from engine.daemon.manager import Daemon
from engine.daemon.runner import StreamEnv
from engine.daemon.sources import SourceContext
from engine.events import (
    AudioGap,
    DeviceLost,
    DeviceRestored,
    Final,
    StreamEnded,
    StreamStarted,
    decode_jsonl_line,
)

pytestmark = pytest.mark.usefixtures("inline_threads")

DEVICE_RATE, BLOCK = 48000, 4800
SENTENCES = ["good morning", "the weather is sunny today", "thank you"]

TOML = """
[daemon]
drain-deadline-s = 30

[[stream]]
id = "room"
source = { kind = "mic", device = "fake mic", channels = 2 }
outputs = { formats = ["jsonl", "txt"] }
restart = { backoff-base-s = 1, backoff-cap-s = 1, jitter = false }
"""


async def inline(fn: Callable[[], Any]) -> Any:
    await trio.lowlevel.checkpoint()
    return fn()


class TestMicStream:
    async def test_a_device_loss_keeps_every_sentence_in_place(
        self,
        autojump_clock: trio.testing.MockClock,
        tmp_path: pathlib.Path,
        inline_threads: None,
    ) -> None:
        """Unplugged for 12 s between sentences: DeviceLost, DeviceRestored and an exact
        AudioGap(device) in the outputs; later sentences land after the gap; metrics count it."""
        before = synthesize(SENTENCES[:1], DEVICE_RATE).astype(np.float32) / 32768
        after = synthesize(SENTENCES[1:], DEVICE_RATE).astype(np.float32) / 32768
        backend = FakeBackend()
        out = tmp_path / "out"
        states: list[str] = []

        async def play(audio: np.ndarray) -> None:
            for at in range(0, len(audio), BLOCK):
                await trio.sleep(BLOCK / DEVICE_RATE)
                chunk = audio[at : at + BLOCK]
                assert backend.stream.feed(np.stack([chunk, chunk], axis=1))

        async with open_memory_net(SimConfig(api_keys=[KEY]), ScriptedRecognizer.tone()) as net:
            env = StreamEnv(
                url="ws://sim.invalid/api-ws/v1/inference",
                api_key=Secret(KEY),
                clock=wall_clock,
                dial=net.dial,
                sources=SourceContext(
                    audio_backend=backend,
                    run_blocking=inline,
                    mic=MicConfig(stall_timeout_s=None),
                ),
                seed=7,
            )
            daemon = Daemon(config(TOML, out), env)
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                while not backend.streams:  # noqa: ASYNC110 - the device opens in the stream's task
                    await trio.sleep(0.01)
                await play(before)
                await trio.sleep(0.05)  # the last block is delivered before the loss
                backend.unplug()
                await trio.sleep(12)
                states.append(daemon.metrics["room"].state)
                backend.replug()
                await trio.sleep(1.5)
                await play(after)
                await trio.sleep(2)
                daemon.request_drain()
        assert states == ["source-down"]
        assert daemon.clean
        events = [
            decode_jsonl_line(line)
            for path in out.glob("room*.jsonl")
            for line in path.read_bytes().splitlines()
        ]
        started = events[0]
        assert isinstance(started, StreamStarted)
        assert started.source == "mic:fake mic"
        assert started.started_at == "2023-11-14T22:13:20.000Z"  # the daemon's clock at t=0
        finals = [e for e in events if isinstance(e, Final)]
        assert [f.text.rstrip(".").lower() for f in finals] == SENTENCES
        (lost,) = [e for e in events if isinstance(e, DeviceLost)]
        (restored,) = [e for e in events if isinstance(e, DeviceRestored)]
        (gap,) = [e for e in events if isinstance(e, AudioGap)]
        assert gap.reason == "device"
        assert abs(gap.start - lost.at) <= 2 and abs(gap.end - restored.at) <= 2
        assert lost.at == len(before) // 3  # 48 kHz blocks → 16 kHz global samples
        assert 12 <= restored.outage_s <= 13.5
        assert finals[0].end <= gap.start and finals[1].start >= gap.end
        ended = events[-1]
        assert isinstance(ended, StreamEnded)
        assert (ended.status, ended.finals) == ("partial", 3)
        assert ended.audio_lost_ms == (gap.end - gap.start) // 16
        m = daemon.metrics["room"]
        assert m.gaps == {"device": 1} and m.source_restarts == 1
        assert m.audio_lost_s == pytest.approx((gap.end - gap.start) / 16000)
        assert all(s.closed for s in backend.streams)  # the drain closed the device
