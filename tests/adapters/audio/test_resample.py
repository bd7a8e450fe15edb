from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.audio.resample import (
    Pcm16Converter,
    StreamResampler,
    float_to_pcm16,
    pcm16_to_float,
)

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]


def pcm16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int32)


def one_shot(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """The reference: one soxr stream fed the whole signal in a single last=True call."""
    if in_rate == out_rate:
        return x.astype(np.float32)
    stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
    out: np.ndarray = stream.resample_chunk(x.astype(np.float32), last=True)
    return out


def chunked(x: np.ndarray, r: StreamResampler, sizes: list[int]) -> list[np.ndarray]:
    """Feed ``x`` to ``r`` in pieces of ``sizes`` (cycled), then flush; the outputs in order."""
    outs, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        outs.append(r.process(x[i : i + n]))
        i, k = i + n, k + 1
    outs.append(r.flush())
    return outs


def signal(seed: int, n: int, kind: str, rate: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return (rng.standard_normal(n) * 0.3).astype(np.float32)
    if kind == "loud":  # clips after conversion: exercises the clipping path
        return (rng.standard_normal(n) * 1.5).astype(np.float32)
    f = float(rng.uniform(50, min(rate, 8000) / 2.5))
    return (0.8 * np.sin(2 * np.pi * f * np.arange(n) / rate)).astype(np.float32)


class TestStreamingEqualsOneShot:
    @settings(max_examples=60, deadline=None)
    @given(
        in_rate=st.sampled_from(RATES),
        out_rate=st.sampled_from([8000, 16000, 24000, 48000]),
        n=st.integers(0, 24000),
        kind=st.sampled_from(["noise", "loud", "sine"]),
        seed=st.integers(0, 2**32 - 1),
        sizes=st.lists(st.integers(1, 6000), min_size=1, max_size=12),
    )
    def test_chunked_int16_matches_one_shot(
        self, in_rate: int, out_rate: int, n: int, kind: str, seed: int, sizes: list[int]
    ) -> None:
        """Any chunking gives the one-shot int16 output within 1 LSB, with the same length."""
        x = signal(seed, n, kind, in_rate)
        got = pcm16(
            float_to_pcm16(np.concatenate(chunked(x, StreamResampler(in_rate, out_rate), sizes)))
        )
        want = pcm16(float_to_pcm16(one_shot(x, in_rate, out_rate)))
        assert len(got) == len(want)
        if len(got):
            assert np.abs(got - want).max() <= 1

    @settings(max_examples=40, deadline=None)
    @given(
        in_rate=st.sampled_from(RATES),
        out_rate=st.sampled_from(RATES),
        n=st.integers(0, 30000),
    )
    def test_total_length_is_rounded_ratio(self, in_rate: int, out_rate: int, n: int) -> None:
        """The total output length is round(n * out_rate / in_rate), give or take one."""
        x = np.zeros(n, dtype=np.float32)
        total = sum(len(o) for o in chunked(x, StreamResampler(in_rate, out_rate), [997]))
        assert abs(total - round(n * out_rate / in_rate)) <= 1


class TestContinuity:
    @pytest.mark.parametrize(
        ("in_rate", "out_rate"), [(44100, 16000), (8000, 16000), (48000, 8000)]
    )
    def test_no_jump_at_chunk_edges(self, in_rate: int, out_rate: int) -> None:
        """A chunked sine never steps by more than its maximum slope, at chunk edges or elsewhere."""
        freq, amp = 440.0, 0.5
        x = (amp * np.sin(2 * np.pi * freq * np.arange(in_rate) / in_rate)).astype(np.float32)
        sizes = [int(s) for s in np.random.default_rng(7).integers(1, 900, size=50)]
        outs = chunked(x, StreamResampler(in_rate, out_rate), sizes)
        y = np.concatenate(outs)
        bound = 2 * math.pi * freq * amp / out_rate * 1.02
        # Skip 20 ms at each end: the signal itself starts and stops abruptly there, and
        # the filter rings whatever the chunking.
        margin = out_rate // 50
        assert np.abs(np.diff(y[margin:-margin])).max() <= bound
        edges = np.cumsum([len(o) for o in outs])[:-1]
        edges = edges[(edges > margin) & (edges < len(y) - margin)]
        assert len(edges) > 10
        assert np.abs(y[edges] - y[edges - 1]).max() <= bound

    def test_output_is_time_aligned(self) -> None:
        """A tone keeps its phase: the output matches the ideal resampled sine away from the ends."""
        x = (0.5 * np.sin(2 * np.pi * 300 * np.arange(48000) / 48000)).astype(np.float32)
        y = np.concatenate(chunked(x, StreamResampler(48000, 16000), [480]))
        ideal = 0.5 * np.sin(2 * np.pi * 300 * np.arange(len(y)) / 16000)
        assert np.abs(y - ideal)[400:-400].max() < 1e-3


class TestStreamResampler:
    def test_equal_rates_pass_through(self) -> None:
        """With equal rates the samples come back unchanged, as float32 copies."""
        r = StreamResampler(16000, 16000)
        x = np.linspace(-1, 1, 100)
        out = r.process(x)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, x.astype(np.float32))
        assert r.flush().size == 0

    def test_output_is_float32(self) -> None:
        """int16-range or float64 input still yields float32 output."""
        r = StreamResampler(22050, 16000)
        assert r.process(np.zeros(2205, dtype=np.float64)).dtype == np.float32
        assert r.flush().dtype == np.float32

    def test_process_after_last_raises(self) -> None:
        """The stream cannot be fed after it was flushed."""
        r = StreamResampler(44100, 16000)
        r.process(np.zeros(10, dtype=np.float32), last=True)
        assert r.finished
        with pytest.raises(RuntimeError, match="after last=True"):
            r.process(np.zeros(10, dtype=np.float32))

    def test_rejects_multichannel(self) -> None:
        """Only 1-D (mono) blocks are accepted."""
        with pytest.raises(ValueError, match="mono"):
            StreamResampler(44100, 16000).process(np.zeros((10, 2), dtype=np.float32))

    def test_rejects_bad_rates(self) -> None:
        """Rates must be positive."""
        with pytest.raises(ValueError, match="positive"):
            StreamResampler(0, 16000)

    def test_empty_blocks_are_fine(self) -> None:
        """Empty blocks produce empty output and do not disturb the stream."""
        r = StreamResampler(48000, 16000)
        assert r.process(np.zeros(0, dtype=np.float32)).size == 0
        assert len(r.process(np.zeros(4800, dtype=np.float32))) + len(r.flush()) == 1600


class TestFloatToPcm16:
    def test_rounds_and_scales(self) -> None:
        """Scaling is by 32768 with round-half-to-even."""
        x = np.array([0.0, 0.5, -0.5, 1 / 32768, 1.4 / 32768, 1.6 / 32768], dtype=np.float32)
        assert pcm16(float_to_pcm16(x)).tolist() == [0, 16384, -16384, 1, 1, 2]

    def test_clips(self) -> None:
        """Out-of-range samples clip to the int16 limits."""
        x = np.array([1.0, 2.0, -1.0, -3.0], dtype=np.float32)
        assert pcm16(float_to_pcm16(x)).tolist() == [32767, 32767, -32768, -32768]

    def test_non_finite(self) -> None:
        """NaN becomes silence and infinities clip, with no warnings."""
        x = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
        assert pcm16(float_to_pcm16(x)).tolist() == [0, 32767, -32768]

    def test_little_endian_bytes(self) -> None:
        """The output is int16 little-endian, two bytes per sample."""
        assert float_to_pcm16(np.array([1 / 32768, -1 / 32768])) == b"\x01\x00\xff\xff"

    def test_round_trips_soundfile_int16(self, tmp_path: object) -> None:
        """int16 written by soundfile and read back as float converts back exactly."""
        ints = np.random.default_rng(3).integers(-32768, 32767, size=5000, dtype=np.int16)
        path = f"{tmp_path}/x.wav"
        sf.write(path, ints, 16000, subtype="PCM_16")
        floats, _ = sf.read(path, dtype="float32")
        assert float_to_pcm16(floats) == ints.astype("<i2").tobytes()


class TestPcm16Converter:
    def test_same_rate_passes_through_with_odd_bytes_carried(self) -> None:
        """At the output rate, chunks come back unchanged; an odd byte waits for its pair."""
        conv = Pcm16Converter(24000)
        data = np.arange(100, dtype="<i2").tobytes()
        out = conv.convert(data[:51], 24000, "r") + conv.convert(data[51:], 24000, "r")
        assert out == data and conv.flush() == b"" and conv.dropped_bytes == 0

    def test_a_dangling_byte_is_dropped_at_the_end_of_a_run(self) -> None:
        """A new key ends the run; its unpaired byte is counted, never misaligns the next."""
        conv = Pcm16Converter(24000)
        assert conv.convert(b"\x01\x00\x02", 24000, "a") == b"\x01\x00"
        assert conv.convert(b"\x03\x00", 24000, "b") == b"\x03\x00"
        assert conv.dropped_bytes == 1

    def test_other_rate_is_resampled_as_one_stream_per_run(self) -> None:
        """16 kHz chunks of one run equal resampling the whole run at once."""
        rng = np.random.default_rng(3)
        x = (rng.standard_normal(16000) * 3000).astype("<i2")
        conv = Pcm16Converter(24000)
        out = b"".join(conv.convert(c.tobytes(), 16000, "r") for c in np.array_split(x, 37))
        out += conv.flush()
        whole = StreamResampler(16000, 24000)
        expected = float_to_pcm16(whole.process(pcm16_to_float(x.tobytes()), last=True))
        assert out == expected and len(out) == 2 * 24000

    def test_rate_change_flushes_the_previous_run(self) -> None:
        """The resampler's tail comes out before the next run's audio."""
        conv = Pcm16Converter(24000)
        first = conv.convert(np.zeros(1600, "<i2").tobytes(), 16000, "r")
        second = conv.convert(b"\x05\x00" * 10, 24000, "r")
        assert len(first) + len(second) == 2 * 2400 + 20 and second.endswith(b"\x05\x00" * 10)

    def test_bad_rates(self) -> None:
        """Rates must be positive."""
        with pytest.raises(ValueError, match="positive"):
            Pcm16Converter(0)
        with pytest.raises(ValueError, match="positive"):
            Pcm16Converter(24000).convert(b"", -1)

    def test_pcm16_to_float_inverts_float_to_pcm16(self) -> None:
        """int16 → float → int16 is exact."""
        data = np.array([-32768, -1, 0, 1, 32767], "<i2").tobytes()
        assert float_to_pcm16(pcm16_to_float(data)) == data
