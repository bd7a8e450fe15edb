"""The stream's global timeline: the commit point and the replay buffer (pure, no trio).

Every stream counts samples at the session rate from its first sample. A server
task starts at a global ``offset``; its times (ms from the task's first audio)
map to global samples by :meth:`TaskClock.to_global`.

The **commit point** is the global end of the last final sentence: audio before
it is safe. The :class:`ReplayBuffer` keeps the audio from the commit point to
now, bounded by ``max_samples`` with a drop-oldest policy. Dropping is not yet a
loss (the audio was probably sent and recognized); it becomes one only if the
task dies before a final covers it, which is when :meth:`ReplayBuffer.lost_span`
says which span can no longer be replayed.

**Skips.** A source may skip time (``Stream.skip``: a suspended silence, a device
gap): the next frame then starts later than the previous one ended. The buffer
keeps such a *hole* as it is (never audio); a task that crosses it jumps its
clock over it (:meth:`TaskClock.skip_to`), so the server hears contiguous audio
while every result maps back to where it was spoken. A commit point that reaches
a hole moves to its end: nothing in a hole needs recognizing.
"""

from __future__ import annotations

import bisect
from array import array
from typing import TYPE_CHECKING

from .events import AudioFrame

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ReplayBuffer", "TaskClock"]

_INF = 1 << 62


class TaskClock:
    """Maps a task's server times (ms) onto the global timeline (samples).

    A task starts at global ``offset``. Keep-alive silence that the session sends
    while its source pauses exists on the task's timeline but not on the global
    one; :meth:`pad` records it, and times inside padding map to where it began.
    A skip is the inverse: global time with no task audio; :meth:`skip_to` records
    it, and task time after it maps past the hole.
    """

    __slots__ = ("_anchors", "offset", "padded", "rate", "task_samples")

    def __init__(self, offset: int, rate: int) -> None:
        self.offset = offset
        self.rate = rate
        self.task_samples = 0  # audio (real and padding) sent to the task so far
        self.padded = 0  # keep-alive padding sent so far, in samples
        # (task sample, global sample) where each run of real audio begins
        self._anchors: list[tuple[int, int]] = [(0, offset)]

    def advance(self, samples: int) -> None:
        """Real audio was sent."""
        self.task_samples += samples

    def pad(self, samples: int) -> None:
        """Silence that is not on the global timeline was sent."""
        _, last_global = self._global_at(self.task_samples)
        self.task_samples += samples
        self.padded += samples
        self._anchors.append((self.task_samples, last_global))

    def skip_to(self, global_sample: int) -> None:
        """The next real audio begins at ``global_sample``: the span from :attr:`global_end`
        to it was skipped by the source (no-op unless it lies ahead)."""
        if global_sample > self.global_end:
            self._anchors.append((self.task_samples, global_sample))

    def _global_at(self, task_sample: int) -> tuple[int, int]:
        i = bisect.bisect_right(self._anchors, (task_sample, _INF)) - 1
        t0, g0 = self._anchors[max(i, 0)]
        return t0, g0 + (task_sample - t0)

    def to_global(self, ms: int) -> int:
        """A server time (ms since the task's first audio) as a global sample.

        A time exactly at a skip maps to the audio after it.
        """
        task_sample = ms * self.rate // 1000
        _, g = self._global_at(task_sample)
        # inside the padding that follows a run: clamp to where that padding started
        nxt = bisect.bisect_right(self._anchors, (task_sample, _INF))
        if nxt < len(self._anchors):
            g = min(g, self._anchors[nxt][1])
        return g

    def to_global_end(self, ms: int) -> int:
        """A server *end* time (exclusive) as a global sample.

        Like :meth:`to_global`, except exactly at a skip: an end there closes the
        audio before the hole, so it maps to where the hole began, not past it.
        """
        task_sample = ms * self.rate // 1000
        if task_sample <= 0:
            return self.to_global(ms)
        i = max(bisect.bisect_right(self._anchors, (task_sample - 1, _INF)) - 1, 0)
        t0, g0 = self._anchors[i]
        g = g0 + (task_sample - t0)
        if i + 1 < len(self._anchors):  # at or inside the padding that follows a run
            g = min(g, self._anchors[i + 1][1])
        return g

    def to_task_ms(self, sample: int) -> int:
        """Task ms of a global sample sent in the newest run (for pre-end hints)."""
        t0, g0 = self._anchors[-1]
        return (t0 + sample - g0) * 1000 // self.rate

    @property
    def global_end(self) -> int:
        """The global sample just after the last real audio sent (or the last skip)."""
        return self._global_at(self.task_samples)[1]


