"""run-task validation for gummy-realtime-v1 and gummy-chat-v1 (DASHSCOPE.md §4.1), without I/O."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.dashscope.messages import RunTaskRequested
from adapters.sim.validation import GummyOptions, Rejection, TaskSpec, check_run_task

SDK_DEFAULTS: dict[str, Any] = {
    # what TranslationRecognizerRealtime sends with only model/format/rate given (§4.1)
    "source_language": None,
    "transcription_enabled": True,
    "translation_enabled": False,
}


def request(model: str = "gummy-realtime-v1", **parameters: Any) -> RunTaskRequested:
    return RunTaskRequested(
        task_id="t",
        model=model,
        parameters={"sample_rate": 16000, "format": "pcm", **SDK_DEFAULTS, **parameters},
        input={},
        task_group="audio",
        task="asr",
        function="recognition",
        streaming="duplex",
    )


def accepted(model: str = "gummy-realtime-v1", **parameters: Any) -> TaskSpec:
    spec = check_run_task(request(model, **parameters))
    assert isinstance(spec, TaskSpec), spec
    return spec


class TestAccepted:
    def test_sdk_defaults(self) -> None:
        """What the SDK sends unasked (with source_language null): transcription only."""
        assert accepted() == TaskSpec(
            task_id="t",
            model="gummy-realtime-v1",
            audio_format="pcm",
            sample_rate=16000,
            language=None,
            heartbeat=False,
            gummy=GummyOptions(),
        )

    def test_every_parameter(self) -> None:
        """All of §4.1's parameters land on the spec; source_language becomes the language."""
        spec = accepted(
            "gummy-chat-v1",
            translation_enabled=True,
            translation_target_languages=["en"],
            source_language="zh",
            vocabulary_id="vocab-1",
            max_end_silence=1200,
            semantic_punctuation_enabled=True,
            disfluency_removal_enabled=True,
        )
        assert spec.language == "zh"
        assert spec.gummy == GummyOptions(
            transcription=True,
            targets=("en",),
            vocabulary_id="vocab-1",
            max_end_silence_ms=1200,
            semantic_punctuation=True,
            disfluency_removal=True,
            utterance=True,
        )

    def test_only_chat_is_one_utterance(self) -> None:
        """gummy-chat recognizes one sentence per task; gummy-realtime does not."""
        assert accepted("gummy-chat-v1").gummy == GummyOptions(utterance=True)
        assert accepted("gummy-realtime-v1").gummy == GummyOptions(utterance=False)

    def test_translation_only(self) -> None:
        """transcription_enabled false is fine while translation is on."""
        spec = accepted(
            transcription_enabled=False,
            translation_enabled=True,
            translation_target_languages=["ja", "zh-TW"],
        )
        assert spec.gummy == GummyOptions(transcription=False, targets=("ja", "zh-TW"))

    def test_duplicate_targets_are_dropped(self) -> None:
        """Several targets are accepted (the service may take only one, §13.10), once each."""
        spec = accepted(translation_enabled=True, translation_target_languages=["en", "ja", "en"])
        assert spec.gummy is not None
        assert spec.gummy.targets == ("en", "ja")

    def test_targets_ignored_while_translation_is_off(self) -> None:
        spec = accepted(translation_target_languages=["en"])
        assert spec.gummy is not None
        assert spec.gummy.targets == ()

    @pytest.mark.parametrize("source", [None, "auto"])
    def test_auto_source_language(self, source: str | None) -> None:
        """null (the SDK's unset value) and "auto" both mean auto-detection."""
        assert accepted(source_language=source).language is None

    @pytest.mark.parametrize("silence", [200, 700, 6000])
    def test_max_end_silence_bounds(self, silence: int) -> None:
        spec = accepted(max_end_silence=silence)
        assert spec.gummy is not None
        assert spec.gummy.max_end_silence_ms == silence

    @pytest.mark.parametrize("rate", [16000, 48000])
    def test_rates(self, rate: int) -> None:
        assert accepted(sample_rate=rate).sample_rate == rate

    def test_nulls_are_absent(self) -> None:
        """Every gummy parameter may be an explicit null."""
        nulls = dict.fromkeys(
            [
                "transcription_enabled",
                "translation_enabled",
                "translation_target_languages",
                "vocabulary_id",
                "max_end_silence",
                "semantic_punctuation_enabled",
                "disfluency_removal_enabled",
                "heartbeat",
            ]
        )
        assert accepted(**nulls).gummy == GummyOptions()

    def test_paraformer_has_no_gummy_options(self) -> None:
        """Recognition-only models keep their spec, gummy parameters or not."""
        spec = check_run_task(request("paraformer-realtime-v2", translation_enabled=True))
        assert isinstance(spec, TaskSpec)
        assert spec.gummy is None


class TestRejected:
    @pytest.mark.parametrize(
        ("parameters", "message"),
        [
            (
                {"transcription_enabled": False, "translation_enabled": False},
                "both false",
            ),
            ({"transcription_enabled": False}, "both false"),
            ({"translation_enabled": True}, "needs translation_target_languages"),
            (
                {"translation_enabled": True, "translation_target_languages": []},
                "needs translation_target_languages",
            ),
            (
                {"translation_enabled": True, "translation_target_languages": "en"},
                "needs translation_target_languages",
            ),
            (
                {"translation_enabled": True, "translation_target_languages": ["English"]},
                "'English' is not a language code",
            ),
            (
                {"translation_enabled": True, "translation_target_languages": [""]},
                "'' is not a language code",
            ),
            (
                {"translation_enabled": True, "translation_target_languages": [1]},
                "1 is not a language code",
            ),
            ({"translation_enabled": "yes"}, "translation_enabled must be true or false"),
            ({"transcription_enabled": 1}, "transcription_enabled must be true or false"),
            ({"semantic_punctuation_enabled": "false"}, "semantic_punctuation_enabled"),
            ({"disfluency_removal_enabled": 0}, "disfluency_removal_enabled"),
            ({"source_language": "Chinese"}, "source_language 'Chinese'"),
            ({"source_language": ["zh"]}, "source_language ['zh']"),
            ({"vocabulary_id": 42}, "vocabulary_id must be a string"),
            ({"max_end_silence": 199}, "200–6000"),
            ({"max_end_silence": 6001}, "200–6000"),
            ({"max_end_silence": 700.5}, "200–6000"),
            ({"max_end_silence": True}, "200–6000"),
            ({"max_end_silence": "700"}, "200–6000"),
            ({"sample_rate": 8000}, "sample_rate 8000 is not supported by gummy-"),
        ],
    )
    @pytest.mark.parametrize("model", ["gummy-realtime-v1", "gummy-chat-v1"])
    def test_invalid_parameter(self, model: str, parameters: dict[str, Any], message: str) -> None:
        """task-failed InvalidParameter, with a message naming the parameter."""
        rejection = check_run_task(request(model, **parameters))
        assert isinstance(rejection, Rejection)
        assert rejection.code == "InvalidParameter"
        assert message in rejection.message

    def test_format_is_still_checked(self) -> None:
        rejection = check_run_task(request(format="mp3"))
        assert isinstance(rejection, Rejection)
        assert rejection.code == "UNSUPPORTED_FORMAT"
