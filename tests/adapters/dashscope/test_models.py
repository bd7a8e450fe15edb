"""The model table and run-task parameters (DASHSCOPE.md §3.1, §4.1)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.dashscope.models import (
    MODELS,
    RecognitionOptions,
    get_model,
    inference_url,
    run_task_parameters,
)
from engine.errors import ConfigError

PARAFORMER = MODELS["paraformer-realtime-v2"]
GUMMY = MODELS["gummy-realtime-v1"]


class TestRunTaskParameters:
    def test_defaults_send_only_rate_and_format(self) -> None:
        """With no options set only sample_rate and format are sent (service defaults apply)."""
        params = run_task_parameters(PARAFORMER, RecognitionOptions(), sample_rate=16000)
        assert params == {"sample_rate": 16000, "format": "pcm"}

    def test_only_set_options_are_sent(self) -> None:
        """Options left at None stay out; options set, even to False, go in."""
        options = RecognitionOptions(
            language_hints=["en"], heartbeat=True, disfluency_removal_enabled=False
        )
        params = run_task_parameters(PARAFORMER, options, sample_rate=16000, audio_format="wav")
        assert params == {
            "sample_rate": 16000,
            "format": "wav",
            "language_hints": ["en"],
            "heartbeat": True,
            "disfluency_removal_enabled": False,
        }

    def test_every_option_is_a_paraformer_parameter(self) -> None:
        """Each RecognitionOptions field is accepted by paraformer-realtime-v2 under its own name."""
        values = {
            "language_hints": ["zh"],
            "vocabulary_id": "vocab-1",
            "disfluency_removal_enabled": True,
            "semantic_punctuation_enabled": True,
            "max_sentence_silence": 800,
            "multi_threshold_mode_enabled": True,
            "punctuation_prediction_enabled": False,
            "inverse_text_normalization_enabled": False,
            "heartbeat": True,
        }
        assert set(values) == set(RecognitionOptions.__struct_fields__)
        params = run_task_parameters(PARAFORMER, RecognitionOptions(**values), sample_rate=16000)
        assert params == {"sample_rate": 16000, "format": "pcm", **values}

    @pytest.mark.parametrize(
        ("model", "rate"), [("paraformer-realtime-v2", 8000), ("paraformer-realtime-8k-v2", 16000)]
    )
    def test_rate_mismatch(self, model: str, rate: int) -> None:
        """A rate other than the model's is refused, naming both rates and the fix."""
        spec = MODELS[model]
        with pytest.raises(ConfigError) as info:
            run_task_parameters(spec, RecognitionOptions(), sample_rate=rate)
        message = str(info.value)
        assert f"{spec.sample_rate} Hz" in message
        assert f"{rate} Hz" in message
        assert "fix:" in message

    def test_8k_model_at_8k(self) -> None:
        """The 8 kHz model takes 8 kHz audio."""
        spec = MODELS["paraformer-realtime-8k-v2"]
        assert (
            run_task_parameters(spec, RecognitionOptions(), sample_rate=8000)["sample_rate"] == 8000
        )

    def test_option_the_model_does_not_take(self) -> None:
        """A paraformer-only option sent to gummy is refused by name."""
        with pytest.raises(ConfigError, match="'max_sentence_silence'"):
            run_task_parameters(
                GUMMY, RecognitionOptions(max_sentence_silence=500), sample_rate=16000
            )

    def test_gummy_shared_options(self) -> None:
        """Options gummy shares with paraformer (vocabulary, heartbeat) pass through."""
        options = RecognitionOptions(vocabulary_id="v", heartbeat=True)
        params = run_task_parameters(GUMMY, options, sample_rate=16000)
        assert params == {
            "sample_rate": 16000,
            "format": "pcm",
            "vocabulary_id": "v",
            "heartbeat": True,
        }

    def test_realtime_model_refused(self) -> None:
        """A realtime-protocol model has no run-task."""
        spec = MODELS["qwen3.5-livetranslate-flash-realtime"]
        with pytest.raises(ConfigError, match="realtime protocol"):
            run_task_parameters(spec, RecognitionOptions(), sample_rate=16000)


