"""The energy VAD's measurement: each VAD frame's sum of squares, remembered by content.

The scripted recognizer (:mod:`.scripted`) classifies 10 ms VAD frames by their energy
(the sum of the squared samples). In a simulator that serves thousands of sessions it
measures every received frame (100 ms: 10 VAD frames), and each numpy call costs more
than its arithmetic on so few samples. :func:`frame_energies` measures one chunk in four
calls; a :class:`LevelCache` remembers them by content, for audio that comes back
(a load test's looped speech, digital silence).

Exactness: an int16 sample squared is below 2**30, and a VAD frame's sum (at most 4,800
samples at 48 kHz, 10 ms) stays below 2**53, so every partial sum is an integer a float64
holds exactly: the energies do not depend on how the rows are summed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LevelCache", "frame_energies"]


def _einsum_rows(f: npt.NDArray[np.float64], g: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    energies: npt.NDArray[np.float64] = np.einsum("ij,ij->i", f, g)
    return energies


# Each row's sum of squares, in one C call: numpy >= 2's vecdot ufunc costs half of
# einsum's Python-level dispatch on 10 VAD frames (the sums are exact integers either way).
_row_dots: Final[
    Callable[[npt.NDArray[np.float64], npt.NDArray[np.float64]], npt.NDArray[np.float64]]
] = getattr(np, "vecdot", _einsum_rows)


def frame_energies(samples: bytes | npt.NDArray[np.int16], frame: int) -> list[float]:
    """The energy of each ``frame``-sample VAD frame of ``samples`` (whole frames only).

    ``bytes`` are int16 little-endian PCM. Not a checkpoint.
    """
    x = np.frombuffer(samples, "<i2") if isinstance(samples, bytes) else samples
    f = x.reshape(-1, frame).astype(np.float64)
    energies: list[float] = _row_dots(f, f).tolist()
    return energies


@final
class LevelCache:
    """:func:`frame_energies` of whole chunks, remembered by their content.

    A load test loops a few seconds of audio through every session, cut at the same
    frame boundaries, so the same chunks (digital silence above all) come back
    thousands of times: measuring one costs five numpy calls (~5 µs, twice that on a
    busy machine), looking it up one hash of its bytes (~1 µs). The key is the chunk
    itself, so a hit is exact, never a collision. Other audio pays the hash and an
    insertion. Shared by a recognizer's sessions (like the tone decoder's
    :class:`~.tonecode.DecodeCache`); not thread-safe (use it from one trio thread).

    Bound: at most ``max_bytes`` of chunks are kept (the energies are ~1/80th of that
    again); past it the oldest go first. Chunks over ``max_chunk`` bytes are measured,
    never kept. :attr:`evicted` counts the chunks dropped.

    Attributes:
        hits: chunks answered from the cache.
        misses: chunks measured (and kept, if small enough).
        evicted: chunks dropped to stay within ``max_bytes``.
    """

    __slots__ = ("_bytes", "_max_bytes", "_max_chunk", "_tables", "evicted", "hits", "misses")

    def __init__(self, *, max_bytes: int = 8 << 20, max_chunk: int = 1 << 16) -> None:
        if max_bytes < 1 or max_chunk < 1:
            raise ValueError("max_bytes and max_chunk must be positive")
        self._max_bytes = max_bytes
        self._max_chunk = max_chunk
        # One table per VAD frame size (sessions of other rates cut other frames).
        self._tables: dict[int, dict[bytes, tuple[float, ...]]] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables.values())

    def energies(self, pcm: bytes, frame: int) -> tuple[float, ...]:
        """What ``frame_energies(pcm, frame)`` gives (``pcm``: whole frames), as a tuple."""
        if type(pcm) is not bytes:  # a bytearray or a view: not a key, measure it
            self.misses += 1
            return tuple(frame_energies(bytes(pcm), frame))
        table = self._tables.get(frame)
        if table is None:
            table = self._tables[frame] = {}
        found = table.get(pcm)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        energies = tuple(frame_energies(pcm, frame))
        size = len(pcm)
        if size <= self._max_chunk:
            self._bytes += size
            table[pcm] = energies
            if self._bytes > self._max_bytes:
                self._evict()
        return energies

    def _evict(self) -> None:
        """Drop the oldest chunks (across frame sizes, table by table) until within bounds."""
        for table in self._tables.values():
            while table and self._bytes > self._max_bytes:
                oldest = next(iter(table))
                del table[oldest]
                self._bytes -= len(oldest)
                self.evicted += 1
