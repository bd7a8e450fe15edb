from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.recognizers.tonecode import (
    GAP_MS,
    LEAD_IN_MS,
    SENTENCE_GAP_MS,
    VOCABULARY,
    WORD_FREQUENCIES,
    WORD_MS,
    DecodeCache,
    ToneLabeler,
    decode_segment,
    split_words,
    synthesize,
)

SENTENCES = ["hello world", "the weather today is sunny and warm", "one two three stop"]


def expected_words(sentences: list[str]) -> list[tuple[str, int, int]]:
    """Where synthesize() puts each word with the default timing constants."""
    out, t = [], LEAD_IN_MS
    for n, sentence in enumerate(sentences):
        if n:
            t += SENTENCE_GAP_MS - GAP_MS
        for word in sentence.split():
            out.append((word, t, t + WORD_MS))
            t += WORD_MS + GAP_MS
    return out


class TestVocabulary:
    def test_sixty_four_distinct_tones_below_4_khz(self) -> None:
        """64 unique words own 64 distinct frequencies that 8 kHz audio can carry."""
        assert len(VOCABULARY) == len(set(VOCABULARY)) == 64
        freqs = sorted(WORD_FREQUENCIES.values())
        assert len(set(freqs)) == 64
        assert min(np.diff(freqs)) >= 50
        assert max(freqs) < 4000

    def test_split_words(self) -> None:
        """Sentences are lowercased and stripped of punctuation before lookup."""
        assert split_words("Hello, World!") == ["hello", "world"]


class TestSynthesize:
    def test_layout(self) -> None:
        """Lead-in, bursts, gaps and tail have the documented lengths; the tail is silent."""
        rate = 16000
        audio = synthesize(["hello world"], rate)
        assert audio.dtype == np.int16
        assert len(audio) == (LEAD_IN_MS + 2 * WORD_MS + GAP_MS + SENTENCE_GAP_MS) * rate // 1000
        lead = LEAD_IN_MS * rate // 1000
        assert not audio[:lead].any()
        assert np.abs(audio[lead : lead + WORD_MS * 16]).max() > 10000
        assert not audio[lead + 2 * WORD_MS * 16 + GAP_MS * 16 :].any()

    def test_unknown_word_lists_the_vocabulary(self) -> None:
        """A word outside the vocabulary is a ValueError that names it and lists the words."""
        with pytest.raises(ValueError, match="'zebra' is not in the tone vocabulary") as info:
            synthesize(["hello zebra"], 16000)
        assert all(word in str(info.value) for word in VOCABULARY)

    def test_rate_too_low(self) -> None:
        """A rate that cannot carry the highest tone is refused."""
        with pytest.raises(ValueError, match="too low"):
            synthesize(["hello"], 6000)


class TestDecodeSegment:
    @pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
    def test_round_trip(self, rate: int) -> None:
        """Every word comes back, within 2 ms of where it was rendered."""
        decoded = decode_segment(synthesize(SENTENCES, rate), rate)
        expected = expected_words(SENTENCES)
        assert [w for w, _, _ in decoded] == [w for w, _, _ in expected]
        for (_, begin, end), (_, want_begin, want_end) in zip(decoded, expected, strict=True):
            assert abs(begin - want_begin) <= 2
            assert abs(end - want_end) <= 2

    def test_every_word(self) -> None:
        """Each vocabulary word decodes to itself."""
        sentences = [" ".join(VOCABULARY[i : i + 8]) for i in range(0, 64, 8)]
        decoded = decode_segment(synthesize(sentences, 16000), 16000)
        assert [w for w, _, _ in decoded] == list(VOCABULARY)

    @settings(max_examples=25, deadline=None)
    @given(seed=st.integers(0, 2**32 - 1), noise=st.floats(0, 1000), gain=st.floats(0.05, 1.5))
    def test_robust_to_noise_and_gain(self, seed: int, noise: float, gain: float) -> None:
        """Words survive white noise 20 dB below the tones and any sane gain."""
        rng = np.random.default_rng(seed)
        clean = synthesize(SENTENCES[:2], 16000).astype(np.float64) * gain
        noisy = clean + rng.normal(0, noise * gain, len(clean))
        samples = np.clip(noisy, -32768, 32767).astype(np.int16)
        assert [w for w, _, _ in decode_segment(samples, 16000)] == " ".join(SENTENCES[:2]).split()

    def test_rejects_what_is_not_a_tone(self) -> None:
        """Noise, silence and off-grid tones decode to nothing."""
        rng = np.random.default_rng(0)
        assert decode_segment(rng.normal(0, 5000, 16000).astype(np.int16), 16000) == []
        assert decode_segment(np.zeros(16000, np.int16), 16000) == []
        assert decode_segment(np.zeros(3, np.int16), 16000) == []
        off_grid = 10000 * np.sin(2 * np.pi * 425.0 * np.arange(4000) / 16000)
        assert decode_segment(off_grid.astype(np.int16), 16000) == []


class TestDecodeCache:
    def test_same_words_as_decode_segment_and_counts_hits(self) -> None:
        """A repeated burst is answered from the cache with decode_segment's words."""
        audio = synthesize(["good morning"], 16000)
        other = synthesize(["thank you"], 16000)
        cache = DecodeCache()
        first = cache.decode(audio, 16000)
        assert list(first) == decode_segment(audio, 16000)
        assert cache.decode(audio.copy(), 16000) == first
        assert cache.decode(other, 16000) == tuple(decode_segment(other, 16000))
        assert (cache.hits, cache.misses, len(cache)) == (1, 2, 2)

    def test_rate_is_part_of_the_key(self) -> None:
        """The same samples at another rate are decoded again."""
        audio = synthesize(["good morning"], 16000)
        cache = DecodeCache()
        cache.decode(audio, 16000)
        assert cache.decode(audio, 8000) == tuple(decode_segment(audio, 8000))
        assert cache.misses == 2

    def test_bounded_oldest_goes_first(self) -> None:
        """Past its size the oldest entry is dropped."""
        a, b, c = (synthesize([w], 16000) for w in ("good", "morning", "thank"))
        cache = DecodeCache(size=2)
        for x in (a, b, c):
            cache.decode(x, 16000)
        assert len(cache) == 2
        cache.decode(b, 16000)
        cache.decode(a, 16000)
        assert (cache.hits, cache.misses) == (1, 4)

    def test_size_must_be_positive(self) -> None:
        """A cache of no entries is refused."""
        with pytest.raises(ValueError, match="positive"):
            DecodeCache(size=0)

    def test_labeler_with_cache_hears_the_same_words(self) -> None:
        """ToneLabeler gives the same words with and without a cache."""
        audio = synthesize(["the weather today is sunny"], 16000)
        cache = DecodeCache()
        plain = ToneLabeler(16000).heard(0, 1000, audio, 0.0)
        cached = [ToneLabeler(16000, cache).heard(0, 1000, audio, 0.0) for _ in range(2)]
        assert cached == [plain, plain]
        assert cache.hits == 1
