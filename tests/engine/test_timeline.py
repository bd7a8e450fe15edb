"""The global timeline (pure): task clocks with padding and skips, the replay buffer with holes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.events import AudioFrame
from engine.timeline import ReplayBuffer, TaskClock

RATE = 16000


def frame(start: int, samples: int = 1600) -> AudioFrame:
    return AudioFrame(start=start, pcm=b"\1\0" * samples, rate=RATE)


class TestTaskClock:
    def test_padding_maps_to_where_it_began(self) -> None:
        """Keep-alive padding is on the task's timeline only."""
        clock = TaskClock(1000, RATE)
        clock.advance(1600)
        clock.pad(3200)
        clock.advance(1600)
        assert clock.to_global(50) == 1800  # inside the first run
        assert clock.to_global(150) == 2600  # inside the padding: where it began
        assert clock.to_global(350) == 2600 + 800  # after it: the next run
        assert (clock.padded, clock.global_end) == (3200, 4200)

    def test_a_skip_moves_later_audio_past_the_hole(self) -> None:
        """skip_to: task time after the jump maps past the skipped span."""
        clock = TaskClock(0, RATE)
        clock.advance(1600)  # global 0..1600
        clock.skip_to(1600 + 16000)  # one second skipped
        clock.advance(1600)
        assert clock.global_end == 17600 + 1600
        assert clock.to_global(50) == 800
        assert clock.to_global(100) == 17600  # exactly at the skip: the audio after it
        assert clock.to_global(150) == 17600 + 800
        assert clock.padded == 0

    def test_an_end_exactly_at_a_skip_closes_the_audio_before_it(self) -> None:
        """to_global_end: an end (exclusive) at the skip maps to where the hole began."""
        clock = TaskClock(0, RATE)
        clock.advance(1600)  # global 0..1600
        clock.skip_to(1600 + 16000)
        clock.advance(1600)
        assert clock.to_global_end(100) == 1600  # not 17600: nothing after the hole is in it
        assert clock.to_global_end(50) == clock.to_global(50) == 800
        assert clock.to_global_end(150) == clock.to_global(150) == 17600 + 800
        assert clock.to_global_end(0) == clock.to_global(0) == 0

    def test_an_end_inside_or_after_padding_clamps_like_a_start(self) -> None:
        clock = TaskClock(1000, RATE)
        clock.advance(1600)
        clock.pad(3200)
        clock.advance(1600)
        assert clock.to_global_end(100) == 2600  # the run's end, at the padding's start
        assert clock.to_global_end(150) == 2600  # inside the padding
        assert clock.to_global_end(300) == 2600  # the padding's end: still where it began
        assert clock.to_global_end(350) == clock.to_global(350)

    @given(st.lists(st.tuples(st.sampled_from(["audio", "pad", "skip"]), st.integers(1, 4000))))
    def test_an_end_is_never_after_the_start_of_the_same_time(
        self, ops: list[tuple[str, int]]
    ) -> None:
        """An end maps at or before the start at the same task time, and never backwards."""
        clock = TaskClock(0, RATE)
        for op, n in ops:
            if op == "audio":
                clock.advance(n)
            elif op == "pad":
                clock.pad(n)
            else:
                clock.skip_to(clock.global_end + n)
        ends = [
            clock.to_global_end(ms) for ms in range(0, clock.task_samples * 1000 // RATE + 2, 7)
        ]
        assert ends == sorted(ends)
        for ms in range(0, clock.task_samples * 1000 // RATE + 2, 7):
            assert clock.to_global_end(ms) <= clock.to_global(ms)

    def test_a_skip_after_padding_and_at_the_start(self) -> None:
        """Padding then a skip at the same task time, and a skip before any audio."""
        clock = TaskClock(0, RATE)
        clock.advance(1600)
        clock.pad(1600)
        clock.skip_to(5000)
        clock.advance(1600)
        assert clock.to_global(150) == 1600  # inside the padding
        assert clock.to_global(200) == 5000
        assert clock.to_global(250) == 5800
        fresh = TaskClock(100, RATE)
        fresh.skip_to(900)
        fresh.advance(160)
        assert (fresh.to_global(0), fresh.to_global(10), fresh.global_end) == (900, 1060, 1060)

    def test_a_skip_backwards_is_ignored(self) -> None:
        clock = TaskClock(0, RATE)
        clock.advance(1600)
        clock.skip_to(800)
        clock.skip_to(1600)
        clock.advance(160)
        assert clock.global_end == 1760

    @given(st.lists(st.tuples(st.sampled_from(["audio", "pad", "skip"]), st.integers(1, 4000))))
    def test_mapping_never_moves_back(self, ops: list[tuple[str, int]]) -> None:
        """Global time grows with task time, whatever mix of audio, padding and skips."""
        clock = TaskClock(0, RATE)
        for op, n in ops:
            if op == "audio":
                clock.advance(n)
            elif op == "pad":
                clock.pad(n)
            else:
                clock.skip_to(clock.global_end + n)
        points = [clock.to_global(ms) for ms in range(0, clock.task_samples // 16 + 1, 7)]
        assert points == sorted(points)


class TestReplayBufferHoles:
    def test_a_hole_with_nothing_pending_moves_the_commit_point(self) -> None:
        """All audio before the skip is final: the commit point jumps to the new audio."""
        buf = ReplayBuffer(10 * RATE)
        buf.append(frame(0))
        buf.commit(1600)
        buf.append(frame(20000))
        assert (buf.commit_point, buf.start, buf.end, buf.holes) == (20000, 20000, 21600, 0)
        assert buf.lost_span() is None
        assert buf.skipped_samples == 20000 - 1600

    def test_the_first_frame_may_start_late(self) -> None:
        """A skip before any audio: the stream's first frame starts after it."""
        buf = ReplayBuffer(RATE)
        buf.append(frame(8000))
        assert (buf.commit_point, buf.lost_span()) == (8000, None)

    def test_a_hole_inside_pending_audio_is_kept_and_crossed_by_commits(self) -> None:
        """A commit that reaches a hole moves past it; none lands inside one."""
        buf = ReplayBuffer(10 * RATE)
        buf.append(frame(0))
        buf.append(frame(1600))  # pending: 0..3200
        buf.append(frame(10000))  # hole 3200..10000
        assert buf.holes == 1
        assert [f.start for f in buf.frames_from(0)] == [0, 1600, 10000]
        buf.commit(1000)
        assert (buf.commit_point, buf.holes) == (1000, 1)
        buf.commit(3200)  # the end of the audio before the hole
        assert (buf.commit_point, buf.holes, buf.start) == (10000, 0, 10000)
        assert buf.lost_span() is None

    def test_a_commit_past_the_hole_forgets_it(self) -> None:
        buf = ReplayBuffer(10 * RATE)
        buf.append(frame(0))
        buf.append(frame(5000))
        buf.commit(6000)
        assert (buf.commit_point, buf.holes, len(buf)) == (6000, 0, 1)

    def test_frames_cannot_go_back(self) -> None:
        buf = ReplayBuffer(RATE)
        buf.append(frame(0))
        with pytest.raises(ValueError, match="does not follow"):
            buf.append(frame(800))

    def test_overflow_across_a_hole_reports_one_span(self) -> None:
        """Overflow drops the oldest audio; the lost span runs to the oldest frame kept
        (a hole inside it is part of the one span; holes stay bounded)."""
        buf = ReplayBuffer(3200)
        buf.append(frame(0))
        for k in range(1, 4):
            buf.append(frame(10000 * k))  # a hole before each
        assert buf.samples <= 3200 and buf.holes <= len(buf)
        assert buf.lost_span() == (0, 20000)
        assert buf.skip_lost() == (0, 20000)
        assert (buf.commit_point, buf.holes) == (20000, 1)


class TestEdges:
    """Edges the mutation run (tools/mutation/SURVIVORS.md) found unpinned."""

    def test_task_ms_of_a_global_sample_after_a_skip(self) -> None:
        """to_task_ms maps through the newest run, truncating to whole ms.

        Mutants it kills: ``+`` → ``*``, ``* 1000`` → ``- 1000``, ``//`` → ``/`` and
        ``_anchors[-1]`` → ``_anchors[0]`` in to_task_ms (no test called it).
        """
        clock = TaskClock(16000, RATE)
        clock.advance(16000)  # global 16000..32000 is task 0..1 s
        assert clock.to_task_ms(24001) == 500  # 500.06 ms, truncated
        clock.skip_to(48000)  # global 32000..48000 skipped
        clock.advance(8000)
        assert clock.to_task_ms(56000) == 1500  # 0.5 s into the run after the skip
        clock.skip_to(64000)  # a third run: the newest anchor is neither [0] nor [1]
        clock.advance(8000)
        assert clock.to_task_ms(68000) == 1750  # task 1.5 s + 0.25 s into the third run
        assert isinstance(clock.to_task_ms(68001), int)

    def test_a_skip_backwards_or_in_place_changes_nothing(self) -> None:
        """skip_to a point behind (or at) the end leaves the end where it is.

        Mutant it kills: ``global_sample > self.global_end`` → ``!=`` (a skip
        backwards moved the end back; the older test only looked after a later skip).
        """
        clock = TaskClock(0, RATE)
        clock.advance(1600)
        clock.skip_to(800)
        assert clock.global_end == 1600
        clock.skip_to(1600)
        assert clock.global_end == 1600
        clock.advance(160)
        assert (clock.global_end, clock.to_global(100)) == (1760, 1600)

    def test_a_commit_behind_the_commit_point_is_ignored(self) -> None:
        """The commit point never moves back.

        Mutant it kills: ``point <= self.commit_point`` → ``point == …`` in commit.
        """
        buf = ReplayBuffer(10 * RATE)
        buf.append(frame(0))
        buf.append(frame(1600))
        buf.commit(1600)
        buf.commit(800)
        assert (buf.commit_point, buf.start, len(buf)) == (1600, 1600, 1)

    def test_the_buffer_needs_room_for_one_sample(self) -> None:
        """0 samples is refused, 1 sample is the smallest buffer.

        Mutants they kill: ``max_samples <= 0`` → ``< 0`` and → ``<= 1``.
        """
        with pytest.raises(ValueError, match="at least one sample"):
            ReplayBuffer(0)
        assert ReplayBuffer(1).max_samples == 1

    def test_to_global_truncates_to_whole_samples(self) -> None:
        """At a rate where a ms is not a whole number of samples, times truncate.

        Mutant it kills: ``ms * self.rate // 1000`` → ``/`` in to_global.
        """
        clock = TaskClock(0, 44100)
        clock.advance(44100)
        assert clock.to_global(1) == 44
        assert isinstance(clock.to_global(1), int)

    def test_frames_from_takes_frames_ending_after_the_sample(self) -> None:
        """A frame ending at the sample is not replayed; one ending after it is.

        Mutants they kill: ``frame.end > sample`` → ``>=`` and → ``!=``.
        """
        buf = ReplayBuffer(10 * RATE)
        buf.append(frame(0))
        buf.append(frame(1600))
        assert [f.start for f in buf.frames_from(1600)] == [1600]
        assert [f.start for f in buf.frames_from(2000)] == [1600]
        assert [f.start for f in buf.frames_from(3200)] == []

    def test_nothing_is_lost_while_the_commit_point_is_inside_the_oldest_frame(self) -> None:
        """A commit point inside the oldest frame kept is no loss.

        Mutant it kills: ``self.start > self.commit_point`` → ``!=`` in lost_span.
        """
        buf = ReplayBuffer(10 * RATE)
        buf.append(frame(0))
        buf.append(frame(1600))
        buf.commit(2000)
        assert (buf.start, buf.commit_point, buf.lost_span()) == (1600, 2000, None)

    def test_a_commit_inside_a_hole_moves_to_its_end(self) -> None:
        """A commit point that lands inside a hole moves past it.

        Mutant it kills: ``self._holes[0][0] <= self.commit_point`` → ``==``.
        """
        buf = ReplayBuffer(10 * RATE)
        buf.append(frame(0))  # pending 0..1600, then a hole 1600..10000
        buf.append(frame(10000))
        buf.commit(5000)
        assert (buf.commit_point, buf.holes) == (10000, 0)

    def test_a_commit_past_the_end_stops_at_the_end(self) -> None:
        """A commit point beyond the newest audio is clamped to it.

        Mutant it kills: ``if self.end`` → ``if not self.end`` in commit.
        """
        buf = ReplayBuffer(10 * RATE)
        buf.append(frame(0))
        buf.commit(5000)
        assert (buf.commit_point, len(buf)) == (1600, 0)

    def test_counters_start_at_zero_and_count_exactly(self) -> None:
        """samples and dropped_samples count from 0.

        Mutants they kill: ``_samples = 0`` → ``-1`` and ``dropped_samples = 0`` → ``±1``.
        """
        buf = ReplayBuffer(3200)
        assert (buf.samples, buf.dropped_samples) == (0, 0)
        for k in range(3):
            buf.append(frame(1600 * k))
        assert (buf.samples, buf.dropped_samples) == (3200, 1600)

    def test_a_negative_buffer_is_refused(self) -> None:
        """Mutant it kills: ``max_samples <= 0`` → ``== 0``."""
        with pytest.raises(ValueError, match="at least one sample"):
            ReplayBuffer(-1600)

    def test_overflow_keeps_the_newest_frame_and_only_it(self) -> None:
        """Overflow drops down to the newest frame, which is kept even when it alone is
        larger than the buffer.

        Mutants they kill: ``len(pcm) - k > 1`` → ``>= 1``, ``> 0`` (the newest
        frame dropped too, then a crash) and ``> 2`` (one frame too many kept).
        """
        buf = ReplayBuffer(1600)
        for k in range(3):
            buf.append(frame(1600 * k))
        assert (buf.samples, buf.dropped_samples, buf.start) == (1600, 3200, 3200)
        small = ReplayBuffer(1000)
        small.append(frame(0))
        assert (len(small), small.samples, small.start) == (1, 1600, 0)

    def test_a_commit_inside_the_first_of_two_holes(self) -> None:
        """The hole the commit point landed in is the oldest one, not the newest.

        Mutant it kills: ``self._holes[0][0]`` → ``self._holes[-1][0]`` in commit.
        """
        buf = ReplayBuffer(10 * RATE)
        buf.append(frame(0))  # then holes 1600..10000 and 11600..20000
        buf.append(frame(10000))
        buf.append(frame(20000))
        assert buf.holes == 2
        buf.commit(5000)
        assert (buf.commit_point, buf.holes) == (10000, 1)
