"""The inference endpoint end to end over memory streams, in virtual time."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from conftest import deadline
from simclient import (
    AUTH,
    RATE,
    GateRecognizer,
    SimClient,
    events_named,
    finals,
    frames,
    loud,
    sentences,
    silence,
    tone_pcm,
    wav_bytes,
)

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import MemoryNet, SimConfig, open_memory_net


class FeedSizes:
    """A recognizer that notes the size of every feed of its sessions."""

    def __init__(self, inner: ScriptedRecognizer) -> None:
        self.name = inner.name
        self._inner = inner
        self.sizes: list[int] = []

    async def open_session(self, *, sample_rate: int, language: str | None) -> FeedSizes._Session:
        return self._Session(
            await self._inner.open_session(sample_rate=sample_rate, language=language), self.sizes
        )

    async def aclose(self) -> None:
        await self._inner.aclose()

    class _Session:
        def __init__(self, inner: Any, sizes: list[int]) -> None:
            self._inner = inner
            self._sizes = sizes

        async def feed(self, pcm: bytes) -> Any:
            self._sizes.append(len(pcm))
            return await self._inner.feed(pcm)

        async def flush(self) -> Any:
            return await self._inner.flush()

        async def aclose(self) -> None:
            await self._inner.aclose()


@pytest.fixture(name="net")
async def _net() -> AsyncIterator[MemoryNet]:
    async with open_memory_net(SimConfig(), ScriptedRecognizer.tone()) as net:
        yield net


async def connect(net: MemoryNet) -> SimClient:
    return SimClient(await net.connect(headers=AUTH))


def duration_s(pcm: bytes) -> int:
    return math.ceil(len(pcm) / (2 * RATE))


class TestTask:
    @deadline(60)
    async def test_full_task(self, net: MemoryNet, autojump_clock: trio.testing.MockClock) -> None:
        """task-started, partials, finals in order, then task-finished with usage."""
        client = await connect(net)
        audio = tone_pcm()
        events = await client.transcribe(audio)
        names = [e["header"]["event"] for e in events]
        assert names[-1] == "task-finished"
        assert set(names[:-1]) == {"result-generated"}
        assert finals(events) == ["Hello world.", "The weather today is sunny and warm."]
        said = sentences(events)
        assert all(s["sentence_id"] in (1, 2) for s in said)
        assert all(s["heartbeat"] is False for s in said)
        partials = [s for s in said if not s["sentence_end"]]
        assert partials, "expected partial results"
        assert all(s["end_time"] is None for s in partials)
        assert all(isinstance(s["end_time"], int) for s in said if s["sentence_end"])
        first_final = next(i for i, s in enumerate(said) if s["sentence_end"])
        assert said[0]["sentence_id"] == 1
        assert said[first_final]["sentence_id"] == 1
        words = said[first_final]["words"]
        assert [(w["text"], w["punctuation"]) for w in words] == [("Hello", ""), ("world", ".")]
        assert all(w["begin_time"] < w["end_time"] for w in words)
        for event in events_named(events, "result-generated"):
            has_usage = "usage" in event["payload"]
            assert has_usage == event["payload"]["output"]["sentence"]["sentence_end"]
        finished = events[-1]
        assert finished["header"] == {"task_id": "t1", "event": "task-finished", "attributes": {}}
        assert finished["payload"] == {"output": {}, "usage": {"duration": duration_s(audio)}}

    @deadline(60)
    async def test_batched_feeding_gives_the_same_finals(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """feed_batch_ms: the recognizer gets batches of at least that much audio (but the
        last), and the finals and their times do not change."""
        results = []
        for batch_ms in (0, 300):
            recognizer = FeedSizes(ScriptedRecognizer.tone())
            async with open_memory_net(SimConfig(feed_batch_ms=batch_ms), recognizer) as net:
                events = await (await connect(net)).transcribe(tone_pcm())
            finals_at = [(s["text"], s["end_time"]) for s in sentences(events) if s["sentence_end"]]
            results.append((finals_at, recognizer.sizes))
        (unbatched, sizes0), (batched, sizes1) = results
        assert batched == unbatched
        assert [text for text, _ in batched] == [
            "Hello world.",
            "The weather today is sunny and warm.",
        ]
        assert min(sizes0[:-1]) < 300 * 32  # paced audio: fed as it comes
        assert min(sizes1[:-1]) >= 300 * 32  # 16 kHz s16: 32 bytes per ms
        assert sum(sizes1) == sum(sizes0)

    @deadline(120)
    async def test_connection_reuse(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After task-finished the same socket runs another task; sentence ids restart at 1."""
        client = await connect(net)
        first = await client.transcribe(tone_pcm(["hello world"]), "a1")
        second = await client.transcribe(tone_pcm(["good morning"]), "a2")
        assert finals(first) == ["Hello world."]
        assert finals(second) == ["Good morning."]
        assert {s["sentence_id"] for s in sentences(second)} == {1}
        assert {e["header"]["task_id"] for e in second} == {"a2"}

    @deadline(120)
    async def test_task_id_reused_on_a_new_connection(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The 1.x SDK reuses its task id for every start(); each connection accepts it."""
        for _ in range(2):
            client = await connect(net)
            events = await client.transcribe(tone_pcm(["hello world"]), "same-id")
            assert finals(events) == ["Hello world."]
            await client.ws.aclose()

    @deadline(60)
    async def test_finish_for_an_unknown_task_is_ignored(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """No reply and no close, whether idle or during a task."""
        client = await connect(net)
        await client.finish("nobody")
        await client.run_task("t1")
        assert (await client.recv())["header"]["event"] == "task-started"
        await client.finish("someone-else")
        await client.send_audio(tone_pcm(["hello world"]), pace=True)
        await client.finish("t1")
        events = await client.until_end()
        assert finals(events) == ["Hello world."]
        assert events[-1]["header"]["event"] == "task-finished"

    @deadline(60)
    async def test_audio_before_task_started(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A client that does not wait for task-started loses nothing."""
        client = await connect(net)
        audio = tone_pcm(["hello world"])
        await client.run_task("t1")
        await client.send_audio(audio, pace=False)
        await client.finish("t1")
        events = [await client.recv(), *await client.until_end()]
        assert events[0]["header"]["event"] == "task-started"
        assert finals(events) == ["Hello world."]

    @deadline(60)
    async def test_wav_header_is_stripped(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """format=wav with a whole file (12 800-byte chunks like call(file)) times like pcm."""
        pcm = tone_pcm(["hello world"])
        as_pcm = await (await connect(net)).transcribe(pcm, "p", pace=False)
        client = await connect(net)
        await client.run_task("w", format="wav")
        assert (await client.recv())["header"]["event"] == "task-started"
        for chunk in frames(wav_bytes(pcm), 12800):
            await client.ws.send_message(chunk)
        await client.finish("w")
        as_wav = await client.until_end()
        assert [s for s in sentences(as_wav) if s["sentence_end"]] == [
            s for s in sentences(as_pcm) if s["sentence_end"]
        ]
        assert as_wav[-1]["payload"]["usage"] == {"duration": duration_s(pcm)}

    @deadline(60)
    async def test_null_parameters_and_other_rates(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """null-valued and unknown parameters are fine; paraformer-v2 takes 8–48 kHz."""
        client = await connect(net)
        await client.run_task(
            "t1", sample_rate=44100, heartbeat=None, language_hints=None, source_language=None
        )
        assert (await client.recv())["header"]["event"] == "task-started"
        await client.finish("t1")
        assert (await client.recv())["payload"] == {"output": {}, "usage": {"duration": 0}}


class TestRejections:
    @pytest.mark.parametrize(
        ("model", "parameters", "code"),
        [
            ("no-such-model", {}, "Model.NotExist"),
            ("gummy-realtime-v1", {"translation_enabled": True}, "InvalidParameter"),
            ("qwen3.5-livetranslate-flash-realtime", {}, "InvalidParameter"),
            ("paraformer-realtime-v2", {"format": "mp3"}, "UNSUPPORTED_FORMAT"),
            ("paraformer-realtime-v2", {"format": None}, "UNSUPPORTED_FORMAT"),
            ("fun-asr-realtime", {"sample_rate": 8000}, "InvalidParameter"),
            ("paraformer-realtime-8k-v2", {"sample_rate": 16000}, "InvalidParameter"),
            ("paraformer-realtime-v2", {"sample_rate": 96000}, "InvalidParameter"),
            ("paraformer-realtime-v2", {"sample_rate": "16000"}, "InvalidParameter"),
        ],
    )
    @deadline(10)
    async def test_invalid_run_task(
        self,
        net: MemoryNet,
        autojump_clock: trio.testing.MockClock,
        model: str,
        parameters: dict[str, Any],
        code: str,
    ) -> None:
        """task-failed with the code, a message, an empty payload; then the server closes."""
        client = await connect(net)
        await client.run_task("bad", model, **parameters)
        failed = await client.recv()
        header = failed["header"]
        assert (header["event"], header["task_id"], header["error_code"]) == (
            "task-failed",
            "bad",
            code,
        )
        assert header["error_message"]
        assert failed["payload"] == {}
        assert await client.closed()

    @deadline(10)
    async def test_wrong_task_group(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await connect(net)
        frame = {
            "header": {"action": "run-task", "task_id": "x", "streaming": "duplex"},
            "payload": {
                "task_group": "audio",
                "task": "tts",
                "function": "SpeechSynthesizer",
                "model": "paraformer-realtime-v2",
                "parameters": {"format": "pcm", "sample_rate": RATE},
            },
        }
        await client.send_json(frame)
        assert (await client.recv())["header"]["error_code"] == "InvalidParameter"

    @deadline(10)
    async def test_bad_json_during_a_task(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Garbage in a task: task-failed InvalidParameter, then close."""
        client = await connect(net)
        await client.run_task("t1")
        await client.recv()
        await client.ws.send_message("{not json")
        failed = await client.recv()
        assert failed["header"]["event"] == "task-failed"
        assert failed["header"]["error_code"] == "InvalidParameter"
        assert await client.closed()

    @deadline(10)
    async def test_second_run_task_while_streaming(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await connect(net)
        await client.run_task("t1")
        await client.recv()
        await client.run_task("t2")
        failed = await client.recv()
        assert (failed["header"]["task_id"], failed["header"]["error_code"]) == (
            "t1",
            "InvalidParameter",
        )

    @deadline(10)
    async def test_bad_json_outside_a_task_closes(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With no task to fail, the server closes with 1008 (policy violation)."""
        client = await connect(net)
        await client.ws.send_message("[]")
        assert await client.closed()
        assert client.ws.closed is not None
        assert client.ws.closed.code == 1008

    @deadline(10)
    async def test_wav_at_another_rate(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await connect(net)
        await client.run_task("t1", format="wav")
        await client.recv()
        await client.ws.send_message(wav_bytes(silence(100, 8000), rate=8000))
        assert (await client.recv())["header"]["error_code"] == "UNSUPPORTED_FORMAT"


class TestTimers:
    @deadline(60)
    async def test_idle_timeout(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """No frame for 23 s after the last one: task-failed CLIENT_ERROR, then close."""
        client = await connect(net)
        await client.run_task("t1")
        await client.recv()
        await client.send_audio(loud(500), pace=True)
        await client.ws.send_message(loud(100))
        last_frame = trio.current_time()
        failed = await client.recv()
        assert trio.current_time() - last_frame == pytest.approx(23.0)
        assert failed["header"]["error_code"] == "CLIENT_ERROR"
        assert failed["header"]["error_message"] == "request timeout after 23 seconds."
        assert await client.closed()

    @deadline(60)
    async def test_no_idle_timeout_without_a_task(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Between tasks nothing times out; the next run-task still works."""
        client = await connect(net)
        await trio.sleep(40)
        await client.run_task("t1")
        assert (await client.recv())["header"]["event"] == "task-started"

    @deadline(200)
    async def test_silence_closes_without_heartbeat(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """60 s of silent audio and heartbeat off: the server drops the connection."""
        client = await connect(net)
        await client.run_task("t1")
        await client.recv()
        start = trio.current_time()
        with trio.move_on_after(120):
            await client.send_audio(loud(300) + silence(100_000), pace=True)
        assert await client.closed()
        assert trio.current_time() - start == pytest.approx(60.3, abs=0.15)

    @deadline(200)
    async def test_heartbeat_keeps_silence_alive(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """heartbeat: true — heartbeat results every 10 s of silence, no close after 60 s."""
        client = await connect(net)
        await client.run_task("t1", heartbeat=True)
        await client.recv()

        async def upload() -> None:
            await client.send_audio(silence(75_000), pace=True)
            await client.finish("t1")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(upload)
            events = await client.until_end()
        beats = sentences(events)
        assert len(beats) == 7
        assert all(
            s == {**s, "sentence_id": 0, "heartbeat": True, "end_time": None, "text": ""}
            for s in beats
        )
        assert all(s["words"] == [] and s["sentence_end"] is False for s in beats)
        assert [s["begin_time"] // 1000 for s in beats] == [10, 20, 30, 40, 50, 60, 70]
        assert events[-1]["header"]["event"] == "task-finished"


class TestRobustness:
    @deadline(30)
    async def test_pings_answered_while_the_recognizer_is_stuck(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The reader keeps reading while feed() blocks, so pings get pongs."""
        recognizer = GateRecognizer()
        async with open_memory_net(SimConfig(), recognizer) as net:
            client = await connect(net)
            await client.run_task("t1")
            await client.recv()
            await client.send_audio(loud(3000), pace=False)
            with trio.fail_after(1):
                await client.ws.ping(b"are you there")
            assert recognizer.fed == 1
            recognizer.release.set()
            await client.finish("t1")
            assert (await client.until_end())[-1]["header"]["event"] == "task-finished"

    @deadline(30)
    async def test_audio_queue_overflow(self, autojump_clock: trio.testing.MockClock) -> None:
        """Far ahead of the recognizer: task-failed Throttling, the reader never blocked."""
        config = SimConfig(max_audio_queue_s=1.0)
        async with open_memory_net(config, GateRecognizer()) as net:
            client = await connect(net)
            await client.run_task("t1")
            await client.recv()
            await client.send_audio(loud(3000), pace=False)
            failed = await client.recv()
            assert failed["header"]["error_code"] == "Throttling"
            assert await client.closed()

    @deadline(30)
    async def test_recognizer_failure(self, autojump_clock: trio.testing.MockClock) -> None:
        """An exception in the recognizer: task-failed InternalError, session closed."""
        recognizer = GateRecognizer(fail_on_feed=1)
        async with open_memory_net(SimConfig(), recognizer) as net:
            client = await connect(net)
            await client.run_task("t1")
            await client.recv()
            await client.send_audio(loud(300), pace=False)
            failed = await client.recv()
            assert failed["header"]["error_code"] == "InternalError"
            assert "decoder exploded" in failed["header"]["error_message"]
            assert await client.closed()
        assert recognizer.closed_sessions == 1

    @deadline(30)
    async def test_client_vanishes_mid_task(self, autojump_clock: trio.testing.MockClock) -> None:
        """A client that closes without finish-task: the session is still closed."""
        recognizer = GateRecognizer()
        async with open_memory_net(SimConfig(), recognizer) as net:
            client = await connect(net)
            await client.run_task("t1")
            await client.recv()
            await client.send_audio(loud(300), pace=False)
            await client.ws.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert recognizer.closed_sessions == 1

    @deadline(60)
    async def test_task_log_lines(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """One line per task start and end, bound to conn and task_id; the key never logged."""
        captured = structlog.testing.LogCapture()
        structlog.configure(processors=[structlog.contextvars.merge_contextvars, captured])
        client = await connect(net)
        await client.transcribe(tone_pcm(["hello world"]), "logged")
        lines = [e for e in captured.entries if e.get("task_id") == "logged"]
        assert [e["event"] for e in lines] == ["task started", "task ended"]
        end = lines[1]
        assert end["outcome"] == "finished"
        assert end["finals"] == 1
        assert end["frames_in"] > 10
        assert isinstance(end["conn"], int)
        assert "sk-test" not in json.dumps(captured.entries, default=str)
