"""The session's supervisor in virtual time: reconnect with replay, liveness, rotation, idle."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing
from supervisor_helpers import (
    FRAME,
    GROUP,
    Behaviour,
    ContentServer,
    config,
    expected_finals,
    of,
    run_stream,
)

from engine.events import (
    AudioGap,
    Final,
    Reconnecting,
    Rotated,
    SessionClosed,
    SessionOpened,
    StreamEnded,
    StreamError,
)
from engine.policy import DAEMON, RestartPolicy, backoff_bound


def finals_of(events: list[object]) -> list[tuple[str, int, int]]:
    return [(f.text, f.start, f.end) for f in of(events, Final)]  # type: ignore[arg-type]


class TestGaplessReconnect:
    @pytest.mark.parametrize(
        "fault",
        [
            Behaviour(fail_after=23),
            Behaviour(close_after=23),
            Behaviour(fail_after=23, fail_code="Throttling.RateQuota"),
            Behaviour(fail_after=12, fail_code="CLIENT_ERROR"),
        ],
        ids=["task-failed", "socket-closed", "throttled", "idle-timeout"],
    )
    async def test_transient_failure_loses_nothing(
        self, autojump_clock: trio.testing.MockClock, fault: Behaviour
    ) -> None:
        """Every final exactly once, on the same global times, with 0 ms lost."""
        server = ContentServer(fault, Behaviour())
        events = await run_stream(server, 60)
        assert finals_of(events) == expected_finals(60)
        ended = of(events, StreamEnded)[0]
        assert (ended.status, ended.reconnects, ended.audio_lost_ms) == ("ok", 1, 0)
        (reconnecting,) = of(events, Reconnecting)
        assert reconnecting.attempt == 1
        # The new task started at the commit point: the end of the last final.
        second = server.connections[1]
        assert second.units[0] % GROUP == 0
        assert of(events, SessionOpened)[1].offset == second.units[0] * FRAME

    async def test_finish_deadline_replays_the_tail(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """No task-finished on the first connection: the tail is finished on a second."""
        server = ContentServer(Behaviour(never_finish=True), Behaviour())
        events = await run_stream(server, 30, cfg=config(finish_timeout_s=5.0))
        assert finals_of(events) == expected_finals(30)
        assert of(events, StreamEnded)[0].audio_lost_ms == 0
        assert len(server.connections) == 2

    async def test_the_end_of_stream_budget_includes_the_retries(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A server that never finishes: retries while they fit in the end-of-stream
        budget (from the first finish-task), then one finish-deadline gap; not five
        full deadlines."""
        server = ContentServer(Behaviour(never_finish=True))
        cfg = config(finish_timeout_s=10.0, end_budget_s=30.0)
        events = await run_stream(server, 22, cfg=cfg)
        ended = of(events, StreamEnded)[0]
        (gap,) = of(events, AudioGap)
        assert (gap.start, gap.end, gap.reason) == (20 * FRAME, 22 * FRAME, "finish-deadline")
        assert ended.status == "partial"
        assert of(events, StreamError)[0].kind == "finish-timeout"
        assert 2 <= len(server.connections) <= 3  # the retries that fit, not six
        input_end = 2.2  # 22 frames of 100 ms
        assert ended.t - input_end <= 30.0 + 1.0

    async def test_a_retry_that_fits_the_budget_finishes_the_stream(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        server = ContentServer(Behaviour(never_finish=True), Behaviour())
        events = await run_stream(server, 20, cfg=config(finish_timeout_s=5.0, end_budget_s=8.0))
        assert of(events, StreamEnded)[0].status == "ok" and len(server.connections) == 2

    async def test_permanent_error_stops_with_exact_gap(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A transient failure, then 401 on reconnect: one auth error, the rest is an exact gap."""
        server = ContentServer(Behaviour(fail_after=23), Behaviour(reject=401))
        events = await run_stream(server, 40)
        (error,) = of(events, StreamError)
        assert error.kind == "auth"
        assert error.permanent
        (gap,) = of(events, AudioGap)
        assert (gap.start, gap.end, gap.reason) == (20 * FRAME, 40 * FRAME, "permanent-error")
        assert finals_of(events) == expected_finals(20)
        assert of(events, StreamEnded)[0].status == "failed"

    @pytest.mark.parametrize("code", ["InvalidParameter", "Arrearage"])
    async def test_permanent_task_failure_is_not_retried(
        self, autojump_clock: trio.testing.MockClock, code: str
    ) -> None:
        """task-failed with a permanent code: no Reconnecting at all."""
        server = ContentServer(Behaviour(fail_after=7, fail_code=code))
        events = await run_stream(server, 20)
        assert not of(events, Reconnecting)
        assert of(events, StreamError)[0].permanent
        assert len(server.connections) == 1

    async def test_outage_longer_than_the_buffer_is_an_exact_gap(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Audio beyond the replay buffer is one AudioGap; the rest is recognized."""
        refused = [Behaviour(reject=503)] * 4
        server = ContentServer(Behaviour(fail_after=13), *refused, Behaviour())
        cfg = config(replay_buffer_s=1.0, policy=RestartPolicy(max_attempts=10, backoff_base_s=1.0))
        events = await run_stream(server, 100, cfg=cfg)
        (gap,) = of(events, AudioGap)
        assert gap.reason == "replay-overflow"
        assert gap.start == 10 * FRAME  # the commit point when the task died
        reopened = of(events, SessionOpened)[-1]
        assert reopened.offset == gap.end  # the new task starts at the oldest audio kept
        ended = of(events, StreamEnded)[0]
        assert ended.audio_lost_ms == (gap.end - gap.start) * 1000 // 16000
        assert ended.status == "partial"
        # every final is a whole group, none overlaps the gap, none is duplicated
        finals = finals_of(events)
        assert len(finals) == len(set(finals))
        assert all(end <= gap.start or start >= gap.end for _, start, end in finals)

    async def test_cli_policy_gives_up(self, autojump_clock: trio.testing.MockClock) -> None:
        """Every attempt refused: max_attempts reconnects with bounded delays, then a gap."""
        policy = RestartPolicy(max_attempts=3, backoff_base_s=0.5, backoff_cap_s=4.0)
        server = ContentServer(Behaviour(reject=503))
        events = await run_stream(server, 10, cfg=config(policy=policy))
        reconnects = of(events, Reconnecting)
        assert [r.attempt for r in reconnects] == [1, 2, 3]
        assert all(0 <= r.delay <= backoff_bound(policy, r.attempt) for r in reconnects)
        assert of(events, StreamError)[0].kind == "connect"
        assert of(events, AudioGap)[0].end == 10 * FRAME
        assert of(events, StreamEnded)[0].status == "failed"

    async def test_daemon_policy_never_gives_up(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Twenty refusals in a row, then the service is back: nothing lost."""
        server = ContentServer(*[Behaviour(reject=503)] * 20, Behaviour())
        cfg = config(policy=DAEMON, replay_buffer_s=600.0)
        events = await run_stream(server, 30, cfg=cfg)
        assert len(of(events, Reconnecting)) == 20
        assert all(r.delay <= DAEMON.backoff_cap_s for r in of(events, Reconnecting))
        assert finals_of(events) == expected_finals(30)

    async def test_healthy_task_resets_the_attempt_counter(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A task that ran past healthy_after_s counts the next failure as attempt 1 again."""
        policy = RestartPolicy(max_attempts=2, healthy_after_s=2.0)
        server = ContentServer(*[Behaviour(fail_after=30)] * 4, Behaviour())
        events = await run_stream(server, 150, cfg=config(policy=policy))
        assert {r.attempt for r in of(events, Reconnecting)} == {1}
        assert finals_of(events) == expected_finals(150)


class TestLiveness:
    async def test_half_open_socket_is_detected_by_ping(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A server that stops reading (no pongs) is declared dead; the stream recovers."""
        server = ContentServer(Behaviour(deaf_after=12), Behaviour())
        cfg = config(ping_interval_s=2.0, pong_timeout_s=2.0, send_timeout_s=30.0)
        events = await run_stream(server, 60, cfg=cfg)
        assert "pong" in of(events, Reconnecting)[0].cause
        assert finals_of(events) == expected_finals(60)

    async def test_stall_watchdog(self, autojump_clock: trio.testing.MockClock) -> None:
        """Audio flows, nothing comes back: after stall_timeout_s the task is replaced."""
        server = ContentServer(Behaviour(mute_after=12), Behaviour())
        events = await run_stream(server, 80, cfg=config(stall_timeout_s=3.0))
        assert "stall" in of(events, Reconnecting)[0].cause
        assert finals_of(events) == expected_finals(80)


class TestIdle:
    async def test_keepalive_pads_a_paused_source(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A 40 s pause keeps one task alive with padding; global times are unchanged."""
        server = ContentServer()
        events = await run_stream(server, 30, pause=(10, 40.0), cfg=config(idle_timeout_s=8.0))
        (conn,) = server.connections
        assert conn.units.count(-1) >= 4  # padding arrived during the pause
        gaps = [b - a for a, b in zip(conn.frame_times, conn.frame_times[1:], strict=False)]
        assert max(gaps) < 23.0  # the service's idle limit never tripped
        assert finals_of(events) == expected_finals(30)

    async def test_finish_policy_reopens_on_new_audio(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Idle policy finish: the task ends during the pause and a new one starts at the new audio."""
        server = ContentServer()
        cfg = config(idle_timeout_s=5.0, idle_policy="finish")
        events = await run_stream(server, 30, pause=(10, 40.0), cfg=cfg)
        assert len(server.connections) == 2
        assert server.connections[1].units[0] == 10
        assert of(events, SessionOpened)[1].offset == 10 * FRAME
        assert finals_of(events) == expected_finals(30)
        assert not of(events, Reconnecting)


class TestRotation:
    async def test_rotation_is_make_before_break_and_gapless(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Tasks older than max_task_age_s rotate at a pause; no gap, no duplicate."""
        server = ContentServer()
        cfg = config(max_task_age_s=3.0, rotation_lead_s=1.0, rotation_grace_s=2.0)
        events = await run_stream(server, 120, cfg=cfg)
        rotations = of(events, Rotated)
        assert len(rotations) >= 2
        assert finals_of(events) == expected_finals(120)
        for rotation in rotations:
            assert rotation.at % (GROUP * FRAME) == 0  # switched at a sentence boundary
        closed = {e.task_id: e.reason for e in of(events, SessionClosed)}
        assert list(closed.values()).count("rotated") == len(rotations)
        # make-before-break: each next connection opened before its predecessor closed
        conns = server.connections
        for old, new in itertools.pairwise(conns):
            assert old.closed_at is None or new.opened_at < old.closed_at


class TestDrain:
    async def test_a_drain_does_not_retry_the_finish(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After the first Ctrl-C, a server that never finishes costs one deadline, not five."""
        server = ContentServer(Behaviour(never_finish=True))
        drain = trio.Event()
        drain.set()
        events = await run_stream(server, 12, cfg=config(finish_timeout_s=3.0), drain=drain)
        assert len(server.connections) == 1
        assert not of(events, Reconnecting)
        (gap,) = of(events, AudioGap)
        assert (gap.start, gap.end, gap.reason) == (10 * FRAME, 12 * FRAME, "finish-deadline")
        assert of(events, StreamEnded)[0].status == "partial"


class TestRotationWhilePaused:
    async def test_a_paused_source_still_rotates(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A source that pauses after the next task was prepared rotates during the pause."""
        server = ContentServer()
        cfg = config(max_task_age_s=3.0, rotation_lead_s=1.0, idle_timeout_s=8.0)
        events = await run_stream(server, 40, pause=(25, 60.0), cfg=cfg)
        rotations = of(events, Rotated)
        assert rotations
        assert any(r.t < 2.5 + 60.0 for r in rotations if r.t > 2.5)  # during the pause
        assert finals_of(events) == expected_finals(40)
