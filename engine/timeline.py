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
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .events import AudioFrame

__all__ = ["ReplayBuffer", "TaskClock"]

_INF = 1 << 62


class TaskClock:
    """Maps a task's server times (ms) onto the global timeline (samples).

    A task starts at global ``offset``. Keep-alive silence that the session sends
    while its source pauses exists on the task's timeline but not on the global
    one; :meth:`pad` records it, and times inside padding map to where it began.
    """

    __slots__ = ("_anchors", "offset", "rate", "task_samples")

    def __init__(self, offset: int, rate: int) -> None:
        self.offset = offset
        self.rate = rate
        self.task_samples = 0  # audio (real and padding) sent to the task so far
        # (task sample, global sample) where each run of real audio begins
        self._anchors: list[tuple[int, int]] = [(0, offset)]

    def advance(self, samples: int) -> None:
        """Real audio was sent."""
        self.task_samples += samples

    def pad(self, samples: int) -> None:
        """Silence that is not on the global timeline was sent."""
        _, last_global = self._global_at(self.task_samples)
        self.task_samples += samples
        self._anchors.append((self.task_samples, last_global))

    def _global_at(self, task_sample: int) -> tuple[int, int]:
        i = bisect.bisect_right(self._anchors, (task_sample, _INF)) - 1
        t0, g0 = self._anchors[max(i, 0)]
        return t0, g0 + (task_sample - t0)

    def to_global(self, ms: int) -> int:
        task_sample = ms * self.rate // 1000
        _, g = self._global_at(task_sample)
        # inside the padding that follows a run: clamp to where that padding started
        nxt = bisect.bisect_right(self._anchors, (task_sample, _INF))
        if nxt < len(self._anchors):
            g = min(g, self._anchors[nxt][1])
        return g

    def to_task_ms(self, sample: int) -> int:
        """Task ms of a global sample sent in the newest run (for pre-end hints)."""
        t0, g0 = self._anchors[-1]
        return (t0 + sample - g0) * 1000 // self.rate

    @property
    def global_end(self) -> int:
        """The global sample just after the last real audio sent."""
        return self._global_at(self.task_samples)[1]

    @property
    def padded(self) -> int:
        """Total keep-alive padding sent, in samples."""
        return self.task_samples - (self.global_end - self.offset)


class ReplayBuffer:
    """Audio frames from the commit point to the newest frame, bounded, drop-oldest.

    Frames are contiguous on the global timeline (each starts where the previous
    ended). Not thread-safe; owned by one session actor.
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples <= 0:
            raise ValueError("the replay buffer needs room for at least one sample")
        self.max_samples = max_samples
        self._frames: deque[AudioFrame] = deque()
        self._samples = 0
        self.commit_point = 0
        self.end = 0  # global end of the newest frame appended
        self.dropped_samples = 0  # total dropped by overflow, for metrics

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def start(self) -> int:
        """Global start of the oldest frame kept (== end when empty)."""
        return self._frames[0].start if self._frames else self.end

    def append(self, frame: AudioFrame) -> None:
        if frame.start != self.end and (self._frames or self.end):
            raise ValueError(f"frame at {frame.start} does not follow the buffer end {self.end}")
        self._frames.append(frame)
        self._samples += frame.samples
        self.end = frame.end
        while self._samples > self.max_samples and len(self._frames) > 1:
            old = self._frames.popleft()
            self._samples -= old.samples
            self.dropped_samples += old.samples

    def skip_lost(self) -> tuple[int, int] | None:
        """Give up on the span overflow dropped: move the commit point to the oldest frame kept."""
        span = self.lost_span()
        if span is not None:
            self.commit_point = span[1]
        return span

    def commit(self, point: int) -> None:
        """Mark audio before global sample ``point`` as safe; drop frames wholly before it."""
        if point <= self.commit_point:
            return
        self.commit_point = min(point, self.end) if self.end else point
        while self._frames and self._frames[0].end <= self.commit_point:
            old = self._frames.popleft()
            self._samples -= old.samples

    def lost_span(self) -> tuple[int, int] | None:
        """The span ``[commit_point, start)`` that overflow dropped before it was committed."""
        if self.start > self.commit_point:
            return self.commit_point, self.start
        return None

    def frames_from(self, sample: int) -> Iterator[AudioFrame]:
        """Frames that end after global ``sample``, oldest first."""
        for frame in self._frames:
            if frame.end > sample:
                yield frame
