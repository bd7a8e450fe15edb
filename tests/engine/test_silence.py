"""The silence judgement (``engine/actors/_silence.py``) against a plain reference."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.actors._silence import SILENCE_RMS, is_silent

RATE = 16000


def reference(samples: np.ndarray, rate: int) -> tuple[bool, float]:
    """Every 100 ms block (and the tail on its own) below the RMS threshold, in float64;
    and how close the loudest block came to the threshold (relative)."""
    block = max(1, rate // 10)
    limit = SILENCE_RMS * SILENCE_RMS
    chunks = [samples[i : i + block].astype(np.float64) for i in range(0, samples.size, block)]
    power = [float(np.mean(c * c)) for c in chunks] or [0.0]
    closest = min(abs(p - limit) / limit for p in power)
    return all(p < limit for p in power), closest


@given(
    blocks=st.integers(0, 4),
    tail=st.integers(0, 1599),
    scale=st.sampled_from([0, 10, 50, 63, 64, 70, 200, 3000]),
    loud_block=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
def test_it_agrees_with_the_per_block_rms(
    blocks: int, tail: int, scale: int, loud_block: int, seed: int
) -> None:
    """Frames of any length: one frame is one block; a longer buffer is judged per block."""
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(blocks * 1600 + tail) * scale).clip(-32768, 32767)
    samples = samples.astype("<i2")
    if loud_block * 1600 < samples.size:
        samples[loud_block * 1600 : loud_block * 1600 + 40] = 5000  # one loud spot
    silent, closest = reference(samples, RATE)
    assume(closest > 1e-3)  # float32 and float64 may round a block on the line differently
    assert is_silent(samples.tobytes(), RATE) == silent


def test_a_frame_at_the_threshold_is_not_silent() -> None:
    """One 100 ms block (the per-frame path) with an RMS of exactly 64 is loud; 63 is silent."""
    for amplitude, silent in ((63, True), (64, False), (-64, False)):
        frame = np.full(RATE // 10, amplitude, dtype="<i2").tobytes()
        assert is_silent(frame, RATE) is silent


def test_an_empty_frame_and_a_tiny_rate_are_silent_or_judged() -> None:
    """No samples is silence; a rate under 10 Hz judges one sample per block."""
    assert is_silent(b"", RATE) is True
    assert is_silent(np.array([0, 100], dtype="<i2").tobytes(), 5) is False
    assert is_silent(np.array([0, 10], dtype="<i2").tobytes(), 5) is True
