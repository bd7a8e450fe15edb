"""SimConfig and make_recognizer."""

from __future__ import annotations

import msgspec
import pytest

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.sphinx import SphinxRecognizer
from adapters.sim import SimConfig, make_recognizer
from engine.errors import ConfigError


class TestSimConfig:
    def test_defaults_are_the_service_timers(self) -> None:
        config = SimConfig()
        assert (config.host, config.port, config.api_keys) == ("127.0.0.1", 0, None)
        assert (config.idle_timeout_s, config.silence_timeout_s) == (23.0, 60.0)

    def test_unknown_field_is_an_error(self) -> None:
        with pytest.raises(msgspec.ValidationError, match="idle_timeout"):
            msgspec.convert({"idle_timeout": 5}, SimConfig)

    @pytest.mark.parametrize(
        "fields",
        [
            {"idle_timeout_s": 0},
            {"port": 70000},
            {"api_keys": [""]},
            {"feed_chunk_ms": 0},
            {"feed_batch_ms": 500},
        ],
    )
    def test_invalid(self, fields: dict[str, object]) -> None:
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(fields, SimConfig)


class TestMakeRecognizer:
    def test_kinds(self) -> None:
        assert isinstance(make_recognizer("sphinx", workers=1), SphinxRecognizer)
        tone = make_recognizer("scripted")
        assert isinstance(tone, ScriptedRecognizer)
        assert tone.name == "scripted-tone"
        script = make_recognizer("scripted", sentences=["hello world"])
        assert script.name == "scripted-transcript"

    def test_errors(self) -> None:
        with pytest.raises(ConfigError, match="unknown recognizer"):
            make_recognizer("whisper")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="bad option"):
            make_recognizer("sphinx", colour="blue")
