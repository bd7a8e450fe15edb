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
from adapters.recognizers.tonecode import LEAD_IN_MS, synthesize
from adapters.sim.config import SimConfig
from adapters.sim.faults import parse_fault_spec
from adapters.sim.memory import open_memory_net
from engine import (
    AudioGap,
    AudioSkipped,
    ConfigError,
    Event,
    Final,
    InputError,
    Reconnecting,
    Secret,
    SessionConfig,
    StreamEnded,
    StreamStarted,
)
from engine._stream_input import pushed_block
from engine.actors.resampler import ResamplerStats
from engine.events import StreamError
from engine.messages import PcmBlock, RawBlock
from engine.stream import (
    Feed,
    InputLedger,
    Stream,
    StreamConfig,
    StreamStatistics,
    complete_end,
    open_stream,
    to_mono_float32,
)
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


@pytest.mark.usefixtures("any_transport")  # both WebSocket client transports
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

    async def test_push_resamples_in_the_callers_task(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A pushed frame is on the timeline when push returns (no resampler task), and
        push is a checkpoint even when the audio only fills part of a frame."""
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:
                with trio.testing.assert_checkpoints():
                    await stream.push(np.ones(1600, dtype=np.int16))
                assert stream.statistics().timeline_samples == 1600
                with trio.testing.assert_checkpoints():
                    await stream.push(b"\1\0" * 100)
                assert stream.statistics().timeline_samples == 1600
                with trio.testing.assert_checkpoints():
                    await stream.push(b"")
        assert stream.ended is not None
        assert stream.ended.audio_ms == 106

    async def test_try_push_hands_audio_over_without_a_checkpoint(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """try_push: no checkpoint, the frame is on the timeline when it returns True, a
        refusal is pushed instead, and the words come out as with push."""
        pcm = synthesize(SENTENCES[:2], 16000)
        refused = 0
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:
                with trio.testing.assert_no_checkpoints():
                    assert stream.try_push(np.ones(1600, dtype=np.int16))
                    assert stream.try_push(b"")
                assert stream.statistics().timeline_samples == 1600

                async def produce() -> None:
                    nonlocal refused
                    for start in range(0, len(pcm), 1600):
                        chunk = pcm[start : start + 1600]
                        if not stream.try_push(chunk):
                            refused += 1
                            await stream.push(chunk)
                        await trio.sleep(0.1)
                    await stream.end_input()
                    with pytest.raises(trio.ClosedResourceError):
                        stream.try_push(b"\0\0")

                finals: list[str] = []
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(produce)
                    async for event in stream.events():
                        if isinstance(event, Final):
                            finals.append(event.text.rstrip(".").lower())
        assert finals == SENTENCES[:2]
        assert stream.ended is not None and stream.ended.status == "ok"
        assert stream.statistics().pushed_s == pytest.approx(0.1 + len(pcm) / 16000)
        assert refused < len(pcm) // 1600 // 2  # the synchronous path carried most of it

    async def test_try_push_of_bytes_at_the_session_rate_is_exact(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Mono int16 bytes at the session's rate take the one-frame path when they are a
        whole frame and the general one otherwise (a split frame, a bytearray, another rate,
        stereo): the timeline, the pushed time and the words are push's, and odd bytes or
        a closed input still raise."""
        pcm = synthesize(SENTENCES[:2], 16000).astype("<i2").tobytes()
        frames = [pcm[i : i + 3200] for i in range(0, len(pcm), 3200)]
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:

                async def produce() -> None:
                    for k, frame in enumerate(frames):
                        pieces: list[tuple[bytes | bytearray, int, int]] = [(frame, 16000, 1)]
                        if k % 7 == 3:  # a frame in two pieces (the rechunker holds one)
                            pieces = [(frame[:1000], 16000, 1), (frame[1000:], 16000, 1)]
                        elif k % 7 == 5:  # a bytearray: copied, the general path
                            pieces = [(bytearray(frame), 16000, 1)]
                        for piece, rate, channels in pieces:
                            if not stream.try_push(piece, rate=rate, channels=channels):
                                await stream.push(piece, rate=rate, channels=channels)
                        await trio.sleep(0.1)
                    with pytest.raises(InputError):
                        stream.try_push(b"\0\0\0")
                    await stream.end_input()
                    with pytest.raises(trio.ClosedResourceError):
                        stream.try_push(frames[0])

                finals: list[str] = []
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(produce)
                    async for event in stream.events():
                        if isinstance(event, Final):
                            finals.append(event.text.rstrip(".").lower())
        assert finals == SENTENCES[:2]
        stats = stream.statistics()
        assert stats.timeline_samples == len(pcm) // 2
        assert stats.pushed_s == pytest.approx(len(pcm) / 2 / 16000)
        assert stream.ended is not None and stream.ended.status == "ok"

    def test_mono_int16_stays_int16(self) -> None:
        """Mono int16 becomes a PcmBlock of the same bytes (a bytearray is copied); the
        rest is downmixed to float32."""
        buf = bytearray(np.arange(-3, 3, dtype="<i2").tobytes())
        block = pushed_block(buf, 16000, 1)
        assert isinstance(block, PcmBlock)
        buf[:2] = b"\0\0"
        assert block.samples.tolist() == [-3, -2, -1, 0, 1, 2]
        assert isinstance(pushed_block(np.zeros(4, dtype=np.int16), 8000, 1), PcmBlock)
        assert isinstance(pushed_block(np.zeros(4, dtype=np.int16), 8000, 2), RawBlock)
        assert isinstance(pushed_block(np.zeros(4, dtype=np.float32), 8000, 1), RawBlock)
        with pytest.raises(InputError, match="int16"):
            pushed_block(b"\0\0\0", 16000, 1)

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


EPOCH = 1_700_000_000.0  # 2023-11-14T22:13:20Z


async def paced(stream: Stream, pcm: np.ndarray, chunk: int = 1600) -> None:
    """Push int16 ``pcm`` at real-time pace (virtual time under autojump)."""
    for start in range(0, len(pcm), chunk):
        await stream.push(pcm[start : start + chunk].tobytes())
        await trio.sleep(chunk / 16000)


async def talk_skip_talk(stream: Stream, skip: int, **kw: object) -> list[Event]:
    """ "good morning", a skip of ``skip`` samples, "thank you"; every event read."""
    events: list[Event] = []

    async def produce() -> None:
        await paced(stream, synthesize(["good morning"], 16000))
        await stream.skip(skip, **kw)  # type: ignore[arg-type]
        await paced(stream, synthesize(["thank you"], 16000))
        await stream.end_input()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        events.extend([event async for event in stream.events()])
    return events


@pytest.mark.usefixtures("any_transport")  # both WebSocket client transports
class TestSkipDrainStatistics:
    async def test_started_event_carries_the_wall_clock(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The first event is StreamStarted with the injected wall clock as ISO-8601 UTC."""
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            config = StreamConfig(session=session(), source="room-1")
            async with open_stream(config, dial=net.dial, clock=lambda: EPOCH) as stream:
                await stream.end_input()
                events = [e async for e in stream.events()]
        started = events[0]
        assert isinstance(started, StreamStarted)
        assert (started.source, started.rate, started.stream) == ("room-1", 16000, "embed")
        assert started.started_at == "2023-11-14T22:13:20.000Z"
        assert started.endpoint == "ws://sim/api-ws/v1/inference"
        assert isinstance(events[-1], StreamEnded)

    async def test_a_skip_keeps_later_results_on_wall_time(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A minute skipped mid-task: the second sentence lands a minute later on the global
        timeline, the span is an AudioSkipped, nothing is lost."""
        first = len(synthesize(["good morning"], 16000))
        minute = 60 * 16000
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:
                events = await talk_skip_talk(stream, minute, reason="paused")
        finals = [e for e in events if isinstance(e, Final)]
        assert [f.text.rstrip(".").lower() for f in finals] == ["good morning", "thank you"]
        expected = first + minute + LEAD_IN_MS * 16
        assert abs(finals[1].start - expected) < 1600
        assert finals[0].end <= first
        (skipped,) = [e for e in events if isinstance(e, AudioSkipped)]
        assert (skipped.start, skipped.end, skipped.reason) == (first, first + minute, "paused")
        ended = events[-1]
        assert isinstance(ended, StreamEnded)
        assert (ended.status, ended.audio_lost_ms, ended.audio_skipped_ms) == ("ok", 0, 60000)
        assert ended.audio_ms >= (first + minute) // 16

    async def test_a_replay_never_joins_audio_across_a_skip(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The connection drops after the skip: the new task replays from the commit point
        across the hole, and the second sentence still lands after it, once."""
        first = len(synthesize(["good morning"], 16000))
        plan = parse_fault_spec("drop:after=25;first=1")
        sim = SimConfig(api_keys=["sk"])
        async with open_memory_net(sim, ScriptedRecognizer.tone(), faults=plan) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:
                events = await talk_skip_talk(stream, 30 * 16000, reason="device", lost=True)
        assert [e for e in events if isinstance(e, Reconnecting)]
        finals = [e for e in events if isinstance(e, Final)]
        assert [f.text.rstrip(".").lower() for f in finals] == ["good morning", "thank you"]
        assert abs(finals[1].start - (first + 30 * 16000 + LEAD_IN_MS * 16)) < 1600
        (gap,) = [e for e in events if isinstance(e, AudioGap)]
        assert (gap.start, gap.end, gap.reason) == (first, first + 30 * 16000, "device")
        ended = events[-1]
        assert isinstance(ended, StreamEnded)
        assert (ended.status, ended.audio_lost_ms) == ("partial", 30000)

    async def test_drain_stops_retries(self, autojump_clock: trio.testing.MockClock) -> None:
        """With drain set, a finish the server never answers is reported, not retried."""
        plan = parse_fault_spec("no-task-finished")
        drain = trio.Event()
        async with open_memory_net(
            SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone(), faults=plan
        ) as net:
            config = StreamConfig(session=session(finish_timeout_s=5.0))
            async with open_stream(config, dial=net.dial, drain=drain) as stream:
                await paced(stream, synthesize(["good morning"], 16000))
                drain.set()
                t0 = trio.current_time()
        assert trio.current_time() - t0 < 6
        assert stream.ended is not None
        assert (stream.ended.reconnects, stream.ended.status) == (0, "partial")

    async def test_statistics_is_a_frozen_snapshot(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Pushed and skipped time, the timeline, the session's counters, queue depths."""
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:
                await paced(stream, synthesize(["good morning"], 16000))
                await stream.skip(8000, rate=8000)
                await stream.push(b"\0\0" * 160)
                await trio.sleep(1)
                stats = stream.statistics()
                with pytest.raises(InputError, match="skip -1"):
                    await stream.skip(-1)
        assert isinstance(stats, StreamStatistics)
        pushed = len(synthesize(["good morning"], 16000)) + 160
        assert stats.pushed_s == pytest.approx(pushed / 16000)
        assert stats.skipped_s == pytest.approx(1.0)
        # The last 160 samples wait in the resampler for a whole frame.
        assert stats.timeline_samples == pushed - 160 + 16000
        assert (stats.rate, stats.tasks_opened, stats.reconnects, stats.finals) == (16000, 1, 0, 1)
        assert stats.audio_lost_ms == 0
        assert stats.buffered_samples <= stats.max_buffered_samples
        assert min(stats.push_queue, stats.frame_queue, stats.event_queue) >= 0
        with pytest.raises(AttributeError):
            stats.finals = 2  # type: ignore[misc]


def engine_tasks() -> dict[str, int]:
    """The engine's tasks under this one, by ``Class.method`` (the simulator's and the
    transports' own tasks aside)."""
    names: dict[str, int] = {}
    todo = [
        task
        for nursery in trio.lowlevel.current_task().child_nurseries
        for task in nursery.child_tasks
    ]
    while todo:
        task = todo.pop()
        if task.name.startswith(("engine.", "adapters.dashscope.")):
            name = ".".join(task.name.rsplit(".", 2)[-2:])
            names[name] = names.get(name, 0) + 1
        for child in task.child_nurseries:
            todo.extend(child.child_tasks)
    return names


def _engine_task_list() -> list[trio.lowlevel.Task]:
    todo = [
        task
        for nursery in trio.lowlevel.current_task().child_nurseries
        for task in nursery.child_tasks
    ]
    found = []
    while todo:
        task = todo.pop()
        if task.name.startswith(("engine.", "adapters.dashscope.")):
            found.append(task)
        for child in task.child_nurseries:
            todo.extend(child.child_tasks)
    return found


def holding_a_task_status() -> list[str]:
    """The engine tasks whose stack holds a trio task status (which holds the temporary
    nursery of the ``nursery.start`` that started them)."""
    holders = []
    for task in _engine_task_list():
        coro: object = task.coro
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None and any(
                type(value).__name__ == "_TaskStatus" for value in frame.f_locals.values()
            ):
                holders.append(task.name)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return holders


@pytest.mark.usefixtures("any_transport")  # both WebSocket client transports
class TestTasks:
    async def test_a_live_stream_runs_four_tasks(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Per stream: the session, the resampler stage's lifetime, the connection (its
        owner is its reader and liveness watch) and the result consumer; no relay task."""
        pcm = synthesize(SENTENCES, 16000).tobytes()
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:
                await stream.push(pcm[: 2 * 32000])
                await trio.sleep(0.5)
                assert engine_tasks() == {
                    "session.run": 1,
                    "Resampler.run": 1,
                    "Connection.run": 1,
                    "Pump._consume": 1,
                }

    async def test_no_task_of_a_live_stream_keeps_its_start_alive(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Once started, no engine task holds trio's task status: it would keep the start's
        temporary nursery (~1 KB) alive as long as the stream (#11)."""
        pcm = synthesize(SENTENCES, 16000).tobytes()
        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(StreamConfig(session=session()), dial=net.dial) as stream:
                await stream.push(pcm[: 2 * 32000])
                await trio.sleep(0.5)
                assert len(_engine_task_list()) == 4
                assert holding_a_task_status() == []


@pytest.mark.usefixtures("any_transport")  # both WebSocket client transports
class TestProducers:
    async def test_a_producer_is_the_source_and_its_facts_reach_the_end(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A producer's audio is transcribed; its gap and its error are folded once into
        the StreamEnded, which comes last; ``StreamStarted.source`` is what it opened."""
        mono = synthesize(SENTENCES, 16000).astype(np.float32) / 32768.0

        async def produce(feed: Feed, *, task_status: trio.TaskStatus[str | None]) -> None:
            async with feed.audio, feed.events:
                task_status.started("device:fake")
                for start in range(0, len(mono), 1600):
                    await feed.audio.send(RawBlock(mono[start : start + 1600], 16000))
                    await trio.sleep(0.1)
                await feed.events.send(AudioGap(0, 1600, "device", stream="embed"))
                await feed.events.send(StreamError("device", "gone", stream="embed"))

        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with open_stream(
                StreamConfig(session=session()), producer=produce, dial=net.dial
            ) as stream:
                with pytest.raises(trio.ClosedResourceError):
                    await stream.push(b"\0\0")  # the producer is the only source
                events = [e async for e in stream.events()]
        assert isinstance(events[0], StreamStarted) and events[0].source == "device:fake"
        assert [e.text.rstrip(".").lower() for e in events if isinstance(e, Final)] == SENTENCES
        end = events[-1]
        assert isinstance(end, StreamEnded) and end is stream.ended
        assert (end.status, end.audio_lost_ms) == ("partial", 100)
        assert sum(isinstance(e, StreamEnded) for e in events) == 1

    async def test_a_producer_that_cannot_start_connects_nothing(self) -> None:
        """The producer's error leaves open_stream before the session dials."""

        async def broken(feed: Feed, *, task_status: trio.TaskStatus[str | None]) -> None:
            raise InputError("no such file: x.wav")

        async def dial(*_args: object, **_kwargs: object) -> object:
            raise AssertionError("nothing may connect")

        with pytest.raises(InputError, match="no such file"):
            async with open_stream(
                StreamConfig(session=session()),
                producer=broken,
                dial=dial,  # type: ignore[arg-type]
            ):
                pass

    def test_the_end_is_completed_from_the_input_side(self) -> None:
        """An ok session becomes partial by the input's gaps (summed per rate) or
        errors; a failed one stays failed; the timeline comes from the resampler."""
        ledger = InputLedger()
        ledger.observe(AudioGap(0, 160, "device", rate=16000))
        ledger.observe(AudioGap(500, 660, "capture-overflow", rate=16000))
        resampling = ResamplerStats()
        resampling.position, resampling.skipped_samples = 32000, 8000
        ended = StreamEnded("ok", audio_lost_ms=5, audio_ms=1000)
        done = complete_end(ended, ledger, resampling, 16000)
        assert (done.status, done.audio_lost_ms) == ("partial", 25)
        assert (done.audio_ms, done.audio_skipped_ms) == (2000, 500)
        assert complete_end(StreamEnded("failed"), ledger, resampling, 16000).status == "failed"
        errors = InputLedger()
        errors.observe(StreamError("input", "truncated"))
        clean = complete_end(StreamEnded("ok"), errors, ResamplerStats(), 16000)
        assert (clean.status, clean.audio_lost_ms) == ("partial", 0)
        assert (
            complete_end(StreamEnded("ok"), InputLedger(), ResamplerStats(), 16000).status == "ok"
        )


class TestHostWrappers:
    def test_threaded_stream(self) -> None:
        """Push from a plain thread, read events on it; the embedded simulator answers."""
        pcm = synthesize(SENTENCES, 16000)
        config = StreamConfig(session=session(), simulator="scripted")
        with ThreadedStream(config) as stream:
            stream.skip(1600, reason="paused")
            for start in range(0, len(pcm), 1600):
                stream.push(pcm[start : start + 1600].tobytes())
            assert stream.statistics().pushed_s == pytest.approx(len(pcm) / 16000)
            stream.drain()
            stream.end_input()
            events = list(stream.events(timeout=60))
        finals = [e.text.rstrip(".").lower() for e in events if isinstance(e, Final)]
        assert finals == SENTENCES
        assert isinstance(events[0], StreamStarted)
        assert [(e.start, e.end) for e in events if isinstance(e, AudioSkipped)] == [(0, 1600)]
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
@pytest.mark.cpu_heavy  # pocketsphinx transcribes the demo on the embedded simulator
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
