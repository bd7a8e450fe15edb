"""The one downmix: any PCM a producer has, to the mono float32 blocks a stream carries.

Files (:mod:`adapters.audio.files`), the microphone's PortAudio callback
(:mod:`engine.actors.mic`), pushed audio (:meth:`engine.stream.Stream.push`) and the
daemon's sources all hand their samples to :func:`to_mono_float32`, so every input
mixes channels alike: the plain average, in float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine.errors import InputError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["to_mono_float32"]


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
