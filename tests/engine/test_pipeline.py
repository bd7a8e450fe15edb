"""A file as a stream's producer: the capture sends straight into the resampler inlet.

The memory simulator with the tone-coded recognizer, on MockClock. The capture
reads the file in a worker thread, and autojump would leap from timer to timer while
that read is in flight (the session has timers of its own: under load a read skipped
~100 virtual seconds and the simulator ended a sentence early), so the reads run
inline (``inline_threads``). These tests assert content and order;
tests/engine/test_capture.py and test_pacer.py assert the schedule.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
import soundfile as sf
import trio
import trio.testing

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from adapters.sim.memory import open_memory_net
from engine.config import Secret, SessionConfig
from engine.events import Event, Final, SessionOpened, StreamEnded, StreamError
from engine.pacer import current_pacer
from engine.pipeline import FileStreamConfig, run_file_stream
from engine.policy import RateLimit
from engine.ratelimit import StartLimiter

pytestmark = pytest.mark.usefixtures("inline_threads")

SENTENCES = ["good morning", "the weather is sunny today", "thank you"]


def file_config(path: Path) -> FileStreamConfig:
    session = SessionConfig(
        stream="f",
        model="paraformer-realtime-v2",
        url="ws://sim/api-ws/v1/inference",
        api_key=Secret("sk"),
        seed=3,
    )
    return FileStreamConfig(path=str(path), session=session)


@pytest.fixture(name="speech")
def _speech(tmp_path: Path) -> tuple[Path, float]:
    pcm = synthesize(SENTENCES, 16000)
    path = tmp_path / "speech.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    return path, len(pcm) / 16000


async def transcribe(
    config: FileStreamConfig,
    *,
    drain_at_first_final: bool = False,
    limiter: StartLimiter | None = None,
) -> tuple[StreamEnded, list[Event]]:
    console_send, console_recv = trio.open_memory_channel[Event](1000)
    drain = trio.Event()
    events: list[Event] = []

    async def watch() -> None:
        async with console_recv:
            async for event in console_recv:
                events.append(event)
                if drain_at_first_final and isinstance(event, Final):
                    drain.set()

    async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            ended = await run_file_stream(
                config, console=console_send, drain=drain, dial=net.dial, limiter=limiter
            )
    return ended, events


class TestFileStream:
    async def test_a_paced_file_is_transcribed_whole(
        self, autojump_clock: trio.testing.MockClock, speech: tuple[Path, float]
    ) -> None:
        """Every sentence once; the timeline is the file's length; every block on the pacer."""
        path, duration = speech
        t0 = trio.current_time()
        ended, events = await transcribe(file_config(path))
        finals = [e.text.rstrip(".").lower() for e in events if isinstance(e, Final)]
        assert finals == SENTENCES
        assert ended.status == "ok"
        assert ended.audio_ms == round(duration * 1000)
        assert trio.current_time() - t0 >= duration
        blocks = -(-round(duration * 16000) // 1600)
        assert current_pacer().statistics().count == blocks  # one wait per 100 ms block

    async def test_a_drain_sends_what_was_read_and_ends_interrupted(
        self, autojump_clock: trio.testing.MockClock, speech: tuple[Path, float]
    ) -> None:
        """A drain at the first result stops the capture; what was sent is finished (its
        first sentence recognized) and the rest reported."""
        path, duration = speech
        ended, events = await transcribe(file_config(path), drain_at_first_final=True)
        assert ended.status == "interrupted"
        assert 0 < ended.audio_ms < duration * 1000
        finals = [e for e in events if isinstance(e, Final)]
        assert finals[0].text.rstrip(".").lower() == SENTENCES[0]
        (error,) = [e for e in events if isinstance(e, StreamError)]
        assert error.kind == "interrupted"
        match = re.fullmatch(
            r"interrupted at (\d+\.\d) s of (\d+\.\d) s: \1–\2 s not sent", error.message
        )
        assert match is not None, error.message
        assert float(match[1]) == pytest.approx(ended.audio_ms / 1000, abs=0.051)
        assert match[2] == f"{duration:.1f}"

    @pytest.mark.parametrize("speed", [1.0, None])
    async def test_a_file_held_back_by_the_start_limit_plays_from_its_task_start(
        self,
        autojump_clock: trio.testing.MockClock,
        speech: tuple[Path, float],
        speed: float | None,
    ) -> None:
        """A stream that waits 5 s for a start token, with 1 s of replay buffer, loses
        nothing: the file starts playing when its task has started (paced: in real time
        from then on), instead of filling the buffer while it waits."""
        path, duration = speech
        limiter = StartLimiter({"paraformer": RateLimit(0.2, burst=1)})
        await limiter.acquire("paraformer")  # the next start is 5 s away
        base = file_config(path)
        config = msgspec.structs.replace(
            base,
            speed=speed,
            session=msgspec.structs.replace(base.session, replay_buffer_s=1.0),
        )
        t0 = trio.current_time()
        ended, events = await transcribe(config, limiter=limiter)
        (opened,) = [e for e in events if isinstance(e, SessionOpened)]
        assert opened.t - t0 >= 5.0 - 1e-6  # the token came no sooner
        assert ended.status == "ok"
        assert ended.audio_lost_ms == 0
        assert [e.text.rstrip(".").lower() for e in events if isinstance(e, Final)] == SENTENCES
        if speed is not None:
            assert ended.t - opened.t >= duration - 1e-6
