"""Streaming sample-rate conversion and float32 → int16 PCM (pure: no trio, no clock).

:class:`StreamResampler` wraps :class:`soxr.ResampleStream` with float32 samples and
the HQ recipe. float32 streams are bit-exact whatever the chunking, so feeding a
signal in any pieces gives the same samples as one call over the whole signal, and
the total output length is ``round(n_in * out_rate / in_rate)``. Output is
time-aligned but bursty: soxr holds back about 21 ms (HQ) until more input or the
final ``last=True`` call flushes it.

:class:`Pcm16Converter` brings int16 PCM chunks of possibly different rates (the
translated voice) to one output rate, for the voice WAV sink and playback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

import numpy as np
import soxr

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

__all__ = ["QUALITY", "Pcm16Converter", "StreamResampler", "float_to_pcm16", "pcm16_to_float"]

QUALITY: Final = "HQ"
_EMPTY: Final = np.zeros(0, dtype=np.float32)


@final
class StreamResampler:
    """Resample one mono stream from ``in_rate`` to ``out_rate``, block by block.

    When the rates are equal it passes samples through (as float32) untouched.
    Not thread-safe; one instance per stream.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} → {out_rate}")
        self.in_rate: Final = in_rate
        self.out_rate: Final = out_rate
        self._stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=QUALITY)
        )
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once :meth:`process` was called with ``last=True``."""
        return self._finished

    def process(self, block: ArrayLike, last: bool = False) -> NDArray[np.float32]:
        """Feed one block of mono samples; return the output that is ready.

        Args:
            block: 1-D samples (any real dtype, converted to float32; may be empty).
            last: True for the final block: flushes what the filter still holds.

        Returns:
            float32 samples at ``out_rate`` (possibly empty, always a fresh array).

        Raises:
            ValueError: ``block`` is not 1-D.
            RuntimeError: Called again after ``last=True``.
        """
        if self._finished:
            raise RuntimeError("StreamResampler.process called after last=True")
        samples = np.ascontiguousarray(block, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono 1-D samples, got shape {samples.shape}")
        self._finished = last
        if self._stream is None:
            return samples.copy()
        out: NDArray[np.float32] = self._stream.resample_chunk(samples, last=last)
        return out

    def flush(self) -> NDArray[np.float32]:
        """Same as ``process(<empty>, last=True)``."""
        return self.process(_EMPTY, last=True)


def float_to_pcm16(samples: ArrayLike) -> bytes:
    """float samples (full scale ±1.0) → int16 little-endian PCM bytes.

    Scales by 32768 (the inverse of how soundfile reads int16, so int16 → float →
    int16 is exact), rounds half to even, clips to [-32768, 32767], and maps NaN
    to 0 so bad input never raises a cast warning.
    """
    x = np.asarray(samples, dtype=np.float32)
    scaled = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0) * np.float32(32768.0)
    pcm: bytes = np.clip(np.rint(scaled), -32768, 32767).astype("<i2").tobytes()
    return pcm


def pcm16_to_float(pcm: bytes) -> NDArray[np.float32]:
    """int16 little-endian PCM bytes → float32 samples (÷ 32768, the inverse of
    :func:`float_to_pcm16`). An odd trailing byte is ignored."""
    ints = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
    floats: NDArray[np.float32] = ints.astype(np.float32) / np.float32(32768.0)
    return floats


@final
class Pcm16Converter:
    """Mono int16 PCM chunks, in runs, to int16 PCM at ``out_rate`` (pure; one thread).

    A *run* is consecutive chunks with the same ``key`` (e.g. a response id) and rate.
    Chunks already at ``out_rate`` pass through unchanged. Other rates go through one
    :class:`StreamResampler` per run, so a run's samples are continuous; the
    resampler's tail is flushed when the run ends (the key or the rate changes) and at
    :meth:`flush`. A chunk with an odd number of bytes keeps its last byte for the next
    chunk of the run; a byte left over when the run ends is dropped and counted in
    :attr:`dropped_bytes`.

    Raises:
        ValueError: from the constructor or :meth:`convert`, for a rate that is not
            positive.
    """

    def __init__(self, out_rate: int) -> None:
        if out_rate <= 0:
            raise ValueError(f"the output rate must be positive, got {out_rate}")
        self.out_rate: Final = out_rate
        self.dropped_bytes = 0
        self._run: tuple[object, int] | None = None
        self._carry = b""
        self._resampler: StreamResampler | None = None

    def convert(self, pcm: bytes, rate: int, key: object = None) -> bytes:
        """The output for one chunk (possibly empty: the resampler holds ~21 ms back)."""
        if rate <= 0:
            raise ValueError(f"a PCM chunk at {rate} Hz: the rate must be positive")
        out = b""
        if self._run != (key, rate):
            out = self.flush()
            self._run = (key, rate)
        if self._carry:
            pcm = self._carry + pcm
        whole = len(pcm) & ~1
        self._carry = pcm[whole:]
        if rate == self.out_rate:
            return out + pcm[:whole]
        if self._resampler is None:
            self._resampler = StreamResampler(rate, self.out_rate)
        return out + float_to_pcm16(self._resampler.process(pcm16_to_float(pcm[:whole])))

    def flush(self) -> bytes:
        """End the current run: the resampler's tail (empty when it passed through)."""
        self.dropped_bytes += len(self._carry)
        self._carry = b""
        self._run = None
        resampler, self._resampler = self._resampler, None
        return b"" if resampler is None else float_to_pcm16(resampler.flush())
