"""Hypotheses to gummy ``payload.output`` objects (DASHSCOPE.md §4.2), without I/O."""

from __future__ import annotations

from typing import Any

import pytest
from dashscope.audio.asr.translation_recognizer import TranscriptionResult, TranslationResult

from adapters.recognizers.base import Hypothesis, RecognizedWord
from adapters.sim.shaping import gummy_output, sentence_usage
from adapters.sim.translate import ScriptedTranslator, StandInTranslator, Translator

ROWS = [
    {
        "en": "the weather today is sunny and warm",
        "zh": "今天天气晴朗温暖。",
        "de": "Das Wetter ist heute sonnig und warm.",
    }
]
WORDS = (
    RecognizedWord(180, 500, "the"),
    RecognizedWord(500, 900, "weather"),
    RecognizedWord(900, 1300, "today"),
)
PARTIAL = Hypothesis(0, 180, None, "the weather today", WORDS)
FINAL = Hypothesis(
    0,
    180,
    2400,
    "the weather today is sunny and warm",
    (*WORDS, RecognizedWord(1300, 2400, "is sunny and warm")),
    final=True,
)


def shape(
    hyp: Hypothesis,
    *,
    transcription: bool = True,
    targets: tuple[str, ...] = ("zh",),
    translator: Translator | None = None,
    current_ms: int = 1500,
) -> dict[str, Any]:
    return gummy_output(
        hyp,
        transcription=transcription,
        targets=targets,
        translator=translator or ScriptedTranslator(ROWS),
        current_ms=current_ms,
    )


def word(begin: int, end: int, text: str, punctuation: str = "", *, fixed: bool) -> dict[str, Any]:
    return {
        "begin_time": begin,
        "end_time": end,
        "text": text,
        "punctuation": punctuation,
        "fixed": fixed,
        "speaker_id": None,
    }


class TestPartial:
    def test_both_streams(self) -> None:
        """end_time null plus current_time, unfixed words, a translation preview spanning it."""
        assert shape(PARTIAL) == {
            "transcription": {
                "sentence_id": 0,
                "begin_time": 180,
                "end_time": None,
                "current_time": 1500,
                "text": "The weather today",
                "sentence_end": False,
                "vad_pre_end": False,
                "words": [
                    word(180, 500, "The", fixed=False),
                    word(500, 900, "weather", fixed=False),
                    word(900, 1300, "today", fixed=False),
                ],
            },
            "translations": [
                {
                    "sentence_id": 0,
                    "lang": "zh",
                    "begin_time": 180,
                    "end_time": None,
                    "current_time": 1500,
                    "text": "今天天气",
                    "sentence_end": False,
                    "vad_pre_end": False,
                    "words": [word(180, 1500, "今天天气", fixed=False)],
                }
            ],
        }

    def test_preview_is_text_plus_stash(self) -> None:
        """A preview shows the translator's settled text and its tentative tail."""
        translator = ScriptedTranslator(ROWS)
        preview = translator.translate("The weather today", "de", final=False)
        assert preview.stash
        out = shape(PARTIAL, targets=("de",), translator=translator)
        assert out["translations"][0]["text"] == preview.text + preview.stash

    def test_current_time_never_before_the_words(self) -> None:
        """current_time is at least the last word's end (the SDK uses it as end_time)."""
        out = shape(PARTIAL, current_ms=0)
        assert out["transcription"]["current_time"] == 1300
        assert sentence_usage(PARTIAL) is None


class TestFinal:
    def test_both_streams(self) -> None:
        """Integer end_time, fixed words, a period, a stash at the sentence end, no current_time."""
        out = shape(FINAL, targets=("zh", "de"), current_ms=2600)
        assert out["transcription"] == {
            "sentence_id": 0,
            "begin_time": 180,
            "end_time": 2400,
            "text": "The weather today is sunny and warm.",
            "sentence_end": True,
            "vad_pre_end": False,
            "words": [
                word(180, 500, "The", fixed=True),
                word(500, 900, "weather", fixed=True),
                word(900, 1300, "today", fixed=True),
                word(1300, 2400, "is sunny and warm", ".", fixed=True),
            ],
            "stash": {
                "sentence_id": 1,
                "text": "",
                "begin_time": 2400,
                "current_time": 2600,
                "words": [],
            },
        }
        assert out["translations"] == [
            {
                "sentence_id": 0,
                "lang": "zh",
                "begin_time": 180,
                "end_time": 2400,
                "text": "今天天气晴朗温暖。",
                "sentence_end": True,
                "vad_pre_end": False,
                "words": [word(180, 2400, "今天天气晴朗温暖。", "。", fixed=True)],
            },
            {
                "sentence_id": 0,
                "lang": "de",
                "begin_time": 180,
                "end_time": 2400,
                "text": "Das Wetter ist heute sonnig und warm.",
                "sentence_end": True,
                "vad_pre_end": False,
                "words": [
                    word(180, 2400, "Das Wetter ist heute sonnig und warm.", ".", fixed=True)
                ],
            },
        ]
        assert sentence_usage(FINAL) == {"duration": 3}

    def test_sentence_ids_count_from_zero(self) -> None:
        """gummy's k-th sentence has sentence_id k (paraformer's is k + 1); the stash k + 1."""
        out = shape(Hypothesis(4, 0, 800, "hello", (RecognizedWord(0, 800, "hello"),), final=True))
        assert out["transcription"]["sentence_id"] == 4
        assert out["transcription"]["stash"]["sentence_id"] == 5
        assert out["translations"][0]["sentence_id"] == 4

    def test_unknown_sentence_is_a_labelled_stand_in(self) -> None:
        """Never a pretend translation: the stand-in says what it is."""
        hyp = Hypothesis(0, 0, 800, "hello world", (RecognizedWord(0, 800, "hello world"),), True)
        for translator in (ScriptedTranslator(ROWS), StandInTranslator()):
            out = shape(hyp, translator=translator)
            assert out["translations"][0]["text"] == "[zh stand-in] Hello world."

    def test_empty_translation_has_no_words(self) -> None:
        out = shape(Hypothesis(0, 0, 0, "", (), final=True))
        assert out["translations"][0]["text"] == ""
        assert out["translations"][0]["words"] == []


class TestEnablement:
    @pytest.mark.parametrize("hyp", [PARTIAL, FINAL])
    def test_transcription_only(self, hyp: Hypothesis) -> None:
        """translation_enabled false: no translations key at all."""
        assert list(shape(hyp, targets=())) == ["transcription"]

    @pytest.mark.parametrize("hyp", [PARTIAL, FINAL])
    def test_translation_only(self, hyp: Hypothesis) -> None:
        """transcription_enabled false: no transcription key at all."""
        assert list(shape(hyp, transcription=False)) == ["translations"]


class TestSdkParsing:
    """The SDK's own parsers accept the shapes (a missing key would be a KeyError)."""

    @pytest.mark.parametrize("hyp", [PARTIAL, FINAL])
    def test_sdk_reads_every_field(self, hyp: Hypothesis) -> None:
        out = shape(hyp, targets=("zh", "de"))
        transcription = TranscriptionResult.from_json(out["transcription"])
        translations = TranslationResult.from_json(out["translations"])
        assert transcription.is_sentence_end is hyp.final
        assert translations.is_sentence_end is hyp.final
        assert translations.get_language_list() == ["zh", "de"]
        # the SDK takes current_time for end_time on partials
        assert transcription.end_time == (2400 if hyp.final else 1500)
        assert translations.get_translation("zh").end_time == transcription.end_time
        assert all(w.fixed is hyp.final for w in transcription.words)
        assert (transcription.stash is not None) is hyp.final
