"""Word error rate, for scoring recognizers against a known transcript.

Both sides are normalized the same way before they are compared: lowercased,
punctuation other than in-word apostrophes removed, split on whitespace.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["WordErrors", "normalize_words", "word_error_rate", "word_errors"]

_NOT_WORD = re.compile(r"[^\w\s']+")
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


class WordErrors(msgspec.Struct, frozen=True):
    """The edit operations of a minimal word alignment of a hypothesis to a reference."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference word; an empty reference counts as one word."""
        return self.errors / max(self.reference_words, 1)


def normalize_words(text: str | Sequence[str]) -> list[str]:
    """Lowercase words without punctuation; a sequence is joined with spaces first."""
    if not isinstance(text, str):
        text = " ".join(text)
    text = _LOOSE_APOSTROPHE.sub(" ", _NOT_WORD.sub(" ", text.lower()).replace("_", " "))
    return text.split()


def word_errors(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> WordErrors:
    """Count substitutions, deletions and insertions (Levenshtein over normalized words).

    Ties between alignments of equal cost prefer substitutions, then deletions.
    """
    ref = normalize_words(reference)
    hyp = normalize_words(hypothesis)
    # Each cell holds (cost, substitutions, deletions, insertions) of the best alignment of
    # ref[:i] to hyp[:j]; one row is enough since a cell only looks up and to the left.
    row = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, ref_word in enumerate(ref, start=1):
        diagonal = row[0]
        row[0] = (i, 0, i, 0)
        for j, hyp_word in enumerate(hyp, start=1):
            cost, sub, dele, ins = diagonal
            diagonal = row[j]
            best = (
                (cost, sub, dele, ins) if ref_word == hyp_word else (cost + 1, sub + 1, dele, ins)
            )
            up = row[j]
            if up[0] + 1 < best[0]:
                best = (up[0] + 1, up[1], up[2] + 1, up[3])
            left = row[j - 1]
            if left[0] + 1 < best[0]:
                best = (left[0] + 1, left[1], left[2], left[3] + 1)
            row[j] = best
    _, sub, dele, ins = row[-1]
    return WordErrors(substitutions=sub, deletions=dele, insertions=ins, reference_words=len(ref))


def word_error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """``(substitutions + deletions + insertions) / len(reference words)``.

    An empty reference counts as one word, so the rate is 0.0 for an empty hypothesis and
    the number of inserted words otherwise.

    >>> word_error_rate("the cat sat", "the cat sat down")
    0.3333333333333333
    """
    return word_errors(reference, hypothesis).rate
