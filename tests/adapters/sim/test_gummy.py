"""gummy-realtime-v1 and gummy-chat-v1 end to end over memory streams, in virtual time.

The recognizer is the scripted one labelled with the demo transcript, so the
recognized text — and hence the fixture table's translations — is exact.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from conftest import DEMO_AUDIO, deadline
from simclient import AUTH, RATE, SimClient, events_named, loud, silence

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import MemoryNet, SimConfig, open_memory_net
from adapters.sim.translate import ScriptedTranslator

WEATHER = (DEMO_AUDIO / "weather.txt").read_text().splitlines()
WEATHER_PCM = (DEMO_AUDIO / "weather.wav").read_bytes()[44:]  # canonical 44-byte header
TABLE = {
    row["en"]: row
    for row in tomllib.loads((DEMO_AUDIO / "translations.toml").read_text())["sentence"]
}
TRANSLATE = {"translation_enabled": True, "translation_target_languages": ["zh", "de"]}


@asynccontextmanager
async def gummy_net(
    config: SimConfig | None = None, sentences: list[str] = WEATHER
) -> AsyncIterator[MemoryNet]:
    recognizer = ScriptedRecognizer.transcript(sentences)
    translator = ScriptedTranslator.demo()
    async with open_memory_net(config or SimConfig(), recognizer, translator=translator) as net:
        yield net


@pytest.fixture(name="net")
async def _net() -> AsyncIterator[MemoryNet]:
    async with gummy_net() as net:
        yield net


async def connect(net: MemoryNet) -> SimClient:
    return SimClient(await net.connect(headers=AUTH))


def outputs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["payload"]["output"] for e in events_named(events, "result-generated")]


def final_texts(events: list[dict[str, Any]], key: str = "transcription") -> list[Any]:
    out = []
    for output in outputs(events):
        if key == "transcription" and output.get(key, {}).get("sentence_end"):
            out.append(output[key]["text"])
        elif key == "translations" and any(t["sentence_end"] for t in output.get(key, [])):
            out.append({t["lang"]: t["text"] for t in output[key]})
    return out


def spoken(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:] + "."


class TestRealtime:
    @deadline(60)
    async def test_transcription_and_translations(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Every result has both streams; finals are the demo sentences and their table rows."""
        client = await connect(net)
        events = await client.transcribe(
            WEATHER_PCM, model="gummy-realtime-v1", source_language=None, **TRANSLATE
        )
        assert events[-1]["header"]["event"] == "task-finished"
        assert final_texts(events) == [spoken(s) for s in WEATHER]
        assert final_texts(events, "translations") == [
            {"zh": TABLE[s]["zh"], "de": TABLE[s]["de"]} for s in WEATHER
        ]
        said = outputs(events)
        assert all(set(o) == {"transcription", "translations"} for o in said)
        assert {o["transcription"]["sentence_id"] for o in said} == {0, 1, 2}
        partials = [o for o in said if not o["transcription"]["sentence_end"]]
        assert partials, "expected partial results"
        for output in said:
            sentence = output["transcription"]
            final = sentence["sentence_end"]
            assert ("stash" in sentence) is final
            assert sentence["vad_pre_end"] is False
            assert all(w["fixed"] is final for w in sentence["words"])
            for translation in output["translations"]:
                assert translation["sentence_id"] == sentence["sentence_id"]
                assert translation["begin_time"] == sentence["begin_time"]
                assert translation["end_time"] == sentence["end_time"]
                assert translation["sentence_end"] is final
            if final:
                assert isinstance(sentence["end_time"], int)
                assert sentence["stash"]["begin_time"] == sentence["end_time"]
            else:
                assert sentence["end_time"] is None
                assert sentence["current_time"] >= sentence["words"][-1]["end_time"]
        for event in events_named(events, "result-generated"):
            final = event["payload"]["output"]["transcription"]["sentence_end"]
            assert ("usage" in event["payload"]) is final
        assert events[-1]["payload"] == {
            "output": {},
            "usage": {"duration": math.ceil(len(WEATHER_PCM) / (2 * RATE))},
        }

    @deadline(60)
    async def test_previews_grow_into_the_translation(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A sentence's partial translations are prefixes of its final one."""
        client = await connect(net)
        events = await client.transcribe(WEATHER_PCM, model="gummy-realtime-v1", **TRANSLATE)
        first = [
            o["translations"][0]
            for o in outputs(events)
            if o["translations"][0]["sentence_id"] == 0
        ]
        final = TABLE[WEATHER[0]]["zh"]
        assert first[-1]["text"] == final
        assert len(first) > 1
        assert all(final.startswith(t["text"]) for t in first)

    @deadline(60)
    async def test_transcription_only(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """translation_enabled false: results carry no translations key."""
        client = await connect(net)
        events = await client.transcribe(
            WEATHER_PCM, model="gummy-realtime-v1", translation_enabled=False
        )
        assert all(set(o) == {"transcription"} for o in outputs(events))
        assert final_texts(events) == [spoken(s) for s in WEATHER]

    @deadline(60)
    async def test_translation_only(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """transcription_enabled false: results carry no transcription key."""
        client = await connect(net)
        events = await client.transcribe(
            WEATHER_PCM,
            model="gummy-realtime-v1",
            transcription_enabled=False,
            translation_enabled=True,
            translation_target_languages=["ja"],
        )
        assert all(set(o) == {"translations"} for o in outputs(events))
        assert final_texts(events, "translations") == [{"ja": TABLE[s]["ja"]} for s in WEATHER]

    @deadline(60)
    async def test_unknown_sentences_are_labelled_stand_ins(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Sentences the table does not know are never passed off as translations."""
        async with gummy_net(sentences=["a b c d", "e f g h", "i j k l"]) as net:
            client = await connect(net)
            events = await client.transcribe(WEATHER_PCM, model="gummy-realtime-v1", **TRANSLATE)
        finals = final_texts(events, "translations")
        assert finals[0] == {"zh": "[zh stand-in] A b c d.", "de": "[de stand-in] A b c d."}

    @deadline(200)
    async def test_no_audio_cap(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """gummy-realtime has no one-minute cap: 70 s of speech is one sentence at finish."""
        client = await connect(net)
        events = await client.transcribe(loud(70_000), model="gummy-realtime-v1")
        finals = [o["transcription"] for o in outputs(events) if o["transcription"]["sentence_end"]]
        assert [f["end_time"] for f in finals] == [70_000]

    @deadline(200)
    async def test_heartbeat_keeps_the_task_alive_silently(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """heartbeat: true survives 90 s of silence, and sends no paraformer-shaped heartbeats."""
        client = await connect(net)
        events = await client.transcribe(silence(90_000), model="gummy-realtime-v1", heartbeat=True)
        assert [e["header"]["event"] for e in events] == ["task-finished"]


class TestChat:
    @deadline(60)
    async def test_one_sentence_per_task(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Results end with the first sentence; later audio is ignored (and not billed)."""
        client = await connect(net)
        events = await client.transcribe(WEATHER_PCM, model="gummy-chat-v1", **TRANSLATE)
        results = outputs(events)
        assert final_texts(events) == [spoken(WEATHER[0])]
        assert final_texts(events, "translations") == [
            {"zh": TABLE[WEATHER[0]]["zh"], "de": TABLE[WEATHER[0]]["de"]}
        ]
        assert results[-1]["transcription"]["sentence_end"], "nothing after the sentence end"
        assert {o["transcription"]["sentence_id"] for o in results} == {0}
        assert events[-1]["header"]["event"] == "task-finished"
        billed = events[-1]["payload"]["usage"]["duration"]
        assert billed < math.ceil(len(WEATHER_PCM) / (2 * RATE))

    @deadline(60)
    async def test_waits_for_finish_task(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """By default task-finished comes only after finish-task."""
        client = await connect(net)
        await client.run_task("c1", "gummy-chat-v1")
        assert (await client.recv())["header"]["event"] == "task-started"
        await client.send_audio(WEATHER_PCM, pace=True)
        with trio.move_on_after(5):
            while True:
                event = await client.recv()
                assert event["header"]["event"] == "result-generated"
        await client.finish("c1")
        assert (await client.recv())["header"]["event"] == "task-finished"

    @deadline(60)
    async def test_auto_finish(self, autojump_clock: trio.testing.MockClock) -> None:
        """gummy_chat_auto_finish: task-finished right after the sentence end; the late
        finish-task and audio are ignored and the socket runs the next task."""
        async with gummy_net(SimConfig(gummy_chat_auto_finish=True)) as net:
            client = await connect(net)
            await client.run_task("c1", "gummy-chat-v1")
            assert (await client.recv())["header"]["event"] == "task-started"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(client.send_audio, WEATHER_PCM[: RATE * 2 * 6], pace=True)
                )
                events = await client.until_end()
            assert events[-1]["header"]["event"] == "task-finished"
            assert final_texts(events) == [spoken(WEATHER[0])]
            assert outputs(events)[-1]["transcription"]["sentence_end"]
            await client.send_audio(WEATHER_PCM[: RATE * 2], pace=False)
            await client.finish("c1")
            second = await client.transcribe(
                WEATHER_PCM[: RATE * 2 * 6], "c2", model="gummy-chat-v1"
            )
            assert second[0]["header"]["event"] == "result-generated"
            assert final_texts(second) == [spoken(WEATHER[0])]

    @deadline(200)
    async def test_one_minute_cap_ends_the_sentence(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """60 s of speech without a pause is one sentence, ended at 60 s; the rest is ignored."""
        client = await connect(net)
        events = await client.transcribe(loud(75_000), model="gummy-chat-v1")
        results = outputs(events)
        finals = [o["transcription"] for o in results if o["transcription"]["sentence_end"]]
        assert len(finals) == 1
        assert finals[0]["text"] == spoken(WEATHER[0])
        assert finals[0]["end_time"] == 60_000
        assert results[-1]["transcription"]["sentence_end"]
        assert 60 <= events[-1]["payload"]["usage"]["duration"] <= 61

    @deadline(60)
    async def test_cap_is_configurable(self, autojump_clock: trio.testing.MockClock) -> None:
        async with gummy_net(SimConfig(gummy_chat_max_audio_s=2.5)) as net:
            client = await connect(net)
            events = await client.transcribe(loud(10_000), model="gummy-chat-v1")
        finals = [o["transcription"] for o in outputs(events) if o["transcription"]["sentence_end"]]
        assert [f["end_time"] for f in finals] == [2500]


class TestConfig:
    def test_gummy_chat_defaults(self) -> None:
        """Wait for finish-task; one minute of audio per task (DASHSCOPE.md §8)."""
        config = SimConfig()
        assert (config.gummy_chat_auto_finish, config.gummy_chat_max_audio_s) == (False, 60.0)

    def test_cap_must_be_positive(self) -> None:
        with pytest.raises(msgspec.ValidationError, match="gummy_chat_max_audio_s"):
            msgspec.convert({"gummy_chat_max_audio_s": 0}, SimConfig)


class TestRejections:
    @pytest.mark.parametrize(
        "parameters",
        [
            {"translation_enabled": True},
            {"transcription_enabled": False},
            {"max_end_silence": 100},
            {"translation_enabled": True, "translation_target_languages": ["Chinese"]},
        ],
    )
    @deadline(10)
    async def test_bad_parameter(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock, parameters: dict[str, Any]
    ) -> None:
        """task-failed InvalidParameter with a message, then the server closes."""
        client = await connect(net)
        await client.run_task("bad", "gummy-chat-v1", **parameters)
        header = (await client.recv())["header"]
        assert (header["event"], header["error_code"]) == ("task-failed", "InvalidParameter")
        assert header["error_message"]
        assert await client.closed()
