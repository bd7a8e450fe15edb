"""The scripted recognizer's transcript labeler: the k-th sentence gets the k-th known text.

A :class:`~.scripted.Labeler` for audio that is not tone-coded (speech files, any
noise): the VAD finds the sentences, this names them from a list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import RecognizedWord
from .tonecode import split_words

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import numpy.typing as npt

__all__ = ["TranscriptLabeler"]


class TranscriptLabeler:
    """The k-th sentence of a session gets the k-th known sentence, words spread evenly.

    Partials reveal one word per ``ms_per_word`` of speech heard, never the last word.
    Sentences beyond the transcript get no words (and so no hypotheses).
    """

    needs_audio = False

    def __init__(self, sentences: Sequence[str], *, ms_per_word: int = 300) -> None:
        self._sentences = [split_words(s) for s in sentences]
        self._ms_per_word = ms_per_word
        self._k = 0
        self._begin_ms = 0
        self._speech_ms = 0
        self._shown = 0

    def heard(
        self, begin_ms: int, end_ms: int, samples: npt.NDArray[np.int16], samples_begin_ms: float
    ) -> list[RecognizedWord]:
        if self._k >= len(self._sentences):
            return []
        if self._speech_ms == 0:
            self._begin_ms = begin_ms
        self._speech_ms += end_ms - begin_ms
        words = self._sentences[self._k]
        self._shown = max(self._shown, min(self._speech_ms // self._ms_per_word, len(words) - 1))
        return _spread(words[: self._shown], self._begin_ms, end_ms)

    def finish(self, begin_ms: int, end_ms: int, *, keep: bool) -> list[RecognizedWord]:
        self._speech_ms = self._shown = 0
        if not keep or self._k >= len(self._sentences):
            return []
        self._k += 1
        return _spread(self._sentences[self._k - 1], begin_ms, end_ms)


def _spread(words: list[str], begin_ms: int, end_ms: int) -> list[RecognizedWord]:
    step = (end_ms - begin_ms) / max(len(words), 1)
    return [
        RecognizedWord(begin_ms + round(i * step), begin_ms + round((i + 1) * step), word)
        for i, word in enumerate(words)
    ]
