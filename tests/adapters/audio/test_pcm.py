"""The one downmix: every input's channels mix alike, into an owned read-only copy."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.audio.pcm import to_mono_float32
from engine.errors import InputError


class TestToMonoFloat32:
    def test_a_callback_buffer_becomes_the_channel_mean_in_a_readonly_copy(self) -> None:
        """Stereo (frames × 2) float32 becomes the mean; the copy is float32 and read-only."""
        buf = np.empty((10, 2), np.float32)
        buf[:, 0], buf[:, 1] = 0.35, 0.15
        mono = to_mono_float32(buf)
        assert mono.dtype == np.float32 and mono.shape == (10,)
        np.testing.assert_allclose(mono, 0.25, atol=1e-7)
        assert not mono.flags.writeable
        assert mono.flags.c_contiguous

    def test_one_channel_is_copied_not_aliased(self) -> None:
        """A reused buffer written after the call does not change the block."""
        one = np.arange(5, dtype=np.float32).reshape(5, 1)
        copy = to_mono_float32(one)
        one[:] = 9
        assert list(copy) == [0, 1, 2, 3, 4]
        flat = np.arange(3, dtype=np.float32)
        again = to_mono_float32(flat)
        flat[:] = 7
        assert list(again) == [0, 1, 2]
        assert flat.flags.writeable  # the caller's array is left as it was

    def test_interleaved_int16_bytes_are_scaled_and_averaged(self) -> None:
        """int16 LE bytes of two channels become the scaled channel mean."""
        stereo = np.array([[1000, 3000], [-2000, 0]], dtype="<i2")
        mono = to_mono_float32(stereo.tobytes(), 2)
        assert mono.tolist() == pytest.approx([2000 / 32768, -1000 / 32768])
        assert to_mono_float32(stereo.reshape(-1), 2).tolist() == mono.tolist()

    def test_float64_becomes_float32(self) -> None:
        """Any float array comes out float32."""
        assert to_mono_float32(np.array([0.5, -0.5], dtype=np.float64)).dtype == np.float32

    @pytest.mark.parametrize(
        ("pcm", "channels", "match"),
        [
            (b"\x00\x00\x00", 1, "not whole int16 frames"),
            (b"\x00\x00\x00\x00\x00\x00", 2, "not whole int16 frames of 2"),
            (np.array(["a"]), 1, "push int16 or float PCM"),
        ],
    )
    def test_what_is_not_pcm_is_an_input_error(
        self, pcm: bytes | np.ndarray, channels: int, match: str
    ) -> None:
        """Ragged bytes and non-numeric arrays raise InputError naming the fix."""
        with pytest.raises(InputError, match=match):
            to_mono_float32(pcm, channels)
