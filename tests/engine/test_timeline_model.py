"""The compact replay buffer against a model: exact trims, bounds and accounting (hypothesis).

The model is the buffer as it was before it was made compact: a deque of the
frames themselves, popped whole. The buffer must agree with it after any mix of
appends (with holes), commits, overflow and give-ups, and keep its invariants:
its audio is bounded, nothing wholly before the commit point is kept, and the
counters add up.
"""

from __future__ import annotations

import sys
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.events import AudioFrame
from engine.timeline import ReplayBuffer

RATE = 16000


class Model:
    """The plain reference: frames in a deque (the behaviour to keep)."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.frames: deque[AudioFrame] = deque()
        self.holes: list[tuple[int, int]] = []
        self.commit_point = self.end = self.dropped = self.skipped = 0

    @property
    def samples(self) -> int:
        return sum(f.samples for f in self.frames)

    @property
    def start(self) -> int:
        return self.frames[0].start if self.frames else self.end

    def prune(self, point: int) -> None:
        self.holes = [h for h in self.holes if h[1] > point]

    def append(self, frame: AudioFrame) -> None:
        if frame.start != self.end:
            self.skipped += frame.start - self.end
            if self.commit_point >= self.end:
                self.commit_point = frame.start
            else:
                self.holes.append((self.end, frame.start))
        self.frames.append(frame)
        self.end = frame.end
        while self.samples > self.max_samples and len(self.frames) > 1:
            self.dropped += self.frames.popleft().samples
            self.prune(self.frames[0].start)

    def commit(self, point: int) -> None:
        if point <= self.commit_point:
            return
        self.commit_point = min(point, self.end) if self.end else point
        self.prune(self.commit_point)
        if self.holes and self.holes[0][0] <= self.commit_point:
            self.commit_point = self.holes.pop(0)[1]
        while self.frames and self.frames[0].end <= self.commit_point:
            self.frames.popleft()

    def lost_span(self) -> tuple[int, int] | None:
        return (self.commit_point, self.start) if self.start > self.commit_point else None

    def skip_lost(self) -> tuple[int, int] | None:
        span = self.lost_span()
        if span is not None:
            self.commit_point = span[1]
            self.prune(self.commit_point)
        return span


# (op, a, b): append a frame of b samples after a gap of a; commit at the end minus a;
# give up on what overflow lost; read the frames from the end minus a.
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"), st.sampled_from([0, 0, 0, 1, 700, 5000]), st.integers(0, 2400)
        ),
        st.tuples(st.just("commit"), st.integers(-500, 9000), st.just(0)),
        st.tuples(st.just("skip_lost"), st.just(0), st.just(0)),
        st.tuples(st.just("read"), st.integers(-500, 9000), st.just(0)),
    ),
    max_size=60,
)


def _frames(frames: object) -> list[tuple[int, bytes]]:
    return [(f.start, f.pcm) for f in frames]  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(ops=OPS, max_samples=st.sampled_from([1, 1600, 4000, 9000]))
def test_the_compact_buffer_agrees_with_the_model(
    ops: list[tuple[str, int, int]], max_samples: int
) -> None:
    """Any mix of appends, holes, commits, overflow and give-ups: the same state as the
    model, no frame wholly before the commit point, the audio within its bound."""
    buf, model = ReplayBuffer(max_samples), Model(max_samples)
    k = 0
    for op, a, b in ops:
        before = buf.commit_point
        if op == "append":
            k += 1
            frame = AudioFrame(start=buf.end + a, pcm=bytes([k % 251, 0]) * b, rate=RATE)
            buf.append(frame)
            model.append(frame)
        elif op == "commit":
            buf.commit(buf.end - a)
            model.commit(model.end - a)
        elif op == "skip_lost":
            assert buf.skip_lost() == model.skip_lost()
        else:
            assert _frames(buf.frames_from(buf.end - a)) == [
                (f.start, f.pcm) for f in model.frames if f.end > model.end - a
            ]
        state = (buf.commit_point, buf.start, buf.end, buf.samples, len(buf), buf.holes)
        assert state == (
            model.commit_point,
            model.start,
            model.end,
            model.samples,
            len(model.frames),
            len(model.holes),
        )
        assert (buf.dropped_samples, buf.skipped_samples) == (model.dropped, model.skipped)
        assert buf.lost_span() == model.lost_span()
        assert _frames(buf.frames_from(-1)) == [(f.start, f.pcm) for f in model.frames]
        kept = list(buf.frames_from(-1))
        if op == "commit" and buf.commit_point > before:  # trimmed at once: none kept ends by it
            assert all(f.end > buf.commit_point for f in kept)
        # the audio within its bound (the newest frame always stays), and counted exactly
        assert buf.samples <= max_samples or len(buf) == 1
        assert sum(f.samples for f in kept) == buf.samples


def test_frames_from_gives_the_frames_audio_without_copying_it() -> None:
    """The buffer keeps the producer's bytes (no copy); frames read back carry rate and stream."""
    pcm = b"\1\0" * 1600
    buf = ReplayBuffer(RATE)
    buf.append(AudioFrame(start=0, pcm=pcm, rate=RATE, stream="s7"))
    (again,) = buf.frames_from(0)
    assert again.pcm is pcm
    assert (again.start, again.rate, again.stream) == (0, RATE, "s7")


def test_a_kept_frame_costs_its_audio_and_a_few_bytes() -> None:
    """Per frame held, the buffer adds at most ~40 bytes to the audio itself (a list slot,
    an array slot and their growth), not an AudioFrame and an int object (~100 B)."""
    buf = ReplayBuffer(1000 * RATE)
    frames = [AudioFrame(start=k * 1600, pcm=b"\0\0" * 1600, rate=RATE) for k in range(1000)]
    for frame in frames:
        buf.append(frame)
    held = sys.getsizeof(buf._pcm) + sys.getsizeof(buf._starts)
    assert held / len(buf) <= 40
    del frames
    assert len(buf) == 1000 and buf.samples == 1000 * 1600
