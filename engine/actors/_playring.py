"""The playback actor's ring: a bounded int16 FIFO between trio and PortAudio's thread.

Pure apart from one lock: no trio, no clock. :class:`PcmRing` also keeps the
counters of :class:`PlaybackStats` that only the ring can see (overflow, underruns,
what the callback played).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.audio.devices import DeviceInfo

__all__ = ["PcmRing", "PlaybackStats"]


@final
class PlaybackStats:
    """Live counters of one playback actor (read them; the actor and the callback write
    them). Frames are at the device's :attr:`rate`."""

    def __init__(self) -> None:
        self.device: DeviceInfo | None = None
        self.rate = 0
        self.chunks = self.frames_in = 0  # accepted into the ring
        self.overflows = self.dropped_frames = 0  # drop-oldest
        self.callbacks = self.played_frames = self.silence_frames = 0
        self.underruns = self.underrun_frames = 0  # gaps inside a response
        self.output_underflows = 0  # PortAudio's own status flag
        self.queued_frames = 0
        self.discarded_frames = 0  # never played because the device was lost
        self.lost: str | None = None  # the cause, once the device is lost


@final
class PcmRing:
    """The bounded int16 mono FIFO between trio and the PortAudio callback.

    :meth:`push` (trio) and :meth:`fill` (PortAudio's thread) share one lock, held only
    to copy bytes, so neither side ever waits on the other's work. ``tag`` names the
    response a chunk belongs to: audio pushed with the tag of the audio that ran dry is
    an underrun (see :mod:`engine.actors.playback`).

    Args:
        capacity_frames: frames the ring holds.
        stats: the counters to update.
        on_empty: called (on the callback's thread, outside the lock) each time
            :meth:`fill` plays the last queued frame; it must not block.
    """

    def __init__(
        self,
        capacity_frames: int,
        stats: PlaybackStats,
        on_empty: Callable[[], None] | None = None,
    ) -> None:
        if capacity_frames < 1:
            raise ValueError(f"capacity must be at least one frame, got {capacity_frames}")
        self._buf = bytearray(capacity_frames * 2)
        self._view = memoryview(self._buf)
        self._cap = len(self._buf)
        self._head = self._size = 0
        self._lock = threading.Lock()
        self._tag = -1  # of the newest audio pushed
        self._dry_frames = 0  # silence played since the ring ran dry after audio
        self._zeros = b""  # the callback's reusable silence
        self._on_empty = on_empty
        self.stats = stats

    @property
    def queued_frames(self) -> int:
        return self._size // 2

    def push(self, pcm: bytes, tag: int) -> int:
        """Queue ``pcm`` (whole int16 samples; an odd last byte is ignored), dropping the
        oldest queued audio to make room. Not a checkpoint; never blocks for long.

        Returns:
            the frames dropped.
        """
        data = memoryview(pcm)[: len(pcm) & ~1]
        if not data:
            return 0
        stats = self.stats
        with self._lock:
            if self._dry_frames and tag == self._tag:
                stats.underruns += 1
                stats.underrun_frames += self._dry_frames
            self._dry_frames = 0
            self._tag = tag
            dropped = max(0, len(data) - self._cap)  # a chunk larger than the ring
            data = data[dropped:]
            over = self._size + len(data) - self._cap
            if over > 0:
                self._head = (self._head + over) % self._cap
                self._size -= over
                dropped += over
            tail = (self._head + self._size) % self._cap
            first = min(len(data), self._cap - tail)
            self._view[tail : tail + first] = data[:first]
            self._view[: len(data) - first] = data[first:]
            self._size += len(data)
            stats.chunks += 1
            stats.frames_in += len(data) // 2
            if dropped:
                stats.overflows += 1
                stats.dropped_frames += dropped // 2
            stats.queued_frames = self._size // 2
        return dropped // 2

    def fill(self, out: memoryview, *, underflow: bool = False) -> None:
        """Fill ``out`` (int16 bytes) with queued audio, then silence. PortAudio's thread."""
        want = len(out)
        stats = self.stats
        with self._lock:
            n = min(self._size, want)
            head = self._head
            first = min(n, self._cap - head)
            out[:first] = self._view[head : head + first]
            out[first:n] = self._view[: n - first]
            self._head = (head + n) % self._cap
            self._size -= n
            emptied = n > 0 and self._size == 0
            silent = (want - n) // 2
            stats.callbacks += 1
            stats.played_frames += n // 2
            stats.silence_frames += silent
            stats.output_underflows += underflow
            stats.queued_frames = self._size // 2
            if silent and self._tag >= 0:
                self._dry_frames += silent
        if emptied and self._on_empty is not None:
            self._on_empty()
        if n < want:
            if len(self._zeros) < want - n:
                self._zeros = bytes(want)
            out[n:] = memoryview(self._zeros)[: want - n]

    def clear(self) -> int:
        """Drop everything queued; return the frames dropped."""
        with self._lock:
            frames, self._size = self._size // 2, 0
            self.stats.queued_frames = 0
        return frames
