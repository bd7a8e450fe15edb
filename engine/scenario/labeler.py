"""A labeler for the simulator's scripted recognizer that knows the scenario's audio.

The scripted recognizer (:class:`adapters.recognizers.scripted.ScriptedRecognizer`)
finds sentences with its energy VAD and asks a *labeler* for their words. The
transcript labeler gives the k-th sentence of a *task* the k-th known sentence, which
is wrong after a reconnect (the new task replays from the commit point, mid-file) and
cannot tell two files apart. This one recognizes each sentence by its sound instead:
the loudness envelope (dB per 20 ms) of every sentence of every scenario file is
learned by running the same VAD over the file, and a heard sentence gets the words of
the nearest learned envelope. So a load test's simulator answers exactly the
reference transcript, wherever a task starts, for any mix of files, and the ``wer``
metric measures what the engine lost or duplicated, not the simulator.

A sentence with no learned envelope near it (audio without a reference) gets
``unknown`` words, one per 300 ms of speech.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from adapters.recognizers.base import RecognizedWord
from adapters.recognizers.scripted import ScriptedRecognizer, VadConfig
from adapters.recognizers.tonecode import split_words

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["EnvelopeLabeler", "Sentence", "learn", "recognizer"]

Samples = npt.NDArray[np.int16]
_WINDOW_MS: Final = 20
_SILENT_DB: Final = -90.0
_MAX_DISTANCE_DB: Final = 12.0  # mean |dB| difference beyond which a sentence is unknown
_MS_PER_WORD: Final = 300


class Sentence:
    """A learned sentence: its envelope and its words."""

    __slots__ = ("envelope", "words")

    def __init__(self, envelope: npt.NDArray[np.float64], words: list[str]) -> None:
        self.envelope = envelope
        self.words = words


class _Pieces:
    """The speech pieces of the sentence being heard, to build its envelope."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.parts: list[tuple[float, Samples]] = []

    def envelope(self, begin_ms: int, end_ms: int) -> npt.NDArray[np.float64]:
        n = max(1, -(-(end_ms - begin_ms) // _WINDOW_MS))
        energy = np.zeros(n)
        count = np.zeros(n)
        step = self.rate * _WINDOW_MS // 1000
        for start_ms, samples in self.parts:
            first = round((start_ms - begin_ms) * self.rate / 1000)
            whole = len(samples) // step
            if whole == 0:
                continue
            x = samples[: whole * step].astype(np.float64).reshape(whole, step)
            means = np.einsum("ij,ij->i", x, x) / step
            w = (first + np.arange(whole) * step) // step
            keep = (w >= 0) & (w < n)
            np.add.at(energy, w[keep], means[keep])
            np.add.at(count, w[keep], 1)
        db = np.full(n, _SILENT_DB)
        heard = count > 0
        db[heard] = 10 * np.log10(np.maximum(energy[heard] / count[heard], 1e-9) / 32768.0**2)
        out: npt.NDArray[np.float64] = np.maximum(db, _SILENT_DB)
        return out


def _distance(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    best = np.inf
    for shift in (-2, -1, 0, 1, 2):
        x, y = (a[shift:], b) if shift >= 0 else (a, b[-shift:])
        n = min(len(x), len(y))
        if n == 0:
            continue
        d = float(np.abs(x[:n] - y[:n]).mean()) + 20.0 * abs(len(x) - len(y)) / max(len(x), len(y))
        best = min(best, d)
    return best


class EnvelopeLabeler:
    """A :class:`~adapters.recognizers.scripted.Labeler`: the words of the nearest learned
    sentence. Partials show the nearest sentence's first words, one per 300 ms heard."""

    needs_audio = True

    def __init__(self, rate: int, sentences: Sequence[Sentence]) -> None:
        self._sentences = sentences
        self._pieces = _Pieces(rate)
        self._begin_ms: int | None = None
        self._guess: list[str] | None = None  # a partial's words: matched once per sentence

    def _best(self, begin_ms: int, end_ms: int) -> list[str] | None:
        envelope = self._pieces.envelope(begin_ms, end_ms)
        scored = [(_distance(envelope, s.envelope), s.words) for s in self._sentences]
        if not scored:
            return None
        distance, words = min(scored, key=lambda x: x[0])
        return words if distance <= _MAX_DISTANCE_DB else None

    def heard(
        self, begin_ms: int, end_ms: int, samples: Samples, samples_begin_ms: float
    ) -> list[RecognizedWord]:
        if self._begin_ms is None:
            self._begin_ms = begin_ms
        self._pieces.parts.append((samples_begin_ms, samples))
        if self._guess is None:  # partials are shown, not scored: match once, on the first piece
            self._guess = self._best(self._begin_ms, end_ms) or ["unknown"]
        words = self._guess
        shown = min(max(1, (end_ms - self._begin_ms) // _MS_PER_WORD), max(len(words) - 1, 1))
        return _spread(words[:shown], self._begin_ms, end_ms)

    def finish(self, begin_ms: int, end_ms: int, *, keep: bool) -> list[RecognizedWord]:
        try:
            if not keep:
                return []
            words = self._best(begin_ms, end_ms)
            if words is None:
                words = ["unknown"] * max(1, (end_ms - begin_ms) // _MS_PER_WORD)
            return _spread(words, begin_ms, end_ms)
        finally:
            self._pieces = _Pieces(self._pieces.rate)
            self._begin_ms = None
            self._guess = None


def _spread(words: list[str], begin_ms: int, end_ms: int) -> list[RecognizedWord]:
    step = (end_ms - begin_ms) / max(len(words), 1)
    return [
        RecognizedWord(begin_ms + round(i * step), begin_ms + round((i + 1) * step), word)
        for i, word in enumerate(words)
    ]


class _Recording(EnvelopeLabeler):
    """Learns: records each sentence's envelope instead of matching it."""

    def __init__(self, rate: int) -> None:
        super().__init__(rate, ())
        self.learned: list[npt.NDArray[np.float64]] = []

    def finish(self, begin_ms: int, end_ms: int, *, keep: bool) -> list[RecognizedWord]:
        if keep:
            self.learned.append(self._pieces.envelope(begin_ms, end_ms))
        self._pieces = _Pieces(self._pieces.rate)
        self._begin_ms = None
        return [RecognizedWord(begin_ms, end_ms, "x")] if keep else []


def learn(
    pcm: Samples, rate: int, reference: Sequence[str], *, vad: VadConfig | None = None
) -> list[Sentence]:
    """The sentences of one file (int16 mono at ``rate``), paired in order with the
    reference's lines (extra sentences on either side are left out)."""
    labeler = _Recording(rate)
    stream = ScriptedRecognizer(lambda _r: labeler, vad=vad).stream(rate)
    stream.feed(pcm.astype("<i2").tobytes())
    stream.flush()
    return [
        Sentence(env, split_words(text))
        for env, text in zip(labeler.learned, reference, strict=False)
    ]


def recognizer(
    tables: dict[int, list[Sentence]], *, vad: VadConfig | None = None
) -> ScriptedRecognizer:
    """The scripted recognizer with envelope labels; ``tables`` maps a rate to its sentences."""
    return ScriptedRecognizer(
        lambda rate: EnvelopeLabeler(rate, tables.get(rate, [])), vad=vad, name="scripted-scenario"
    )
