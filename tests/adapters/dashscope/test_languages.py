"""The sourced language tables: qwen3.5 livetranslate targets and gummy source → target pairs.

The pinned sets are the documented ones (see the module docstring of
``adapters/dashscope/languages.py`` for the pages): a change here is a change
of source, not a refactor.
"""

from __future__ import annotations

import pytest

from adapters.dashscope.languages import (
    GUMMY,
    NAMES,
    TARGETS,
    check_gummy_targets,
    check_target,
    gummy_table,
)
from adapters.dashscope.models import MODELS
from engine.errors import ConfigError

QWEN3 = "qwen3-livetranslate-flash-realtime"
QWEN35 = "qwen3.5-livetranslate-flash-realtime"
CHAT = "gummy-chat-v1"
REALTIME = "gummy-realtime-v1"


def codes(spaced: str) -> set[str]:
    return set(spaced.split())


QWEN35_AUDIO = codes(
    "zh en ar de fr es pt id it ko ru th vi ja tr hi ms nl ur nb sv da he fi pl is cs fil fa"
)

# The older, realtime-specific gummy table (10 sources): it must stay allowed.
OLD_REALTIME_PAIRS = [
    ("zh", "en"),
    ("zh", "ja"),
    ("zh", "ko"),
    ("en", "zh"),
    ("en", "ja"),
    ("en", "ko"),
    *((src, tgt) for src in sorted(codes("ja ko yue de fr ru it es")) for tgt in ("zh", "en")),
]


def _one_line_with_fix(error: ConfigError) -> str:
    message = str(error)
    assert "\n" not in message
    assert "; fix: " in message
    return message


class TestLivetranslateTables:
    def test_qwen35_has_60_targets(self) -> None:
        """qwen3.5: 60 targets, 29 spoken and 31 text-only, no overlap, complete."""
        table = TARGETS[QWEN35]
        assert (len(table.all), len(table.audio), len(table.text_only)) == (60, 29, 31)
        assert not table.audio & table.text_only
        assert table.audio == QWEN35_AUDIO
        assert table.complete

    def test_qwen3_codes_are_in_qwen35(self) -> None:
        """3.5's page says the legacy model supports only 18 of its codes."""
        assert TARGETS[QWEN3].all < TARGETS[QWEN35].all

    def test_modality_changed_between_models(self) -> None:
        """Cantonese and Greek are text-only on 3.5; six qwen3 text-only targets speak there."""
        assert {"yue", "el"} <= TARGETS[QWEN35].text_only
        assert "yue" in TARGETS[QWEN3].audio
        assert {"id", "vi", "th", "ar", "hi", "tr"} <= TARGETS[QWEN35].audio
        assert {"id", "vi", "th", "ar", "hi", "tr"} <= TARGETS[QWEN3].text_only

    def test_cantonese_speech_refused_on_qwen35(self) -> None:
        check_target(QWEN35, "yue", want_audio=False)
        with pytest.raises(ConfigError) as info:
            check_target(QWEN35, "yue", want_audio=True)
        message = _one_line_with_fix(info.value)
        assert "cannot speak 'yue' (Cantonese)" in message
        assert "fix: set modalities to text only" in message

    @pytest.mark.parametrize("lang", ["sw", "uk", "ceb", "fil"])
    def test_qwen35_only_targets_refused_on_qwen3(self, lang: str) -> None:
        check_target(QWEN35, lang, want_audio=lang == "fil")
        with pytest.raises(ConfigError, match=rf"{QWEN3} cannot translate into '{lang}'; fix:"):
            check_target(QWEN3, lang, want_audio=False)

    def test_every_code_has_a_name(self) -> None:
        codes = set().union(*(t.all for t in TARGETS.values()))
        for table in GUMMY.values():
            codes |= table.sources | table.targets
        assert codes <= NAMES.keys()
        assert set(NAMES) == TARGETS[QWEN35].all


