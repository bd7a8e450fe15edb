"""Hypotheses to paraformer-shaped sentences, and the partial filter."""

from __future__ import annotations

from adapters.recognizers.base import Hypothesis, RecognizedWord
from adapters.sim.shaping import (
    PartialFilter,
    heartbeat_output,
    sentence_output,
    sentence_usage,
)

WORDS = (RecognizedWord(240, 520, "good"), RecognizedWord(520, 1380, "morning"))


def partial(index: int, text: str) -> Hypothesis:
    return Hypothesis(index, 0, None, text)


def final(index: int, text: str) -> Hypothesis:
    return Hypothesis(index, 0, 1000, text, final=True)


class TestSentenceOutput:
    def test_final(self) -> None:
        """Capitalised, closed with a period, sentence_id from 1, every SDK key present."""
        out = sentence_output(Hypothesis(0, 240, 1380, "good morning", WORDS, final=True))
        assert out == {
            "sentence": {
                "sentence_id": 1,
                "begin_time": 240,
                "end_time": 1380,
                "text": "Good morning.",
                "heartbeat": False,
                "sentence_end": True,
                "words": [
                    {"begin_time": 240, "end_time": 520, "text": "Good", "punctuation": ""},
                    {"begin_time": 520, "end_time": 1380, "text": "morning", "punctuation": "."},
                ],
            }
        }
        assert sentence_usage(Hypothesis(0, 240, 1380, "x", final=True)) == {"duration": 2}

    def test_partial(self) -> None:
        """end_time null (the key is present), no period, no usage."""
        out = sentence_output(Hypothesis(2, 240, None, "good morn", WORDS[:1]))["sentence"]
        assert (out["sentence_id"], out["text"], out["end_time"], out["sentence_end"]) == (
            3,
            "Good morn",
            None,
            False,
        )
        assert "end_time" in out
        assert sentence_usage(Hypothesis(0, 0, None, "x")) is None

    def test_existing_punctuation_kept(self) -> None:
        assert sentence_output(final(0, "really?"))["sentence"]["text"] == "Really?"
        assert sentence_output(final(0, ""))["sentence"]["text"] == ""

    def test_heartbeat(self) -> None:
        assert heartbeat_output(61000) == {
            "sentence": {
                "sentence_id": 0,
                "begin_time": 61000,
                "end_time": None,
                "text": "",
                "heartbeat": True,
                "sentence_end": False,
                "words": [],
            }
        }


class TestPartialFilter:
    def test_keeps_the_newest_partial_per_sentence(self) -> None:
        gate = PartialFilter(0)
        assert gate.select([partial(0, "a"), partial(0, "a b"), partial(1, "c")], 100) == [
            partial(0, "a b"),
            partial(1, "c"),
        ]

    def test_unchanged_text_is_dropped(self) -> None:
        gate = PartialFilter(0)
        assert gate.select([partial(0, "a")], 100) == [partial(0, "a")]
        assert gate.select([partial(0, "a")], 200) == []

    def test_interval(self) -> None:
        gate = PartialFilter(200)
        assert gate.select([partial(0, "a")], 100) == [partial(0, "a")]
        assert gate.select([partial(0, "a b")], 250) == []
        assert gate.select([partial(0, "a b c")], 300) == [partial(0, "a b c")]

    def test_a_lone_final_passes_and_resets_its_sentence(self) -> None:
        """A final alone (the one-hypothesis path) passes and forgets the sentence's partial."""
        gate = PartialFilter(10_000)
        assert gate.select([partial(0, "a")], 0) == [partial(0, "a")]
        assert gate.select([final(0, "a")], 10) == [final(0, "a")]
        assert gate.select([partial(0, "a")], 20) == [partial(0, "a")]

    def test_finals_always_pass_and_supersede(self) -> None:
        gate = PartialFilter(10_000)
        assert gate.select([partial(0, "a")], 0) == [partial(0, "a")]
        assert gate.select([partial(0, "a b"), final(0, "a b c")], 10) == [final(0, "a b c")]
        assert gate.select([partial(0, "x")], 20) == [partial(0, "x")]
