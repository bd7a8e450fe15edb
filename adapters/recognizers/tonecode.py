"""Tone-coded speech: words rendered as pure tone bursts, and read back by FFT.

A deterministic stand-in for speech in tests and load tests. Every word of a fixed
vocabulary owns one frequency; :func:`synthesize` renders each word as a burst of
that tone and :func:`decode_segment` recovers the words of a stretch of audio from
the spectral peak of each burst. Because decoding looks only at the audio content,
the same audio gives the same words wherever a task happens to start.

Timeline of :func:`synthesize` with the defaults::

    500 ms lead-in | word 180 ms | gap 40 ms | word 180 ms | ... | 900 ms | next sentence ... | 900 ms tail
"""

from __future__ import annotations

import string
import zlib
from typing import Final

import numpy as np
import numpy.typing as npt

from .base import RecognizedWord

__all__ = [
    "FRAME_MS",
    "FREQUENCY_STEP_HZ",
    "GAP_MS",
    "LEAD_IN_MS",
    "SENTENCE_GAP_MS",
    "VOCABULARY",
    "WORD_FREQUENCIES",
    "WORD_MS",
    "DecodeCache",
    "ToneLabeler",
    "decode_segment",
    "split_words",
    "synthesize",
]

# 64 common words; word i is a tone at BASE_HZ + i * FREQUENCY_STEP_HZ (400..3550 Hz, under
# the 4 kHz Nyquist limit of 8 kHz audio). Append only: a word's index is its frequency.
VOCABULARY: Final[tuple[str, ...]] = (
    "the", "a", "and", "is", "to", "of", "in", "on",
    "at", "it", "we", "you", "i", "he", "she", "they",
    "this", "that", "what", "when", "where", "how", "good", "morning",
    "hello", "world", "time", "day", "today", "tomorrow", "weather", "sunny",
    "rain", "warm", "meeting", "budget", "project", "one", "two", "three",
    "four", "five", "six", "seven", "eight", "nine", "ten", "yes",
    "no", "please", "thank", "will", "be", "there", "are", "have",
    "next", "new", "people", "room", "train", "leaves", "evening", "stop",
)  # fmt: skip
BASE_HZ: Final = 400.0
FREQUENCY_STEP_HZ: Final = 50.0
WORD_FREQUENCIES: Final[dict[str, float]] = {
    word: BASE_HZ + i * FREQUENCY_STEP_HZ for i, word in enumerate(VOCABULARY)
}

WORD_MS: Final = 180
GAP_MS: Final = 40
SENTENCE_GAP_MS: Final = 900
LEAD_IN_MS: Final = 500
AMPLITUDE: Final = 0.5
RAMP_MS: Final = 5  # raised-cosine fade in and out, so bursts do not click (no splatter)

FRAME_MS: Final = 1  # envelope resolution of decode_segment
_ON_BELOW_PEAK_DB: Final = 40.0  # a 1 ms frame is "on" within this much of the loudest one,
_ABOVE_FLOOR_DB: Final = 20.0  # ... and this much above the noise floor,
_MIN_BELOW_PEAK_DB: Final = 10.0  # ... but a frame this close to the loudest is always on
_MIN_BURST_MS: Final = 30
_MAX_INNER_GAP_MS: Final = 4  # closes dips this short inside a burst
_EDGE_TRIM_MS: Final = 8  # analyse the steady part of a burst only
_TOLERANCE_HZ: Final = FREQUENCY_STEP_HZ * 0.4
_MIN_PURITY: Final = 0.5  # share of a burst's energy that must sit near its peak frequency
_ANALYSIS_MS: Final = 64  # the most of a burst's steady middle that is transformed

_PUNCTUATION = str.maketrans("", "", string.punctuation.replace("'", ""))


def split_words(sentence: str) -> list[str]:
    """Lowercase the sentence, drop punctuation and split it into words."""
    return sentence.lower().translate(_PUNCTUATION).split()


