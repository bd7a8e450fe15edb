"""The liveness watch's schedule (pure): when the reader wakes, and what is due then."""

from __future__ import annotations

import math

from adapters.dashscope._liveness import Liveness


def watch(**kw: float) -> Liveness:
    return Liveness(
        stall_s=kw.get("stall_s", 30.0),
        ping_interval_s=kw.get("ping_interval_s", 15.0),
        pong_timeout_s=kw.get("pong_timeout_s", 10.0),
    )


class TestSchedule:
    def test_nothing_is_watched_before_the_start(self) -> None:
        """Before the task started the reader waits without a deadline."""
        live = watch()
        live.sent_audio(1.0)
        assert live.wake_t == math.inf

    def test_the_first_wake_is_the_next_ping_or_half_a_stall(self) -> None:
        """Started at 100: wakes at min(next ping, half the stall timeout)."""
        live = watch(stall_s=30.0, ping_interval_s=15.0)
        live.start(100.0)
        assert live.wake_t == 115.0
        short = watch(stall_s=6.0, ping_interval_s=100.0)
        short.start(100.0)
        assert short.wake_t == 103.0

    def test_a_check_with_nothing_due_schedules_the_next(self) -> None:
        """No stall, no ping yet: the next wake is half a stall later (or the ping)."""
        live = watch(stall_s=6.0, ping_interval_s=100.0)
        live.start(0.0)
        assert live.check(3.0) is None and live.wake_t == 6.0
        assert live.check(99.0) is None and live.wake_t == 100.0


class TestStall:
    def test_unanswered_audio_is_a_stall_after_stall_s(self) -> None:
        """Audio at 1 s, nothing heard: a check at 7 s finds the stall (6 s)."""
        live = watch(stall_s=6.0, ping_interval_s=100.0)
        live.start(0.0)
        live.sent_audio(1.0)
        assert live.check(3.0) is None and live.check(6.0) is None
        assert live.check(7.0) == "stall"
        assert "6 s" in live.stall_message(7.0)

    def test_a_frame_heard_answers_the_audio(self) -> None:
        """A server frame resets the watch; silence never arms it."""
        live = watch(stall_s=6.0, ping_interval_s=100.0)
        live.start(0.0)
        live.sent_audio(1.0)
        live.heard(5.0)
        live.sent_audio(6.0, voiced=False)
        assert live.check(12.0) is None

    def test_the_finish_deadline_governs_once_finishing(self) -> None:
        """After the finish command a silent server is the finish deadline's business."""
        live = watch(stall_s=6.0, ping_interval_s=100.0)
        live.start(0.0)
        live.sent_audio(1.0)
        live.finishing()
        assert live.check(50.0) is None


class TestPing:
    def test_a_ping_is_due_at_its_interval_and_nothing_is_checked_until_its_pong(self) -> None:
        """At the interval: "ping", and no wake until :meth:`ponged` (the pong's deadline
        governs); the pong schedules the next ping one interval later."""
        live = watch(stall_s=1000.0, ping_interval_s=2.0)
        live.start(0.0)
        assert live.wake_t == 2.0
        assert live.check(2.0) == "ping"
        assert live.wake_t == math.inf
        live.ponged(2.5)
        assert live.wake_t == 4.5
        assert live.check(3.0) is None  # an early wake: nothing due yet
        assert live.check(4.5) == "ping"

    def test_the_pong_message_names_the_deadline(self) -> None:
        assert "2 s" in watch(pong_timeout_s=2.0).pong_message()