class TestGummyTable:
    def test_every_gummy_model_has_a_table(self) -> None:
        for spec in MODELS.values():
            if spec.family == "gummy":
                assert gummy_table(spec.name).pairs

    def test_unknown_model(self) -> None:
        with pytest.raises(ConfigError) as info:
            gummy_table(QWEN35)
        message = _one_line_with_fix(info.value)
        assert (
            "no gummy language table; fix: use one of gummy-chat-v1, gummy-realtime-v1" in message
        )

    @pytest.mark.parametrize("model", [CHAT, REALTIME])
    def test_documented_shape(self, model: str) -> None:
        """21 sources, 14 of them recognizable; no pair into itself."""
        table = GUMMY[model]
        assert len(table.sources) == 21
        assert len(table.recognized) == 14
        assert table.recognized <= table.sources
        assert table.targets <= table.sources
        for src, targets in table.pairs.items():
            assert src not in targets

    def test_pinned_rows(self) -> None:
        pairs = GUMMY[CHAT].pairs
        assert pairs["zh"] == codes("en ja ko fr de es ru it")
        assert len(pairs["en"]) == 19
        assert pairs["yue"] == {"zh", "en"}
        assert pairs["th"] == {"ja", "vi", "fr"}
        assert pairs["vi"] == {"ja", "fr"}
        for src in codes("pt id ar hi da ur tr nl ms"):
            assert pairs[src] == {"en"}


class TestCheckGummy:
    @pytest.mark.parametrize("model", [CHAT, REALTIME])
    @pytest.mark.parametrize(("source", "target"), OLD_REALTIME_PAIRS)
    def test_old_realtime_pairs_allowed(self, model: str, source: str, target: str) -> None:
        check_gummy_targets(model, source, [target])

    def test_newer_pairs_allowed(self) -> None:
        check_gummy_targets(CHAT, "zh", ["fr"])
        check_gummy_targets(CHAT, "en", ["ur"])
        check_gummy_targets(CHAT, "ru", ["yue"])

    def test_auto_source(self) -> None:
        """No source: any target some source reaches is allowed; the others are not."""
        check_gummy_targets(CHAT, None, ["en"])
        check_gummy_targets(CHAT, None, ["th", "yue"])
        with pytest.raises(ConfigError) as info:
            check_gummy_targets(CHAT, None, ["el"])
        message = _one_line_with_fix(info.value)
        assert "cannot translate into 'el' from any source; fix: use one of ar, da, de" in message

    def test_bad_pair_names_the_allowed_targets(self) -> None:
        with pytest.raises(ConfigError) as info:
            check_gummy_targets(REALTIME, "pt", ["zh"])
        message = _one_line_with_fix(info.value)
        assert message == (
            "gummy-realtime-v1 cannot translate 'pt' (Portuguese) into 'zh'; "
            "fix: from pt use one of en"
        )

    def test_every_target_checked(self) -> None:
        """Several targets (the docs say one at present) are each checked."""
        check_gummy_targets(CHAT, "zh", ["en", "ja"])
        with pytest.raises(ConfigError, match=r"'zh' \(Chinese\) into 'pt'"):
            check_gummy_targets(CHAT, "zh", ["en", "pt"])

    def test_into_itself_refused(self) -> None:
        with pytest.raises(ConfigError, match=r"'en' \(English\) into 'en'"):
            check_gummy_targets(CHAT, "en", ["en"])

    @pytest.mark.parametrize("source", ["xx", "el", "EN", "zh-CN", ""])
    def test_unknown_source(self, source: str) -> None:
        with pytest.raises(ConfigError) as info:
            check_gummy_targets(CHAT, source, ["en"])
        message = _one_line_with_fix(info.value)
        assert f"cannot take source language {source!r}" in message
        assert "or leave the source unset (auto-detect)" in message

    def test_source_without_targets(self) -> None:
        """Transcription only: the source alone is checked."""
        check_gummy_targets(CHAT, "th", [])
        with pytest.raises(ConfigError):
            check_gummy_targets(CHAT, "xx", [])

    def test_not_a_gummy_model(self) -> None:
        with pytest.raises(ConfigError, match="no gummy language table"):
            check_gummy_targets(QWEN3, "zh", ["en"])
