"""The energy VAD's measurement (``_levels.py``): exact sums, remembered by content."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.recognizers._levels import LevelCache, frame_energies

FRAMES = st.sampled_from([80, 160, 320, 441, 480])


def exact(pcm: bytes, frame: int) -> list[int]:
    """Each frame's sum of squares in Python integers (no float anywhere)."""
    x = [int(v) for v in np.frombuffer(pcm, "<i2")]
    return [sum(v * v for v in x[i : i + frame]) for i in range(0, len(x), frame)]


@st.composite
def chunks(draw: st.DrawFn) -> tuple[bytes, int]:
    """Whole VAD frames: random bytes (loud), quiet noise, or full scale."""
    frame = draw(FRAMES)
    n = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["bytes", "quiet", "full"]))
    if kind == "bytes":
        return draw(st.binary(min_size=2 * frame * n, max_size=2 * frame * n)), frame
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    if kind == "quiet":
        return rng.integers(-300, 300, frame * n).astype("<i2").tobytes(), frame
    return rng.choice(np.array([-32768, 32767], "<i2"), frame * n).tobytes(), frame


class TestFrameEnergies:
    @given(chunks())
    def test_the_exact_sums(self, chunk: tuple[bytes, int]) -> None:
        """Each VAD frame's energy is its exact sum of squares, full scale included."""
        pcm, frame = chunk
        assert frame_energies(pcm, frame) == exact(pcm, frame)

    @given(chunks())
    def test_bytes_and_samples_alike(self, chunk: tuple[bytes, int]) -> None:
        """PCM bytes and the same samples as an array measure the same."""
        pcm, frame = chunk
        assert frame_energies(np.frombuffer(pcm, "<i2"), frame) == frame_energies(pcm, frame)


class TestLevelCache:
    @given(st.lists(chunks(), min_size=1, max_size=8))
    def test_what_frame_energies_gives(self, seen: list[tuple[bytes, int]]) -> None:
        """Hit or miss, the energies are frame_energies'; a chunk seen again is a hit."""
        cache = LevelCache()
        for pcm, frame in seen + seen:
            assert list(cache.energies(bytes(pcm), frame)) == frame_energies(pcm, frame)
        assert cache.hits + cache.misses == 2 * len(seen)
        assert cache.hits >= len(seen)

    def test_the_key_is_the_content_and_the_frame(self) -> None:
        """Equal bytes hit (another object), a different frame size or content misses."""
        cache = LevelCache()
        silence = bytes(3200)
        assert cache.energies(silence, 160) == (0.0,) * 10
        assert cache.energies(bytes(3200), 160) == (0.0,) * 10
        assert (cache.hits, cache.misses) == (1, 0 + 1)
        assert cache.energies(silence, 320) == (0.0,) * 5
        assert cache.energies(b"\x01" + bytes(3199), 160)[0] == 1.0
        assert (cache.hits, cache.misses, len(cache)) == (1, 3, 3)

    def test_bounded_by_bytes_oldest_first(self) -> None:
        """Past max_bytes the oldest chunks go (counted); a chunk over max_chunk is
        measured and never kept."""
        cache = LevelCache(max_bytes=3 * 320, max_chunk=640)
        chunks = [bytes([k]) + bytes(319) for k in range(5)]
        for pcm in chunks:
            cache.energies(pcm, 160)
        assert (len(cache), cache.evicted) == (3, 2)
        cache.energies(chunks[4], 160)
        cache.energies(chunks[0], 160)
        assert (cache.hits, cache.misses) == (1, 6)
        big = bytes(960)
        cache.energies(big, 160)
        cache.energies(big, 160)
        assert cache.misses == 8
        assert len(cache) == 3

    def test_views_are_measured_not_kept(self) -> None:
        """A bytearray or a memoryview is measured as its bytes, and not kept."""
        cache = LevelCache()
        pcm = np.arange(320, dtype="<i2").tobytes()
        assert list(cache.energies(bytearray(pcm), 160)) == frame_energies(pcm, 160)  # type: ignore[arg-type]
        assert list(cache.energies(memoryview(pcm), 160)) == frame_energies(pcm, 160)  # type: ignore[arg-type]
        assert (len(cache), cache.misses) == (0, 2)

    def test_bounds_must_be_positive(self) -> None:
        """Zero bounds are refused."""
        with pytest.raises(ValueError, match="positive"):
            LevelCache(max_bytes=0)
