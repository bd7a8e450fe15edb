"""The realtime endpoint's pure parts: energy VAD, stand-in voice, segment commands, image gate."""

from __future__ import annotations

import numpy as np
import pytest
from rtclient import TRANSLATOR
from simclient import loud, silence

from adapters.dashscope import realtime_messages as m
from adapters.recognizers.base import Hypothesis
from adapters.sim.realtime_images import ImageGate
from adapters.sim.realtime_segment import Segment, join_text, shape_sentence
from adapters.sim.realtime_vad import (
    EnergyVad,
    Offset,
    Onset,
    VadEvent,
    VadSettings,
    Voice,
    rms_threshold,
)
from adapters.sim.realtime_voice import (
    CHUNK_MS,
    UNIT_MS,
    VOICE_RATE,
    VoiceStream,
    synthesize,
    units,
)

DEFAULT = VadSettings(rms_threshold(0.2), 1000, 300)
BYTES_PER_MS = 32  # 16 kHz s16le


def run(vad: EnergyVad, pcm: bytes, chunk: int = 3200) -> list[VadEvent]:
    events: list[VadEvent] = []
    for i in range(0, len(pcm), chunk):
        events += vad.push(pcm[i : i + chunk])
    return events


def summary(events: list[VadEvent]) -> list[tuple[str, int]]:
    """Onsets and offsets with their times, and the audio of each segment in ms."""
    out: list[tuple[str, int]] = []
    audio = 0
    for event in events:
        match event:
            case Onset(start, pcm):
                out.append(("onset", start))
                audio = len(pcm)
            case Voice(pcm):
                audio += len(pcm)
            case Offset(end):
                out += [("audio", audio // BYTES_PER_MS), ("offset", end)]
    return out


class TestEnergyVad:
    def test_threshold_mapping(self) -> None:
        """0.2 (the default) is −45 dBFS; higher thresholds need louder speech."""
        assert rms_threshold(0.2) == pytest.approx(32768 * 10 ** (-45 / 20))
        levels = [rms_threshold(t) for t in (-1.0, 0.0, 0.2, 1.0)]
        assert levels == sorted(levels)

    def test_segment_times(self) -> None:
        """Onset 300 ms before the first loud frame; offset after 1 000 ms of quiet."""
        events = run(EnergyVad(16000, DEFAULT), silence(800) + loud(500) + silence(1200))
        assert summary(events) == [("onset", 500), ("audio", 1800), ("offset", 2300)]

    def test_padding_is_clamped(self) -> None:
        events = run(EnergyVad(16000, DEFAULT, start_ms=5000), silence(100) + loud(300))
        assert events[0] == Onset(5000, (silence(100) + loud(300))[: 130 * BYTES_PER_MS])

    def test_chunking_does_not_matter(self) -> None:
        audio = silence(400) + loud(300) + silence(1100) + loud(200) + silence(1000)
        whole = summary(run(EnergyVad(16000, DEFAULT), audio, len(audio)))
        assert summary(run(EnergyVad(16000, DEFAULT), audio, 333)) == whole
        assert [kind for kind, _ in whole] == ["onset", "audio", "offset"] * 2

    def test_click_and_quiet_audio(self) -> None:
        """20 ms of noise is no speech; a threshold of 1.0 (−25 dBFS) ignores a moderate voice."""
        assert run(EnergyVad(16000, DEFAULT), silence(100) + loud(20) + silence(500)) == []
        moderate = (np.frombuffer(loud(500), "<i2") // 8).tobytes()  # about −33 dBFS
        assert run(EnergyVad(16000, DEFAULT), moderate)
        deaf = VadSettings(rms_threshold(1.0), 1000, 300)
        assert run(EnergyVad(16000, deaf), moderate) == []
        assert run(EnergyVad(16000, deaf), loud(500))

    def test_end_and_clear(self) -> None:
        vad = EnergyVad(16000, DEFAULT)
        assert vad.end() == []
        run(vad, loud(300))
        assert vad.in_speech
        assert vad.end() == [Offset(300)]
        run(vad, silence(200))
        vad.clear()
        (onset, *_) = run(vad, loud(100))
        assert isinstance(onset, Onset) and onset.start_ms == 500  # the look-back is gone

    def test_eight_khz(self) -> None:
        pcm = (np.frombuffer(loud(600), "<i2")[::2]).tobytes()  # 300 ms at 8 kHz
        events = EnergyVad(8000, DEFAULT).push(bytes(1600) + pcm)
        assert isinstance(events[0], Onset) and events[0].start_ms == 0


class TestVoice:
    def test_units(self) -> None:
        assert units("Hello, world! —") == ["Hello,", "world!"]
        assert units("你好世界。") == ["你", "好", "世", "界"]
        assert units("[zh stand-in] Hi") == ["[zh", "stand-in]", "Hi"]

    def test_synthesize(self) -> None:
        """UNIT_MS of 24 kHz PCM per unit, soft, deterministic, pitched per unit."""
        pcm = synthesize(["hello", "world"])
        assert len(pcm) == 2 * UNIT_MS * VOICE_RATE * 2 // 1000
        assert pcm == synthesize(["hello", "world"])
        samples = np.frombuffer(pcm, "<i2")
        assert np.abs(samples).max() <= 0.2 * 32768
        assert synthesize(["hello"]) != synthesize(["world"])
        assert synthesize([]) == b""

    def test_stream_speaks_settled_units_once(self) -> None:
        voice = VoiceStream()
        first = voice.say("one two", final=False)
        size = CHUNK_MS * VOICE_RATE * 2 // 1000
        assert [len(c) for c in first] == [size, size]  # 480 ms: two whole chunks
        assert voice.say("uno", final=False) == []  # revised text: nothing is taken back
        rest = voice.say("one two three", final=True)
        total = b"".join(first + rest)
        assert total == synthesize(["one", "two", "three"])
        assert voice.duration_ms == 3 * UNIT_MS


def hyp(text: str, *, final: bool = False, index: int = 0) -> Hypothesis:
    return Hypothesis(index, 0, 100 if final else None, text, final=final)


class TestSegment:
    def test_text_helpers(self) -> None:
        assert shape_sentence("hello world", final=True) == "Hello world."
        assert shape_sentence("你好", final=True) == "你好。"
        assert shape_sentence("is it?", final=True) == "Is it?"
        assert join_text("Hi.", "Yo") == "Hi. Yo" and join_text("你好。", "Yo") == "你好。Yo"

    def test_commands_in_order(self) -> None:
        ids = iter(range(100))
        segment = Segment(
            "item_src", target="zh", translator=TRANSLATOR, new_id=lambda p: f"{p}_{next(ids)}"
        )
        partial = segment.heard([hyp("hello")], 100, asr=True, audio=True)
        assert [type(c) for c in partial[:6]] == [
            m.SendSourcePartial,
            m.CreateItem,
            m.CreateResponse,
            m.AddOutputItem,
            m.AddContentPart,
            m.SendTranslationPartial,
        ]
        assert partial[1] == m.CreateItem("item_0", "item_src")
        assert partial[5] == m.SendTranslationPartial("resp_1", "item_0", "你好", "世")
        assert segment.heard([], 150, asr=True, audio=True) == []  # nothing new
        end = segment.finish([hyp("hello world", final=True)], 900, asr=True, audio=True)
        kinds = [type(c) for c in end]
        assert end[0] == m.SendSourceFinal("item_src", "Hello world.", "en", "neutral")
        assert kinds[-5:] == [
            m.SendTranslationFinal,
            m.FinishAudio,
            m.FinishContentPart,
            m.FinishOutputItem,
            m.FinishResponse,
        ]
        done = end[-1]
        assert isinstance(done, m.FinishResponse) and done.usage is not None
        assert done.usage.input_tokens_details == {"text_tokens": 0, "audio_tokens": 23}

    def test_asr_and_audio_off(self) -> None:
        segment = Segment("a", target="zh", translator=TRANSLATOR, new_id=lambda p: p)
        commands = segment.heard([hyp("hello")], 100, asr=False, audio=False)
        commands += segment.finish([hyp("hello world", final=True)], 500, asr=False, audio=False)
        kinds = {type(c) for c in commands}
        assert not kinds & {m.SendSourcePartial, m.SendSourceFinal, m.SendAudioDelta, m.FinishAudio}
        assert m.FinishResponse in kinds

    def test_nothing_heard(self) -> None:
        segment = Segment("a", target="zh", translator=TRANSLATOR, new_id=lambda p: p)
        assert segment.finish([], 500, asr=True, audio=True) == [
            m.SendSourceFinal("a", "", "en", "neutral")
        ]

    def test_throttle(self) -> None:
        segment = Segment(
            "a", target="zh", translator=TRANSLATOR, new_id=lambda p: p, partial_interval_ms=200
        )
        assert segment.heard([hyp("hello")], 100, asr=True, audio=False)
        assert segment.heard([hyp("hello world")], 200, asr=True, audio=False) == []
        assert segment.heard([], 300, asr=True, audio=False)  # due now: the held change goes

    def test_failure_ends_the_response(self) -> None:
        segment = Segment("a", target="zh", translator=TRANSLATOR, new_id=lambda p: p)
        segment.heard([hyp("hello")], 100, asr=True, audio=False)
        failed = segment.fail("InternalError", "boom", asr=True)
        assert failed[0] == m.SendSourceFailed("a", "InternalError", "boom")
        assert isinstance(failed[-1], m.FinishResponse) and failed[-1].status == "failed"


class TestImageGate:
    def test_window(self) -> None:
        gate = ImageGate()
        jpeg = b"\xff\xd8\xff\xe0"
        assert gate.check(jpeg, 0.0) is None
        assert gate.check(jpeg, 0.5) is None
        refused = gate.check(jpeg, 0.9)
        assert refused is not None and refused.code == "rate_limit_exceeded"
        assert gate.check(jpeg, 1.0) is None  # the first left the window
        assert gate.accepted == 3
