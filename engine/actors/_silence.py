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

PRE_ROLL_S: Final = 1.0
"""Silence kept before the newest audio for a replay (the onset of the next word)."""


def is_silent(pcm: bytes, rate: int) -> bool:
    """True when every 100 ms block of the int16 PCM is below :data:`SILENCE_RMS`.

    A tail shorter than a block is judged on its own samples.
    """
    samples = np.frombuffer(pcm, dtype="<i2")
    size = samples.size
    if size == 0:
        return True
    # Runs for every frame of every stream: one float32 conversion and one dot product
    # per block (a 100 ms frame is one block), no reductions on the side (#11).
    x = samples.astype(np.float32)
    block = max(1, rate // 10)
    whole = size - size % block
    limit = SILENCE_RMS * SILENCE_RMS
    if whole == block:
        head = x[:block]
        if float(head.dot(head)) >= limit * block:
            return False
    elif whole:
        blocks = x[:whole].reshape(-1, block)
        if bool((np.einsum("ij,ij->i", blocks, blocks) >= limit * block).any()):
            return False
    if whole < size:
        tail = x[whole:]
        return float(tail.dot(tail)) < limit * tail.size
    return True