class TestLanguages:
    @pytest.mark.parametrize(
        "model", ["paraformer-realtime-v2", "paraformer-realtime-8k-v2", "fun-asr-realtime"]
    )
    def test_supported_languages(self, model: str) -> None:
        """Every language a model lists is accepted as a hint."""
        spec = MODELS[model]
        options = RecognitionOptions(language_hints=list(spec.languages))
        params = run_task_parameters(spec, options, sample_rate=spec.sample_rate)
        assert params["language_hints"] == list(spec.languages)

    def test_unsupported_language(self) -> None:
        """An unsupported hint is refused, naming it and the languages the model takes."""
        spec = MODELS["fun-asr-realtime"]
        with pytest.raises(ConfigError) as info:
            run_task_parameters(
                spec, RecognitionOptions(language_hints=["en", "ko"]), sample_rate=16000
            )
        message = str(info.value)
        assert "'ko'" in message
        assert "zh, en, ja" in message

    def test_empty_hints(self) -> None:
        """An empty hint list means auto-detection and is sent as given."""
        params = run_task_parameters(
            PARAFORMER, RecognitionOptions(language_hints=[]), sample_rate=16000
        )
        assert params["language_hints"] == []


class TestMaxSentenceSilence:
    @given(ms=st.integers(min_value=200, max_value=6000))
    def test_in_range(self, ms: int) -> None:
        """200–6000 ms (inclusive) is accepted and sent."""
        params = run_task_parameters(
            PARAFORMER, RecognitionOptions(max_sentence_silence=ms), sample_rate=16000
        )
        assert params["max_sentence_silence"] == ms

    @given(ms=st.integers(max_value=199) | st.integers(min_value=6001))
    def test_out_of_range(self, ms: int) -> None:
        """Anything outside 200–6000 ms is refused when the options are built."""
        with pytest.raises(ValueError, match="200–6000"):
            RecognitionOptions(max_sentence_silence=ms)

    def test_out_of_range_from_config(self) -> None:
        """Decoded options report the bound with the field's path."""
        with pytest.raises(msgspec.ValidationError, match="200–6000"):
            msgspec.convert({"max_sentence_silence": 100}, RecognitionOptions)

    def test_unknown_option_from_config(self) -> None:
        """A misspelt option in a config is an error, not silently dropped."""
        with pytest.raises(msgspec.ValidationError, match="heartbeet"):
            msgspec.convert({"heartbeet": True}, RecognitionOptions)


class TestModelTable:
    def test_unknown_model_lists_known(self) -> None:
        """An unknown model name is refused with every known model listed."""
        with pytest.raises(ConfigError) as info:
            get_model("paraformer-realtime-v3")
        message = str(info.value)
        assert "'paraformer-realtime-v3'" in message
        for name in MODELS:
            assert name in message

    @pytest.mark.parametrize("name", sorted(MODELS))
    def test_known_model(self, name: str) -> None:
        """Every table entry is found under its own name."""
        assert get_model(name).name == name

    def test_inference_models(self) -> None:
        """The inference-protocol models are the paraformer, fun-asr and gummy families."""
        inference = {name for name, spec in MODELS.items() if spec.protocol == "inference"}
        assert inference == {
            "paraformer-realtime-v2",
            "paraformer-realtime-8k-v2",
            "fun-asr-realtime",
            "gummy-realtime-v1",
            "gummy-chat-v1",
        }

    @pytest.mark.parametrize(
        ("region", "url"),
        [
            ("cn", "wss://dashscope.aliyuncs.com/api-ws/v1/inference"),
            ("intl", "wss://dashscope-intl.aliyuncs.com/api-ws/v1/inference"),
        ],
    )
    def test_inference_url(self, region: str, url: str) -> None:
        """Each region maps to its inference endpoint (§1.1)."""
        assert inference_url(region) == url

    def test_unknown_region(self) -> None:
        """An unknown region is refused with the valid ones named."""
        with pytest.raises(ConfigError, match="cn or intl"):
            inference_url("eu")
