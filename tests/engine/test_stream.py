"""The embedding API: open_stream (trio), ThreadedStream and AsyncioStream, and the examples."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import trio
import trio.testing

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from adapters.sim.memory import open_memory_net
from engine import ConfigError, Final, InputError, Secret, SessionConfig, StreamEnded
from engine.stream import StreamConfig, open_stream, to_mono_float32
from engine.threaded import AsyncioStream, ThreadedStream

ROOT = pathlib.Path(__file__).resolve().parents[2]
SENTENCES = ["good morning", "the weather is sunny today", "thank you"]


def session(**kw: object) -> SessionConfig:
    base: dict[str, object] = {
        "stream": "embed",
        "model": "paraformer-realtime-v2",
        "url": "ws://sim/api-ws/v1/inference",
        "api_key": Secret("sk"),
        "seed": 3,
    }
    return SessionConfig(**(base | kw))  # type: ignore[arg-type]


def stereo_float_48k() -> np.ndarray:
    mono = synthesize(SENTENCES, 48000).astype(np.float32) / 32768.0
    return np.stack([mono, mono], axis=1)


class TestOpenStream:
    async def test_pushed_48k_stereo_is_transcribed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Odd-sized pushes of 48 kHz stereo float: every sentence, in order, once."""
        audio = stereo_float_48k()
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(
                StreamConfig(session=session(), input_rate=48000), dial=net.dial
            ) as stream:

                async def produce() -> None:
                    for start in range(0, len(audio), 7001):
                        await stream.push(audio[start : start + 7001], channels=2)
                        await trio.sleep(7001 / 48000)  # a live host's pace
                    await stream.end_input()

                finals: list[str] = []
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(produce)
                    async for event in stream.events():
                        if isinstance(event, Final):
                            finals.append(event.text.rstrip(".").lower())
        assert finals == SENTENCES
        assert stream.ended is not None
        assert stream.ended.status == "ok"

    async def test_leaving_without_reading_still_finishes(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Exiting the block ends the input and drains unread events to a clean finish."""
        pcm = synthesize(SENTENCES[:1], 16000).tobytes()
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:
                await stream.push(pcm)
        assert stream.ended is not None
        assert (stream.ended.status, stream.ended.finals) == ("ok", 1)

    async def test_bad_rate_and_data_are_refused(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A rate outside 8-48 kHz or odd bytes: a clear InputError, the stream goes on."""
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:
                with pytest.raises(InputError, match="4000 Hz"):
                    await stream.push(b"\0\0" * 100, rate=4000)
                with pytest.raises(InputError, match="int16"):
                    await stream.push(b"\0\0\0", rate=16000)
                await stream.push(synthesize(SENTENCES[:1], 16000).tobytes())
        assert stream.ended is not None
        assert stream.ended.finals == 1

    async def test_bad_model_fails_before_anything_is_sent(self) -> None:
        """An unknown model is a ConfigError from open_stream itself."""
        with pytest.raises(ConfigError, match="unknown model"):
            async with open_stream(StreamConfig(session=session(model="nope"))):
                pass  # pragma: no cover

    def test_downmix(self) -> None:
        """int16 bytes, int16 arrays and float arrays all become mono float32."""
        stereo = np.array([[1000, 3000], [-2000, 0]], dtype=np.int16)
        assert to_mono_float32(stereo.tobytes(), 2).tolist() == pytest.approx(
            [2000 / 32768, -1000 / 32768]
        )
        assert to_mono_float32(stereo, 2).tolist() == pytest.approx([2000 / 32768, -1000 / 32768])
        assert to_mono_float32(np.array([0.5, -0.5], dtype=np.float64), 1).dtype == np.float32


class TestHostWrappers:
    def test_threaded_stream(self) -> None:
        """Push from a plain thread, read events on it; the embedded simulator answers."""
        pcm = synthesize(SENTENCES, 16000)
        config = StreamConfig(session=session(), simulator="scripted")
        with ThreadedStream(config) as stream:
            for start in range(0, len(pcm), 1600):
                stream.push(pcm[start : start + 1600].tobytes())
            stream.end_input()
            finals = [
                e.text.rstrip(".").lower()
                for e in stream.events(timeout=60)
                if isinstance(e, Final)
            ]
        assert finals == SENTENCES
        assert stream.ended is not None

    def test_threaded_stream_reports_a_bad_config(self) -> None:
        """A stream that cannot start raises from start(), in the host thread."""
        with pytest.raises(ConfigError, match="unknown model"):
            ThreadedStream(StreamConfig(session=session(model="nope"))).start()

    def test_asyncio_stream(self) -> None:
        """An asyncio host awaits push and iterates events without blocking its loop."""
        pcm = synthesize(SENTENCES, 16000)

        async def host() -> tuple[list[str], int]:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            tick_task = asyncio.create_task(ticker())
            finals: list[str] = []
            async with AsyncioStream(
                StreamConfig(session=session(), simulator="scripted")
            ) as stream:
                for start in range(0, len(pcm), 3200):
                    await stream.push(pcm[start : start + 3200].tobytes())
                await stream.end_input()
                async for event in stream.events():
                    if isinstance(event, Final):
                        finals.append(event.text.rstrip(".").lower())
                    if isinstance(event, StreamEnded):
                        break
            tick_task.cancel()
            return finals, ticks

        finals, ticks = asyncio.run(host())
        assert finals == SENTENCES
        assert ticks > 0  # the asyncio loop kept running while the engine worked


@pytest.mark.slow
@pytest.mark.parametrize("example", ["embed_trio.py", "embed_threads.py", "embed_asyncio.py"])
def test_examples_run(example: str) -> None:
    """The runnable embedding examples transcribe the demo audio on the embedded simulator."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, example],
        cwd=ROOT / "tools" / "examples",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "final: The weather today is sunny and warm." in done.stdout
    assert "ended: ok, 3 finals" in done.stdout