def synthesize(
    sentences: list[str],
    rate: int,
    *,
    word_ms: int = WORD_MS,
    gap_ms: int = GAP_MS,
    sentence_gap_ms: int = SENTENCE_GAP_MS,
    lead_in_ms: int = LEAD_IN_MS,
    tail_ms: int = SENTENCE_GAP_MS,
    amplitude: float = AMPLITUDE,
) -> npt.NDArray[np.int16]:
    """Render sentences as tone bursts: mono int16 samples at ``rate``.

    Sentences are separated by ``sentence_gap_ms`` of silence and words by ``gap_ms``;
    the audio starts with ``lead_in_ms`` and ends with ``tail_ms`` of silence. Word k of
    a sentence starting at ``t`` occupies ``[t + k * (word_ms + gap_ms), ... + word_ms)``.

    Raises:
        ValueError: a word is not in :data:`VOCABULARY` (the message lists it), or
            ``rate`` cannot carry the highest tone.
    """
    if rate < 2 * (max(WORD_FREQUENCIES.values()) + FREQUENCY_STEP_HZ):
        raise ValueError(f"rate {rate} Hz is too low for tones up to 3.6 kHz; use >= 8000")
    burst = _burst_envelope(word_ms, rate)
    t = np.arange(len(burst)) / rate
    pieces: list[npt.NDArray[np.float64]] = [np.zeros(_samples(lead_in_ms, rate))]
    for n, sentence in enumerate(sentences):
        if n:
            pieces.append(np.zeros(_samples(sentence_gap_ms, rate)))
        for k, word in enumerate(split_words(sentence)):
            if word not in WORD_FREQUENCIES:
                raise ValueError(
                    f"{word!r} is not in the tone vocabulary: {', '.join(sorted(VOCABULARY))}"
                )
            if k:
                pieces.append(np.zeros(_samples(gap_ms, rate)))
            pieces.append(burst * np.sin(2 * np.pi * WORD_FREQUENCIES[word] * t))
    pieces.append(np.zeros(_samples(tail_ms, rate)))
    audio = np.concatenate(pieces) * (amplitude * 32767)
    return np.round(audio).astype(np.int16)


