"""What counts as silence: a declared energy threshold, and the replay's pre-roll (pure).

Audio whose every 100 ms block has an RMS below :data:`SILENCE_RMS` (int16
units) holds no words. The session commits such audio after the last final
instead of keeping it for a replay, keeping only :data:`PRE_ROLL_S` before the
newest audio (a word's onset can sit below the threshold), and the liveness
watch expects no answer to it (a quiet recognizer is not a dead connection).
"""

from __future__ import annotations

from typing import Final

import numpy as np

__all__ = ["PRE_ROLL_S", "SILENCE_RMS", "is_silent"]

SILENCE_RMS: Final = 64.0
"""RMS in int16 units (about -54 dBFS) below which a 100 ms block is silent; the
simulator's ``silence_rms`` default is the same."""

PRE_ROLL_S: Final = 0.5
"""Silence kept before the newest audio for a replay (the onset of the next word).

What a recognizer needs before an onset: the service's VAD keeps 300 ms before the
speech it detects (``prefix_padding_ms``, DASHSCOPE.md §5), and a soft onset can hide
below :data:`SILENCE_RMS` in the one 100 ms block before the first loud one: 400 ms,
and 500 ms whole frames with a frame to spare (the daemon's suspend gate keeps the
same ``preroll-ms``). Every stream holds it, a 24/7 host's thousand of them too: at
16 kHz it is 16 KB a stream (#11)."""


_INT16: Final = np.dtype("<i2")
_FLOAT32: Final = np.dtype(np.float32)
_LIMIT: Final = SILENCE_RMS * SILENCE_RMS  # the threshold as a mean square


def is_silent(pcm: bytes, rate: int) -> bool:
    """True when every 100 ms block of the int16 PCM is below :data:`SILENCE_RMS`.

    A tail shorter than a block is judged on its own samples.
    """
    # Runs for every frame of every stream (#11). Between two frames the socket
    # sends of a thousand streams evict numpy's dispatch code from the caches, so
    # each numpy call costs ~2 us there, not the ~0.5 us a micro-benchmark shows:
    # a 100 ms frame (one block) takes three (view, float32 copy, BLAS dot), and
    # nothing else, no slice, no dtype parsed from a string. The sum is compared as a
    # Python float: a numpy scalar's comparison and its bool() cost more than the
    # conversion, and the limit (4096 x block) is exact in float32 and float64 alike.
    x = np.frombuffer(pcm, _INT16).astype(_FLOAT32)
    size = x.size
    block = rate // 10 or 1
    if size == block:
        return float(x.dot(x)) < _LIMIT * block
    if size == 0:
        return True
    whole = size - size % block
    if whole:
        blocks = x[:whole].reshape(-1, block)
        if bool((np.einsum("ij,ij->i", blocks, blocks) >= _LIMIT * block).any()):
            return False
    if whole < size:
        tail = x[whole:]
        return float(tail.dot(tail)) < _LIMIT * tail.size
    return True
