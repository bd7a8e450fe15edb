from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.recognizers.wer import WordErrors, normalize_words, word_error_rate, word_errors

WORDS = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8)


class TestNormalizeWords:
    def test_lowercases_and_drops_punctuation(self) -> None:
        """Case, punctuation and extra spaces do not count; in-word apostrophes stay."""
        assert normalize_words("  Hello, World! It's 'fine'. ") == [
            "hello",
            "world",
            "it's",
            "fine",
        ]

    def test_accepts_a_word_sequence(self) -> None:
        """A sequence of words is treated like the text of them joined by spaces."""
        assert normalize_words(["Good", "morning."]) == ["good", "morning"]


class TestWordErrors:
    def test_identical(self) -> None:
        """Identical texts have no errors."""
        assert word_error_rate("the cat sat", "The cat sat.") == 0.0

    @pytest.mark.parametrize(
        ("ref", "hyp", "expected"),
        [
            ("a b c", "a x c", WordErrors(1, 0, 0, 3)),
            ("a b c", "a c", WordErrors(0, 1, 0, 3)),
            ("a b c", "a b x c", WordErrors(0, 0, 1, 3)),
            ("a b c d", "x a b", WordErrors(0, 2, 1, 4)),
            ("a b", "", WordErrors(0, 2, 0, 2)),
            ("", "a b", WordErrors(0, 0, 2, 0)),
        ],
    )
    def test_operations(self, ref: str, hyp: str, expected: WordErrors) -> None:
        """Substitutions, deletions and insertions are counted by a minimal alignment."""
        assert word_errors(ref, hyp) == expected

    def test_rate(self) -> None:
        """The rate is errors per reference word; an empty reference counts as one word."""
        assert word_error_rate("the cat sat", "the cat sat down") == pytest.approx(1 / 3)
        assert word_error_rate("a b c d", "a x c") == pytest.approx(0.5)
        assert word_error_rate("", "") == 0.0
        assert word_error_rate("", "a b") == 2.0

    @given(ref=WORDS, hyp=WORDS)
    def test_bounds(self, ref: list[str], hyp: list[str]) -> None:
        """Errors lie between the length difference and the longer length."""
        errors = word_errors(ref, hyp)
        assert abs(len(ref) - len(hyp)) <= errors.errors <= max(len(ref), len(hyp))
        assert errors.deletions - errors.insertions == len(ref) - len(hyp)
        assert word_errors(hyp, ref).errors == errors.errors
        assert (errors.errors == 0) == (ref == hyp)