def decode_segment(samples: npt.NDArray[np.int16], rate: int) -> list[tuple[str, int, int]]:
    """Recover the words of tone-coded audio.

    Args:
        samples: mono int16 audio holding zero or more whole bursts.
        rate: its sample rate.

    Returns:
        ``(word, begin_ms, end_ms)`` per burst, times in ms from the first sample. Bursts
        whose spectrum is not a clean tone of the vocabulary (speech, noise, a burst cut
        too short) are skipped.
    """
    frame = max(rate * FRAME_MS // 1000, 1)
    n_frames = len(samples) // frame
    if n_frames == 0:
        return []
    x = samples[: n_frames * frame].astype(np.float64)
    energy = np.einsum("ij,ij->i", x.reshape(n_frames, frame), x.reshape(n_frames, frame))
    peak = float(energy.max())
    if peak <= 0.0:
        return []
    # "On": _ABOVE_FLOOR_DB over the noise floor (the quietest 5 % of the frames) and within
    # _ON_BELOW_PEAK_DB of the peak; within _MIN_BELOW_PEAK_DB of the peak is always on.
    floor = float(np.partition(energy, n_frames // 20)[n_frames // 20])
    threshold = max(peak * _db(-_ON_BELOW_PEAK_DB), floor * _db(_ABOVE_FLOOR_DB))
    on = energy >= min(threshold, peak * _db(-_MIN_BELOW_PEAK_DB))
    words = []
    for first, stop in _runs(on, max_gap=_MAX_INNER_GAP_MS // FRAME_MS):
        if (stop - first) * FRAME_MS < _MIN_BURST_MS:
            continue
        trim = _EDGE_TRIM_MS // FRAME_MS
        word = _word_of(x[(first + trim) * frame : (stop - trim) * frame], rate)
        if word is not None:
            begin_ms = round(first * frame * 1000 / rate)
            words.append((word, begin_ms, round(stop * frame * 1000 / rate)))
    return words


Decoded = tuple[tuple[str, int, int], ...]


class DecodeCache:
    """:func:`decode_segment` with its results remembered by audio content.

    A load test loops a few seconds of tone-coded speech through every session, so
    the same bursts (cut at the same VAD frame boundaries) come back thousands of
    times: decoding one costs ~60 µs, its key ~3 µs — the length, Python's 64-bit
    hash of the samples' bytes and their CRC-32, 96 bits in all (a BLAKE2 digest cost
    four times as much per word). Other audio only pays the key. Bounded: past ``size``
    entries the oldest goes.
    Not thread-safe (one per recognizer, used from its trio thread).

    Attributes:
        hits: decodes answered from the cache.
        misses: decodes computed (and remembered).
    """

    def __init__(self, size: int = 4096) -> None:
        if size < 1:
            raise ValueError("size must be positive")
        self._size = size
        self._results: dict[tuple[int, int, int, int], Decoded] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._results)

    def decode(self, samples: npt.NDArray[np.int16], rate: int) -> Decoded:
        """What ``decode_segment(samples, rate)`` returns, as a tuple."""
        raw = samples.tobytes()
        key = (rate, len(raw), hash(raw), zlib.crc32(raw))
        found = self._results.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        result = tuple(decode_segment(samples, rate))
        if len(self._results) >= self._size:
            del self._results[next(iter(self._results))]
        self._results[key] = result
        return result


class ToneLabeler:
    """The :class:`~.scripted.Labeler` of tone-coded audio: a word per burst, by FFT peak.

    Args:
        sample_rate: the session's rate.
        cache: decodes shared by a recognizer's sessions (None: decode every burst).
    """

    needs_audio = True

    def __init__(self, sample_rate: int, cache: DecodeCache | None = None) -> None:
        self._rate = sample_rate
        self._cache = cache
        self._words: list[RecognizedWord] = []

    def heard(
        self, begin_ms: int, end_ms: int, samples: npt.NDArray[np.int16], samples_begin_ms: float
    ) -> list[RecognizedWord]:
        cache = self._cache
        decoded = (
            decode_segment(samples, self._rate)
            if cache is None
            else cache.decode(samples, self._rate)
        )
        for word, first, last in decoded:
            self._words.append(
                RecognizedWord(
                    round(samples_begin_ms + first), round(samples_begin_ms + last), word
                )
            )
        return list(self._words)

    def finish(self, begin_ms: int, end_ms: int, *, keep: bool) -> list[RecognizedWord]:
        words, self._words = self._words, []
        return words if keep else []


def _word_of(burst: npt.NDArray[np.float64], rate: int) -> str | None:
    # No window: the burst is a steady tone (ramps trimmed off), so its peak is sharp. Only
    # its middle _ANALYSIS_MS are transformed (this runs once per word per session: a
    # load test's largest recognizer cost): bins of 1000 / _ANALYSIS_MS = 15.6 Hz put the
    # peak within 8 Hz of the tone, inside the 20 Hz tolerance, and a steady tone keeps
    # over 80 % of its power within one bin of the peak. Shorter bursts are zero-padded
    # to a power of two, as before.
    n = len(burst)
    window = rate * _ANALYSIS_MS // 1000
    if n > window:
        start = (n - window) // 2
        burst = burst[start : start + window]
        size = window
    else:
        size = 1 << max(int(n - 1).bit_length(), 1)
    spectrum = np.fft.rfft(burst, n=size)
    power = spectrum.real**2 + spectrum.imag**2
    k = int(power.argmax())
    hz = k * rate / size
    near = max(int(_TOLERANCE_HZ * size / rate), 1)
    if power[max(k - near, 0) : k + near + 1].sum() < _MIN_PURITY * power.sum():
        return None
    index = round((hz - BASE_HZ) / FREQUENCY_STEP_HZ)
    if not 0 <= index < len(VOCABULARY):
        return None
    if abs(hz - WORD_FREQUENCIES[VOCABULARY[index]]) > _TOLERANCE_HZ:
        return None
    return VOCABULARY[index]


def _runs(on: npt.NDArray[np.bool_], *, max_gap: int) -> list[tuple[int, int]]:
    """``[first, stop)`` frame ranges of runs of True, bridging gaps of ``max_gap`` or fewer."""
    n = len(on)
    if n == 0:
        return []
    edges: list[int] = (np.flatnonzero(on[1:] != on[:-1]) + 1).tolist()
    if on[0]:
        edges.insert(0, 0)
    if on[n - 1]:
        edges.append(n)
    runs: list[tuple[int, int]] = []
    for first, stop in zip(edges[::2], edges[1::2], strict=True):
        if runs and first - runs[-1][1] <= max_gap:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((first, stop))
    return runs


def _burst_envelope(word_ms: int, rate: int) -> npt.NDArray[np.float64]:
    n = _samples(word_ms, rate)
    ramp = min(_samples(RAMP_MS, rate), n // 2)
    envelope = np.ones(n)
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    envelope[:ramp] = fade
    envelope[n - ramp :] = fade[::-1]
    return envelope


def _db(db: float) -> float:
    return float(10 ** (db / 10))


def _samples(ms: int, rate: int) -> int:
    return round(ms * rate / 1000)
