"""The one downmix: any PCM a producer has, to the mono blocks a stream carries.

Files (:mod:`adapters.audio.files`), the microphone's PortAudio callback
(:mod:`engine.actors.mic`), pushed audio (:meth:`engine.stream.Stream.push`) and the
daemon's sources all hand their samples to :func:`to_mono_float32`, so every input
mixes channels alike: the plain average, in float32. :func:`to_mono_pcm16` is the same
downmix ending in int16 (``float_to_pcm16``'s scaling and rounding), for sources
whose audio is kept as int16 (a file's read-ahead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine.errors import InputError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["to_mono_float32", "to_mono_pcm16"]


def to_mono_float32(pcm: bytes | NDArray[np.generic], channels: int = 1) -> NDArray[np.float32]:
    """A read-only mono float32 copy of ``pcm``, the average of its channels.

    Args:
        pcm: int16 little-endian bytes, or an int16 or float array: ``(frames ×
            channels)``, or one-dimensional and interleaved. int16 is scaled to
            [-1, 1); float is taken as it is.
        channels: the channel count of interleaved input (bytes or a flat array);
            a two-dimensional array says its own.

    Returns:
        A new, C-contiguous, read-only array: the caller's buffer (a PortAudio
        callback's, which is reused) is never aliased.

    Raises:
        InputError: bytes that are not whole int16 frames, or an array that is
            neither integer nor float.
    """
    if isinstance(pcm, bytes | bytearray | memoryview):
        if len(pcm) % (2 * channels):
            raise InputError(f"{len(pcm)} bytes is not whole int16 frames of {channels} channel(s)")
        array: NDArray[np.generic] = np.frombuffer(pcm, dtype="<i2")
    else:
        array = np.asarray(pcm)
    if array.dtype.kind == "i":
        samples = array.astype(np.float32) / 32768.0
    elif array.dtype.kind == "f":
        samples = array.astype(np.float32, copy=False)
    else:
        raise InputError(f"pushed audio has dtype {array.dtype}; push int16 or float PCM")
    if samples.ndim == 1 and channels > 1:
        samples = samples.reshape(-1, channels)
    if samples.ndim == 2:
        samples = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    mono = np.array(samples, dtype=np.float32, order="C", copy=True)
    mono.flags.writeable = False
    return mono


def to_mono_pcm16(frames: NDArray[np.generic]) -> NDArray[np.int16]:
    """Mono int16 of ``(frames × channels)`` int16 or float samples (a new array).

    Mono int16 is copied as it is (no float round trip). Anything else is mixed
    like :func:`to_mono_float32` and quantized like
    :func:`adapters.audio.resample.float_to_pcm16` (× 32768, round half to even,
    clip; NaN → 0, ±inf → full scale), so a file yields the same int16 whether it
    is read as int16 or as float. Call it on large blocks (a read-ahead): the float
    clean-up is per call, not per sample.

    Raises:
        InputError: a dtype that is neither integer nor float.
    """
    array = np.asarray(frames)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 1 and array.dtype == np.int16:
        return array.astype("<i2", copy=True)
    mono = to_mono_float32(array)
    if array.dtype.kind == "f":
        mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
    scaled = mono * np.float32(32768.0)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype("<i2")