class ReplayBuffer:
    """Audio from the commit point to the newest frame, bounded, drop-oldest.

    Each frame starts where the previous one ended, or later: the span between is
    a hole the source skipped (see the module docstring). Not thread-safe; owned
    by one session actor.

    **Memory.** A 24/7 host holds one buffer per stream, so the buffer keeps only
    what a replay needs: each frame's audio (the producer's ``bytes``, not copied)
    and its start in a packed array, not the :class:`AudioFrame` it came in (its
    object and its ``start`` integer cost ~100 B a frame). :meth:`frames_from`
    makes frames again for the rare replay (``t`` is not kept). Frames wholly
    before the commit point are released as soon as it moves (a frame with the
    commit point inside it is kept whole: the replay slices it).
    """

    __slots__ = (
        "_holes",
        "_pcm",
        "_rate",
        "_samples",
        "_starts",
        "_stream",
        "commit_point",
        "dropped_samples",
        "end",
        "max_samples",
        "skipped_samples",
    )

    def __init__(self, max_samples: int) -> None:
        if max_samples <= 0:
            raise ValueError("the replay buffer needs room for at least one sample")
        self.max_samples = max_samples
        self._pcm: list[bytes] = []  # each kept frame's audio, oldest first
        self._starts = array("q")  # and its global start (8 bytes, not an int object)
        self._rate = 0  # of the frames appended (one session: one rate)
        self._stream = ""
        # Skipped spans after the commit point: rare, so a list (an empty deque is 760 B).
        self._holes: list[tuple[int, int]] = []
        self._samples = 0
        self.commit_point = 0
        self.end = 0  # global end of the newest frame appended
        self.dropped_samples = 0  # total dropped by overflow, for metrics
        self.skipped_samples = 0  # total skipped by the source (holes), for metrics

    def __len__(self) -> int:
        return len(self._pcm)

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def holes(self) -> int:
        """Skipped spans still ahead of the commit point."""
        return len(self._holes)

    @property
    def start(self) -> int:
        """Global start of the oldest frame kept (== end when empty)."""
        return self._starts[0] if self._pcm else self.end

    def append(self, frame: AudioFrame) -> None:
        """Add the newest frame; one that starts after :attr:`end` leaves a hole before it.

        Raises:
            ValueError: the frame starts before the buffer's end.
        """
        pcm = frame.pcm
        start, samples = frame.start, len(pcm) >> 1  # once each: this runs per frame
        if start != self.end:
            if start < self.end:
                raise ValueError(f"frame at {start} does not follow the buffer end {self.end}")
            self.skipped_samples += start - self.end
            if self.commit_point >= self.end:
                self.commit_point = start  # nothing pending before the hole
            else:
                self._holes.append((self.end, start))
        if not self._pcm:
            self._rate, self._stream = frame.rate, frame.stream
        self._pcm.append(pcm)
        self._starts.append(start)
        self._samples += samples
        self.end = start + samples
        if self._samples > self.max_samples:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Overflow: drop the oldest frames until the rest fit (the newest always stays)."""
        pcm = self._pcm
        k = dropped = 0
        while self._samples - dropped > self.max_samples and len(pcm) - k > 1:
            dropped += len(pcm[k]) >> 1
            k += 1
        if k:
            del pcm[:k], self._starts[:k]
            self._samples -= dropped
            self.dropped_samples += dropped
            self._prune_holes(self._starts[0])

    def skip_lost(self) -> tuple[int, int] | None:
        """Give up on the span overflow dropped: move the commit point to the oldest frame kept.

        A hole inside that span is reported as part of it (one outage, one span).
        """
        span = self.lost_span()
        if span is not None:
            self.commit_point = span[1]
            self._prune_holes(self.commit_point)
        return span

    def commit(self, point: int) -> None:
        """Mark audio before global sample ``point`` as safe; drop frames wholly before it."""
        if point <= self.commit_point:
            return
        self.commit_point = min(point, self.end) if self.end else point
        self._prune_holes(self.commit_point)
        if self._holes and self._holes[0][0] <= self.commit_point:
            # Everything before a hole is safe: the commit point moves past it.
            self.commit_point = self._holes.pop(0)[1]
        k = self._first_ending_after(self.commit_point)
        if k:
            pcm = self._pcm
            self._samples -= sum(len(pcm[i]) >> 1 for i in range(k))
            del pcm[:k], self._starts[:k]

    def lost_span(self) -> tuple[int, int] | None:
        """The span ``[commit_point, start)`` that overflow dropped before it was committed."""
        if self.start > self.commit_point:
            return self.commit_point, self.start
        return None

    def frames_from(self, sample: int) -> Iterator[AudioFrame]:
        """Frames that end after global ``sample``, oldest first (the buffer must not
        change while they are read)."""
        pcm, starts, rate, stream = self._pcm, self._starts, self._rate, self._stream
        for i in range(self._first_ending_after(sample), len(pcm)):
            yield AudioFrame(start=starts[i], pcm=pcm[i], rate=rate, stream=stream)

    def _first_ending_after(self, sample: int) -> int:
        """The index of the oldest frame that ends after ``sample``.

        Frames never overlap (each starts at or after the previous end), so every
        frame before the last one starting at or before ``sample`` ends by then: one
        C bisect on the starts and one end to look at (a commit runs it per frame in
        a silence, #11).
        """
        starts = self._starts
        i = bisect.bisect_right(starts, sample) - 1
        if i >= 0 and starts[i] + (len(self._pcm[i]) >> 1) > sample:
            return i
        return i + 1

    def _prune_holes(self, point: int) -> None:
        """Forget holes that end at or before ``point``."""
        holes = self._holes
        k = 0
        while k < len(holes) and holes[k][1] <= point:
            k += 1
        del holes[:k]
