"""The livetranslate target-language table and its pre-connect check."""

from __future__ import annotations

import msgspec
import pytest

from adapters.dashscope.languages import NAMES, TARGETS, check_target, targets_for
from adapters.dashscope.models import MODELS
from engine.errors import ConfigError

QWEN3 = "qwen3-livetranslate-flash-realtime"
QWEN35 = "qwen3.5-livetranslate-flash-realtime"


class TestTable:
    def test_qwen3_has_18_targets(self) -> None:
        """qwen3: 18 targets, 11 spoken and 7 text-only, no overlap."""
        table = TARGETS[QWEN3]
        assert (len(table.all), len(table.audio), len(table.text_only)) == (18, 11, 7)
        assert not table.audio & table.text_only
        assert table.complete

    def test_every_code_has_a_name(self) -> None:
        for table in TARGETS.values():
            assert table.all <= NAMES.keys()

    def test_livetranslate_models_have_tables(self) -> None:
        """Every livetranslate model of the model table can be checked."""
        for spec in MODELS.values():
            if spec.family == "livetranslate":
                assert targets_for(spec.name).all

    def test_unknown_model(self) -> None:
        with pytest.raises(ConfigError, match="no target-language table; fix: use one of"):
            targets_for("gummy-realtime-v1")


SPOKEN = [(model, lang) for model in (QWEN3, QWEN35) for lang in sorted(TARGETS[model].audio)]


class TestCheck:
    @pytest.mark.parametrize(("model", "lang"), SPOKEN)
    def test_spoken_targets(self, model: str, lang: str) -> None:
        check_target(model, lang, want_audio=True)
        check_target(model, lang, want_audio=False)

    @pytest.mark.parametrize("lang", sorted(TARGETS[QWEN3].text_only))
    def test_text_only_targets(self, lang: str) -> None:
        """A text-only target is fine for text output and refused for speech, naming both fixes."""
        check_target(QWEN3, lang, want_audio=False)
        with pytest.raises(ConfigError) as info:
            check_target(QWEN3, lang, want_audio=True)
        message = str(info.value)
        assert f"cannot speak {lang!r}" in message
        assert "text-only targets: ar, el, hi, id, th, tr, vi" in message
        assert "fix: set modalities to text only" in message
        assert "de, en, es, fr, it, ja, ko, pt, ru, yue, zh" in message

    def test_unknown_target_complete_table(self) -> None:
        with pytest.raises(ConfigError, match=r"cannot translate into 'xx'; fix: use one of ar"):
            check_target(QWEN3, "xx", want_audio=False)

    def test_unknown_target_incomplete_table(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A table marked incomplete says so, and where to extend it."""
        partial = msgspec.structs.replace(TARGETS[QWEN3], complete=False)
        monkeypatch.setitem(TARGETS, QWEN3, partial)
        with pytest.raises(ConfigError, match=r"incomplete.*languages\.py"):
            check_target(QWEN3, "sw", want_audio=False)

    def test_codes_are_exact(self) -> None:
        """Codes are compared as given: 'EN' or 'zh-CN' are not targets."""
        for lang in ("EN", "zh-CN", ""):
            with pytest.raises(ConfigError):
                check_target(QWEN3, lang, want_audio=False)
