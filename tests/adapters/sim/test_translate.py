"""The simulator's translator: fixture lookups, fuzzy matches, previews, labelled stand-ins."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.sim.translate import DEMO_TABLE, ScriptedTranslator, StandInTranslator, stand_in
from engine.errors import ConfigError
from tests.conftest import DEMO_AUDIO

ROWS = [
    {
        "en": "the weather today is sunny and warm",
        "zh": "今天天气晴朗温暖。",
        "de": "Das Wetter ist heute sonnig und warm.",
    },
    {"en": "there are twelve people in the room", "zh": "房间里有十二个人。"},
]


def test_exact_sentence_gets_its_scripted_translation() -> None:
    tr = ScriptedTranslator(ROWS)
    r = tr.translate("The weather today is sunny and warm.", "zh", final=True)
    assert (r.text, r.stash, r.scripted) == ("今天天气晴朗温暖。", "", True)


def test_recognizer_errors_still_match_the_row() -> None:
    tr = ScriptedTranslator(ROWS)
    # pocketsphinx-style slips: a dropped word and a swapped one
    r = tr.translate("the weather to day is sunny warm", "de", final=True)
    assert r.text == "Das Wetter ist heute sonnig und warm."
    assert r.scripted


def test_unknown_sentence_is_a_labelled_stand_in() -> None:
    tr = ScriptedTranslator(ROWS)
    r = tr.translate("completely different words here", "zh", final=True)
    assert r == stand_in("completely different words here", "zh")
    assert r.text == "[zh stand-in] completely different words here"
    assert not r.scripted


def test_target_missing_from_the_row_is_a_stand_in() -> None:
    tr = ScriptedTranslator(ROWS)
    r = tr.translate("there are twelve people in the room", "de", final=True)
    assert not r.scripted and r.text.startswith("[de stand-in]")


def test_any_language_of_a_row_is_a_source() -> None:
    tr = ScriptedTranslator(ROWS)
    r = tr.translate("Das Wetter ist heute sonnig und warm", "en", final=True)
    assert r.text == "the weather today is sunny and warm"


def test_previews_grow_towards_the_final_translation() -> None:
    tr = ScriptedTranslator(ROWS)
    words = ["the", "weather", "today", "is", "sunny", "and", "warm"]
    seen = []
    for n in range(2, len(words) + 1):
        r = tr.translate(" ".join(words[:n]), "de", final=False)
        assert r.scripted
        seen.append(r.text)
    final = "Das Wetter ist heute sonnig und warm."
    assert all(final.startswith(s) for s in seen)
    assert [len(s) for s in seen] == sorted(len(s) for s in seen)
    assert seen[-1] == final


def test_unspaced_previews_grow_by_characters() -> None:
    tr = ScriptedTranslator(ROWS)
    r = tr.translate("there are twelve", "zh", final=False)
    assert "房间里有十二个人。".startswith(r.text)
    assert len(r.stash) == 1


def test_stand_in_translator_labels_everything() -> None:
    r = StandInTranslator().translate("hello there", "ja", final=False)
    assert r.text == "[ja stand-in] hello there" and not r.scripted


def test_empty_source_is_empty() -> None:
    assert ScriptedTranslator(ROWS).translate("", "zh", final=True).text == ""


def test_demo_table_loads_and_covers_the_demo_sentences() -> None:
    tr = ScriptedTranslator.load(DEMO_TABLE)
    assert {"en", "zh", "ja", "es", "fr", "de"} <= tr.languages()
    texts = (DEMO_AUDIO / "weather.txt").read_text().splitlines()
    for line in texts:
        assert tr.translate(line, "fr", final=True).scripted


def test_bad_table_is_one_clear_error(tmp_path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text("[[sentence]]\nen = 3\n")
    with pytest.raises(ConfigError, match=r"bad translation table .*fix:"):
        ScriptedTranslator.load(bad)
    with pytest.raises(ConfigError, match="cannot read the translation table"):
        ScriptedTranslator.load(tmp_path / "missing.toml")


@given(st.text(max_size=60), st.sampled_from(["en", "zh", "de", "ja"]), st.booleans())
def test_translate_never_raises_and_labels_stand_ins(source: str, target: str, final: bool) -> None:
    r = ScriptedTranslator(ROWS).translate(source, target, final=final)
    if not r.scripted:
        assert r.text.startswith(f"[{target} stand-in]")
