"""Session settings (client, strict) and session merging (server, lenient) of the realtime protocol."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from realtime_helpers import MODEL, SESSION_ID

from adapters.dashscope.realtime_session import (
    ASR_MODEL,
    Rejection,
    ServerVad,
    SessionSettings,
    TranscriptionSettings,
    TranslationSettings,
    VoiceCloneOptions,
    default_session,
    merge_session,
)
from adapters.dashscope.realtime_wire import (
    WireSession,
    WireSessionConfig,
    WireTranscription,
    WireTurnDetection,
)

DEFAULT = default_session(MODEL, SESSION_ID)


def wire(settings_: SessionSettings) -> dict[str, Any]:
    encoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(settings_.to_wire()))
    return encoded


def merge(session: dict[str, Any], current: WireSession = DEFAULT) -> WireSession | Rejection:
    return merge_session(current, msgspec.convert(session, WireSessionConfig), DEFAULT)


def accepted(session: dict[str, Any], current: WireSession = DEFAULT) -> WireSession:
    merged = merge(session, current)
    assert isinstance(merged, WireSession), merged
    return merged


def rejected(session: dict[str, Any]) -> Rejection:
    merged = merge(session)
    assert isinstance(merged, Rejection), merged
    return merged


class TestSettings:
    def test_to_wire_defaults(self) -> None:
        """Every value goes out explicitly; optional ones (source language, phrases) only when set."""
        assert wire(SessionSettings()) == {
            "modalities": ["text", "audio"],
            "voice": "Tina",
            "sample_rate": 16000,
            "input_audio_format": "pcm",
            "output_audio_format": "pcm",
            "input_audio_transcription": {"model": ASR_MODEL},
            "turn_detection": {"type": "server_vad", "threshold": 0.2, "silence_duration_ms": 1000},
            "translation": {"language": "en"},
        }

    def test_to_wire_everything(self) -> None:
        """Source language, phrases, manual mode, ASR off and clone options all reach the wire."""
        full = SessionSettings(
            modalities=("text",),
            voice="default",
            sample_rate=8000,
            input_audio_format="opus",
            input_audio_transcription=TranscriptionSettings(model=None, language="zh"),
            turn_detection=None,
            translation=TranslationSettings(language="ja", phrases={"通义千问": "Qwen"}),
            enable_voice_clone=True,
            voice_clone_options=VoiceCloneOptions(frequency="once"),
        )
        assert wire(full) == {
            "modalities": ["text"],
            "voice": "default",
            "sample_rate": 8000,
            "input_audio_format": "opus",
            "output_audio_format": "pcm",
            "input_audio_transcription": {"model": None, "language": "zh"},
            "turn_detection": None,
            "translation": {"language": "ja", "corpus": {"phrases": {"通义千问": "Qwen"}}},
            "enable_voice_clone": True,
            "voice_clone_options": {"frequency": "once"},
        }

    def test_vad_padding(self) -> None:
        vad = wire(SessionSettings(turn_detection=ServerVad(threshold=-0.5, prefix_padding_ms=0)))
        assert vad["turn_detection"] == {
            "type": "server_vad",
            "threshold": -0.5,
            "silence_duration_ms": 1000,
            "prefix_padding_ms": 0,
        }

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"modalities": ("audio",)}, "not supported"),
            ({"modalities": ("text", "text")}, "not supported"),
            ({"modalities": ()}, "not supported"),
            ({"sample_rate": 44100}, "8000 or 16000"),
            ({"input_audio_format": "pcm16"}, "pcm or opus"),
            ({"output_audio_format": "pcm24"}, "must be pcm"),
            (
                {
                    "enable_voice_clone": True,
                    "voice_clone_options": VoiceCloneOptions(frequency="always"),
                },
                "must be 'default'",
            ),
        ],
    )
    def test_invalid(self, kwargs: dict[str, Any], match: str) -> None:
        """Invalid combinations fail at construction, with a message that names the fix."""
        with pytest.raises(ValueError, match=match):
            SessionSettings(**kwargs)

    @pytest.mark.parametrize(
        ("factory", "match"),
        [
            (lambda: ServerVad(threshold=1.5), "threshold"),
            (lambda: ServerVad(silence_duration_ms=100), "silence_duration_ms"),
            (lambda: ServerVad(prefix_padding_ms=-1), "prefix_padding_ms"),
            (lambda: TranslationSettings(language=""), "must not be empty"),
            (lambda: VoiceCloneOptions(frequency="sometimes"), "never, once or always"),  # type: ignore[arg-type]
        ],
    )
    def test_invalid_parts(self, factory: Any, match: str) -> None:
        with pytest.raises(ValueError, match=match):
            factory()

    def test_clone_rule_allows(self) -> None:
        """'never' pairs with a pre-cloned voice; clone options without the flag are inert."""
        SessionSettings(
            voice="my-clone", enable_voice_clone=True, voice_clone_options=VoiceCloneOptions()
        )
        SessionSettings(voice="Tina", voice_clone_options=VoiceCloneOptions(frequency="once"))

    def test_decoding_is_strict(self) -> None:
        """Settings are our format: an unknown field is an error with a path."""
        with pytest.raises(msgspec.ValidationError, match="bogus"):
            msgspec.convert({"bogus": 1}, SessionSettings)
        with pytest.raises(msgspec.ValidationError, match="modalities"):
            msgspec.convert({"modalities": ["audio"]}, SessionSettings)


class TestMerge:
    def test_absent_keeps_null_resets(self) -> None:
        """Absent fields keep their value; null voice/rate/formats return to the defaults."""
        current = accepted({"voice": "Cherry", "sample_rate": 8000})
        assert (current.voice, current.sample_rate) == ("Cherry", 8000)
        again = accepted({"translation": {"language": "fr"}}, current)
        assert (again.voice, again.sample_rate) == ("Cherry", 8000)
        reset = accepted({"voice": None, "sample_rate": None}, again)
        assert (reset.voice, reset.sample_rate) == ("Tina", 16000)

    def test_null_turn_detection_is_manual(self) -> None:
        manual = accepted({"turn_detection": None})
        assert manual.turn_detection is None
        back = accepted({"turn_detection": {"silence_duration_ms": 500}}, manual)
        assert back.turn_detection == WireTurnDetection(
            type="server_vad",
            threshold=0.2,
            prefix_padding_ms=300,
            silence_duration_ms=500,
            create_response=True,
            interrupt_response=True,
        )

    def test_vad_nulls_reset_inside(self) -> None:
        merged = accepted({"turn_detection": {"threshold": None, "silence_duration_ms": 400}})
        assert isinstance(merged.turn_detection, WireTurnDetection)
        assert merged.turn_detection.threshold == 0.2
        assert merged.turn_detection.silence_duration_ms == 400

    @pytest.mark.parametrize(
        "transcription", [None, {"model": None}, {"model": None, "language": "zh"}]
    )
    def test_asr_off(self, transcription: Any) -> None:
        merged = accepted({"input_audio_transcription": transcription})
        assert isinstance(merged.input_audio_transcription, WireTranscription)
        assert merged.input_audio_transcription.model is None

    def test_asr_params_shape_keeps_model(self) -> None:
        """The qwen3-asr TranscriptionParams shape ({language, corpus}) keeps the ASR model."""
        merged = accepted(
            {
                "input_audio_format": "pcm",
                "sample_rate": 16000,
                "input_audio_transcription": {"language": "zh", "corpus": {"text": "会议"}},
            }
        )
        assert merged.input_audio_transcription == WireTranscription(
            model=ASR_MODEL, language="zh", corpus={"text": "会议"}
        )

    def test_nested_partial_update(self) -> None:
        """A translation update without corpus keeps the phrases already set."""
        phrases = {"corpus": {"phrases": {"a": "b"}}}
        current = accepted({"translation": {"language": "de", **phrases}})
        merged = accepted({"translation": {"language": "fr"}}, current)
        assert msgspec.to_builtins(merged.translation) == {"language": "fr", **phrases}
        reset = accepted({"translation": {"language": None}}, merged)
        assert msgspec.to_builtins(reset.translation) == {"language": "en", **phrases}

    @pytest.mark.parametrize("fmt", ["pcm", "opus", "pcm16", "pcm24"])
    def test_input_formats(self, fmt: str) -> None:
        assert accepted({"input_audio_format": fmt}).input_audio_format == fmt

    @pytest.mark.parametrize(
        ("session", "param"),
        [
            ({"modalities": ["audio"]}, "session.modalities"),
            ({"modalities": ["text", "text"]}, "session.modalities"),
            ({"modalities": ["text", "video"]}, "session.modalities"),
            ({"sample_rate": 44100}, "session.sample_rate"),
            ({"input_audio_format": "mp3"}, "session.input_audio_format"),
            ({"output_audio_format": "opus"}, "session.output_audio_format"),
            ({"turn_detection": {"type": "semantic_vad"}}, "session.turn_detection.type"),
            ({"turn_detection": {"threshold": 2}}, "session.turn_detection.threshold"),
            (
                {"turn_detection": {"silence_duration_ms": 100}},
                "session.turn_detection.silence_duration_ms",
            ),
            (
                {"turn_detection": {"prefix_padding_ms": -5}},
                "session.turn_detection.prefix_padding_ms",
            ),
            ({"translation": {"language": ""}}, "session.translation.language"),
            (
                {"voice_clone_options": {"frequency": "sometimes"}},
                "session.voice_clone_options.frequency",
            ),
            (
                {"enable_voice_clone": True, "voice_clone_options": {"frequency": "always"}},
                "session.voice",
            ),
        ],
    )
    def test_rejections(self, session: dict[str, Any], param: str) -> None:
        """Each invalid value is an invalid_value error naming its param."""
        rejection = rejected(session)
        assert (rejection.code, rejection.param) == ("invalid_value", param)

    def test_modalities_message_is_the_docs(self) -> None:
        assert rejected({"modalities": ["audio"]}).message == (
            "Invalid modalities: ['audio']. Supported combinations are: ['text'] and ['audio', 'text']."
        )

    def test_default_voice_per_model(self) -> None:
        assert default_session("qwen3-livetranslate-flash-realtime", "s").voice == "Cherry"
        assert DEFAULT.voice == "Tina"


vads = st.none() | st.builds(
    ServerVad,
    threshold=st.floats(-1.0, 1.0),
    silence_duration_ms=st.integers(200, 6000),
    prefix_padding_ms=st.none() | st.integers(0, 2000),
)
valid_settings = st.builds(
    SessionSettings,
    modalities=st.sampled_from([("text",), ("text", "audio"), ("audio", "text")]),
    voice=st.sampled_from(["Tina", "Cherry"]),
    sample_rate=st.sampled_from([8000, 16000]),
    input_audio_format=st.sampled_from(["pcm", "opus"]),
    input_audio_transcription=st.builds(
        TranscriptionSettings,
        model=st.none() | st.just(ASR_MODEL),
        language=st.none() | st.sampled_from(["zh", "en"]),
    ),
    turn_detection=vads,
    translation=st.builds(
        TranslationSettings,
        language=st.sampled_from(["en", "ja", "yue"]),
        phrases=st.dictionaries(st.text(min_size=1, max_size=4), st.text(max_size=4), max_size=2),
    ),
)


class TestRoundTrip:
    @settings(max_examples=100, deadline=None)
    @given(chosen=valid_settings)
    def test_settings_take_effect(self, chosen: SessionSettings) -> None:
        """Whatever valid settings the client sends, the merged session says exactly that."""
        merged = accepted(wire(chosen))
        assert merged.modalities == list(chosen.modalities)
        assert (merged.voice, merged.sample_rate) == (chosen.voice, chosen.sample_rate)
        assert merged.input_audio_format == chosen.input_audio_format
        transcription = merged.input_audio_transcription
        assert isinstance(transcription, WireTranscription)
        assert transcription.model == chosen.input_audio_transcription.model
        vad = merged.turn_detection
        if chosen.turn_detection is None:
            assert vad is None
        else:
            assert isinstance(vad, WireTurnDetection)
            assert vad.threshold == chosen.turn_detection.threshold
            assert vad.silence_duration_ms == chosen.turn_detection.silence_duration_ms
        assert msgspec.to_builtins(merged.translation)["language"] == chosen.translation.language
