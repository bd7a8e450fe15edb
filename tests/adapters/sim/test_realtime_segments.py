"""The realtime endpoint's speech segments end to end over memory streams, in virtual time:
VAD events, ASR, the translation response and its voice, manual turns, session.finish."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from conftest import deadline
from rtclient import (
    TRANSLATOR,
    ZH,
    RtClient,
    of_type,
    open_client,
    segments,
    types,
    voice_pcm,
    zh,
)
from simclient import GateRecognizer, loud, silence, tone_pcm

from adapters.dashscope import realtime_messages as m
from adapters.dashscope.realtime_session import (
    ServerVad,
    SessionSettings,
    TranscriptionSettings,
    TranslationSettings,
)
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim import MemoryNet, SimConfig, make_recognizer, open_memory_net
from adapters.sim.realtime_voice import UNIT_MS, VOICE_RATE, units
from adapters.sim.realtime_voice import synthesize as speak

TWO_SEGMENTS = (
    tone_pcm(["hello world"]) + silence(1200) + tone_pcm(["good morning"]) + silence(1000)
)
"""Speech 500–900 ms and 3 500–3 900 ms; the default VAD hears two segments."""
RESPONSE_END = [
    "response.audio_transcript.done",
    "response.audio.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
]


@pytest.fixture(name="net")
async def _net() -> AsyncIterator[MemoryNet]:
    async with open_memory_net(
        SimConfig(), ScriptedRecognizer.tone(), translator=TRANSLATOR
    ) as net:
        yield net


async def configured(net: MemoryNet, settings: SessionSettings = ZH) -> RtClient:
    client = await open_client(net)
    await client.configure(settings)
    return client


def check_segment(frames: list[dict[str, Any]], *, audio: bool = True) -> None:
    """One segment's frames in §5.4 order, with consistent ids."""
    kinds = types(frames)
    item_id = frames[0]["item_id"]
    assert kinds[0] == "input_audio_buffer.speech_started"
    created = of_type(frames, "conversation.item.created")
    assert len(created) == 1 and created[0]["previous_item_id"] == item_id
    translation_item = created[0]["item"]["id"]
    (response,) = [f["response"] for f in of_type(frames, "response.created")]
    assert response["status"] == "in_progress"
    i = kinds.index("conversation.item.created")
    assert kinds[i : i + 4] == [
        "conversation.item.created",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index(
        "conversation.item.input_audio_transcription.completed"
    )
    assert kinds.index("conversation.item.input_audio_transcription.completed") < kinds.index(
        "response.audio_transcript.done" if audio else "response.text.done"
    )
    end = RESPONSE_END if audio else ["response.text.done", *RESPONSE_END[2:]]
    assert kinds[-len(end) :] == end
    for frame in frames:
        if frame["type"].startswith(("input_audio_buffer.", "conversation.item.input")):
            assert frame["item_id"] == item_id
        elif frame["type"].startswith("response.") and "response_id" in frame:
            assert frame["response_id"] == response["id"]
            if "item_id" in frame:
                assert frame["item_id"] == translation_item
            assert frame.get("output_index", 0) == 0 and frame.get("content_index", 0) == 0
    done = of_type(frames, "response.done")[0]["response"]
    assert done["id"] == response["id"] and done["status"] == "completed"
    assert done["output"][0]["id"] == translation_item
    assert done["usage"]["total_tokens"] > 0


class TestServerVad:
    @deadline(60)
    async def test_two_segments(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Each segment: speech events, ASR, a translation response; ids consistent, §5.4 order."""
        client = await configured(net)
        frames = await client.talk(TWO_SEGMENTS)
        assert frames[-1]["type"] == "session.finished"
        per_item = segments(frames[:-1])
        assert len(per_item) == 2
        first, second = per_item.values()
        for segment in (first, second):
            check_segment(segment)
        starts = [f["audio_start_ms"] for f in of_type(frames, "input_audio_buffer.speech_started")]
        ends = [f["audio_end_ms"] for f in of_type(frames, "input_audio_buffer.speech_stopped")]
        assert starts == [200, 3200]  # 300 ms of padding before the first loud frame
        assert ends == [1900, 4900]  # 1 000 ms of silence after the last one
        completed = of_type(frames, "conversation.item.input_audio_transcription.completed")
        assert [(f["transcript"], f["language"], f["emotion"]) for f in completed] == [
            ("Hello world.", "en", "neutral"),
            ("Good morning.", "en", "neutral"),
        ]
        finals = of_type(frames, "response.audio_transcript.done")
        assert [f["transcript"] for f in finals] == ["你好世界。", "早上好。"]

    @deadline(60)
    async def test_snapshots_grow_and_translation_starts_early(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """ASR and translation snapshots are text + stash; the response opens before speech stops."""
        client = await configured(net)
        frames = await client.talk(tone_pcm(["hello world"]) + silence(200))
        asr = of_type(frames, "conversation.item.input_audio_transcription.text")
        assert [(f["text"], f["stash"]) for f in asr] == [
            ("", "Hello"),
            ("", "Hello world"),
            ("Hello world.", ""),
        ]
        translations = of_type(frames, "response.audio_transcript.text")
        assert [(f["text"], f["stash"]) for f in translations] == [
            ("你好", "世"),
            ("你好世界。", ""),
        ]
        kinds = types(frames)
        assert kinds.index("response.created") < kinds.index("input_audio_buffer.speech_stopped")

    @deadline(60)
    async def test_voice_is_24khz_pcm_of_the_translation(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Deltas of ≤ 200 ms decode to the stand-in voice: UNIT_MS per unit, deterministic."""
        client = await configured(net)
        frames = await client.talk(TWO_SEGMENTS)
        for done in of_type(frames, "response.done"):
            response_id = done["response"]["id"]
            pcm = voice_pcm(frames, response_id)
            text = done["response"]["output"][0]["content"][0]["transcript"]
            assert len(pcm) == len(units(text)) * UNIT_MS * VOICE_RATE * 2 // 1000
            assert pcm == speak(units(text))
        deltas = of_type(frames, "response.audio.delta")
        sizes = [len(voice_pcm([f])) for f in deltas]
        assert max(sizes) == 200 * VOICE_RATE * 2 // 1000
        assert all(size % 2 == 0 for size in sizes)

    @deadline(60)
    async def test_chunking_does_not_matter(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Odd-sized appends sent in a burst give the same speech events and texts."""
        paced = await (await configured(net)).talk(TWO_SEGMENTS)
        client = await configured(net)
        async with trio.open_nursery() as nursery:

            async def upload() -> None:
                await client.append(TWO_SEGMENTS, pace=False, chunk=999)
                await client.send(m.FinishSession())

            nursery.start_soon(upload)
            burst = await client.until("session.finished")

        def summary(frames: list[dict[str, Any]]) -> list[Any]:
            keep = ("audio_start_ms", "audio_end_ms", "transcript")
            return [
                (f["type"], *(f[k] for k in keep if k in f)) for f in frames if set(keep) & f.keys()
            ]

        assert summary(burst) == summary(paced)

    @deadline(60)
    async def test_eight_khz(self, net: MemoryNet, autojump_clock: trio.testing.MockClock) -> None:
        client = await configured(net, SessionSettings(sample_rate=8000))
        audio = synthesize(["good morning"], 8000).tobytes() + silence(1000, 8000)
        frames = await client.talk(audio)
        completed = of_type(frames, "conversation.item.input_audio_transcription.completed")
        assert [f["transcript"] for f in completed] == ["Good morning."]
        assert of_type(frames, "input_audio_buffer.speech_stopped")[0]["audio_end_ms"] == 1900

    @deadline(60)
    async def test_threshold_and_silence_duration(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A quiet voice is speech at threshold 0.2, not at 0.9; a short silence splits segments."""
        quiet = (synthesize(["hello world"], 16000) // 20).tobytes()  # about −36 dBFS
        heard = await (await configured(net)).talk(quiet)
        assert len(of_type(heard, "input_audio_buffer.speech_started")) == 1
        deaf = zh(turn_detection=ServerVad(threshold=0.9))
        missed = await (await configured(net, deaf)).talk(quiet)
        assert types(missed) == ["session.finished"]
        quick = zh(turn_detection=ServerVad(silence_duration_ms=500))
        split = await (await configured(net, quick)).talk(tone_pcm(["hello world", "good morning"]))
        assert len(of_type(split, "input_audio_buffer.speech_started")) == 2


class TestOutputs:
    @deadline(60)
    async def test_text_only(self, net: MemoryNet, autojump_clock: trio.testing.MockClock) -> None:
        """modalities ['text']: response.text.text/done, text parts, no audio at all."""
        client = await configured(net, zh(modalities=("text",)))
        frames = await client.talk(tone_pcm(["hello world"]))
        (segment,) = segments(frames[:-1]).values()
        check_segment(segment, audio=False)
        assert not [k for k in types(frames) if k.startswith(("response.audio", "response.audio_"))]
        texts = of_type(frames, "response.text.text")
        assert texts and texts[-1]["text"] == "你好世界。"
        assert of_type(frames, "response.text.done")[0]["text"] == "你好世界。"
        parts = of_type(frames, "response.content_part.added")
        assert parts[0]["part"]["type"] == "text"
        done = of_type(frames, "response.done")[0]["response"]
        assert done["output"][0]["content"] == [{"type": "text", "text": "你好世界。"}]
        assert done["usage"]["output_tokens_details"]["audio_tokens"] == 0

    @deadline(60)
    async def test_asr_off(self, net: MemoryNet, autojump_clock: trio.testing.MockClock) -> None:
        """input_audio_transcription.model null: no ASR events, the translation still comes."""
        off = zh(input_audio_transcription=TranscriptionSettings(model=None))
        client = await configured(net, off)
        frames = await client.talk(tone_pcm(["hello world"]))
        assert not [k for k in types(frames) if k.startswith("conversation.item.input_audio")]
        started = of_type(frames, "input_audio_buffer.speech_started")[0]
        created = of_type(frames, "conversation.item.created")[0]
        assert created["previous_item_id"] == started["item_id"]
        assert of_type(frames, "response.audio_transcript.done")[0]["transcript"] == "你好世界。"

    @deadline(60)
    async def test_source_language_is_reported(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        given = zh(input_audio_transcription=TranscriptionSettings(language="fr"))
        client = await configured(net, given)
        frames = await client.talk(tone_pcm(["hello world"]))
        asr = [f for f in frames if f["type"].startswith("conversation.item.input_audio")]
        assert asr and {f["language"] for f in asr} == {"fr"}

    @deadline(60)
    async def test_switching_to_text_mid_response(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A session.update during a response drops what the new session refuses, nothing breaks."""
        client = await configured(net)
        await client.append(tone_pcm(["hello world"])[: 16000 * 2 * 8 // 10])
        await client.until("response.audio.delta")
        await client.reconfigure(zh(modalities=("text",)))
        await client.until("session.updated")
        frames = await client.talk(silence(1500))
        kinds = types(frames)
        assert "response.audio.delta" not in kinds and "response.audio.done" not in kinds
        assert kinds[-2:] == ["response.done", "session.finished"]


class TestManualMode:
    @deadline(60)
    async def test_commit(self, net: MemoryNet, autojump_clock: trio.testing.MockClock) -> None:
        """committed → user item → ASR → response; no speech events."""
        client = await configured(net, zh(turn_detection=None))
        await client.append(tone_pcm(["hello world"]), pace=False)
        await client.send(m.Commit())
        frames = await client.until("response.done")
        committed, user = frames[0], frames[1]
        assert committed["type"] == "input_audio_buffer.committed"
        assert "previous_item_id" not in committed
        assert user["type"] == "conversation.item.created"
        assert (user["item"]["id"], user["item"]["role"]) == (committed["item_id"], "user")
        assert not of_type(frames, "input_audio_buffer.speech_started")
        completed = of_type(frames, "conversation.item.input_audio_transcription.completed")
        assert [(f["item_id"], f["transcript"]) for f in completed] == [
            (committed["item_id"], "Hello world.")
        ]
        translation = of_type(frames, "conversation.item.created")[1]
        assert translation["previous_item_id"] == committed["item_id"]
        await client.append(tone_pcm(["good morning"]), pace=False)
        await client.send(m.Commit())
        second = (await client.until("input_audio_buffer.committed"))[-1]
        assert second["previous_item_id"] == committed["item_id"]
        rest = await client.until("response.done")
        assert of_type(rest, "response.audio_transcript.done")[0]["transcript"] == "早上好。"

    @deadline(30)
    async def test_empty_commit_and_clear(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An empty commit is an error; clear answers cleared and empties the buffer."""
        client = await configured(net, zh(turn_detection=None))
        await client.send(m.Commit())
        error = (await client.recv())["error"]
        assert (error["type"], error["code"]) == (
            "invalid_request_error",
            "input_audio_buffer_commit_empty",
        )
        await client.append(tone_pcm(["hello world"]), pace=False)
        await client.send(m.Clear())
        assert (await client.recv())["type"] == "input_audio_buffer.cleared"
        await client.send(m.Commit())
        assert (await client.recv())["error"]["code"] == "input_audio_buffer_commit_empty"

    @deadline(30)
    async def test_commit_in_vad_mode_is_refused(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await configured(net)
        await client.send(m.Commit())
        error = (await client.recv())["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_value")

    @deadline(60)
    async def test_clear_in_vad_mode_keeps_the_segment(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await configured(net)
        audio = tone_pcm(["hello world"])
        await client.append(audio[: 16000 * 2 * 7 // 10])
        await client.send(m.Clear())
        frames = await client.talk(audio[16000 * 2 * 7 // 10 :])
        assert "input_audio_buffer.cleared" in types(frames)
        completed = of_type(frames, "conversation.item.input_audio_transcription.completed")
        assert [f["transcript"] for f in completed] == ["Hello world."]

    @deadline(60)
    async def test_switch_to_manual_ends_the_segment(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await configured(net)
        await client.append(tone_pcm(["hello world"])[: 16000 * 2])
        await client.reconfigure(zh(turn_detection=None))
        frames = await client.until("response.done")
        stopped = of_type(frames, "input_audio_buffer.speech_stopped")
        assert [f["audio_end_ms"] for f in stopped] == [1000]
        assert "session.updated" in types(frames)


class TestFinish:
    @deadline(60)
    async def test_finish_with_pending_speech(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Speech still going at session.finish: it stops there, ASR and response end, then finished."""
        client = await configured(net)
        frames = await client.talk(
            tone_pcm(["hello world"])[: 16000 * 2]
        )  # 1 s, no closing silence
        kinds = types(frames)
        assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("session.finished")
        assert of_type(frames, "input_audio_buffer.speech_stopped")[0]["audio_end_ms"] == 1000
        assert kinds[-2:] == ["response.done", "session.finished"]
        (segment,) = segments(frames[:-1]).values()
        check_segment(segment)
        await client.ws.aclose()

    @deadline(30)
    async def test_finish_without_speech(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await configured(net)
        assert types(await client.talk(silence(500))) == ["session.finished"]

    @deadline(60)
    async def test_manual_buffer_at_finish_is_recognized(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await configured(net, zh(turn_detection=None))
        frames = await client.talk(tone_pcm(["hello world"]), pace=False)
        assert "input_audio_buffer.committed" not in types(frames)
        assert of_type(frames, "response.audio_transcript.done")[0]["transcript"] == "你好世界。"
        assert frames[-1]["type"] == "session.finished"

    @deadline(120)
    async def test_input_after_finish_is_ignored_and_the_server_closes_late(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Late appends get no reply; a client that never closes is closed after the idle time."""
        client = await configured(net)
        await client.send(m.FinishSession())
        assert (await client.recv())["type"] == "session.finished"
        await client.send_json({"type": "input_audio_buffer.append", "audio": "AAAA"})
        finished_at = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(20):
                await client.recv()
        assert await client.closed() == 1000
        assert trio.current_time() - finished_at == pytest.approx(SimConfig().idle_timeout_s)


class TestRecognizer:
    @deadline(60)
    async def test_scripted_transcript(self, autojump_clock: trio.testing.MockClock) -> None:
        """make_recognizer("scripted", sentences=…) labels the segment with the known text."""
        recognizer = make_recognizer("scripted", sentences=["the weather today is sunny and warm"])
        async with open_memory_net(SimConfig(), recognizer, translator=TRANSLATOR) as net:
            client = await configured(net)
            frames = await client.talk(silence(300) + loud(2500) + silence(1200))
        completed = of_type(frames, "conversation.item.input_audio_transcription.completed")
        assert [f["transcript"] for f in completed] == ["The weather today is sunny and warm."]
        done = of_type(frames, "response.audio_transcript.done")
        assert [f["transcript"] for f in done] == ["今天天气晴朗温暖。"]

    @deadline(60)
    async def test_failure_fails_the_segment_only(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """transcription.failed for the segment; the session goes on to session.finished."""
        recognizer = GateRecognizer(fail_on_feed=1)
        async with open_memory_net(SimConfig(), recognizer, translator=TRANSLATOR) as net:
            client = await configured(net)
            frames = await client.talk(loud(500) + silence(1200))
        failed = of_type(frames, "conversation.item.input_audio_transcription.failed")
        assert len(failed) == 1
        assert failed[0]["error"]["code"] == "InternalError"
        assert (
            failed[0]["item_id"]
            == of_type(frames, "input_audio_buffer.speech_started")[0]["item_id"]
        )
        assert frames[-1]["type"] == "session.finished"
        assert recognizer.closed_sessions == 1

    @deadline(60)
    async def test_other_translation_target(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await configured(
            net, SessionSettings(translation=TranslationSettings(language="fr"))
        )
        frames = await client.talk(tone_pcm(["hello world"]))
        assert of_type(frames, "response.audio_transcript.done")[0]["transcript"] == (
            "Bonjour le monde."
        )
