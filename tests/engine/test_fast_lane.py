"""The session's synchronous lane: live frames sent inside the producer's ``send`` (MockClock).

The :class:`ChannelServer` is reached over the in-memory transport, whose
``send_nowait`` takes a frame while its queue has room: so with the session's
inbox (``open_inlet``) the live frames go on the wire without a task switch,
and with a plain channel every frame takes the awaited lane. The fake server
decodes each frame's index from its audio, so "every frame exactly once, in
order, nothing lost, replay exact" is checked on what reached the wire.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supervisor_helpers import (
    FRAME,
    GROUP,
    RATE,
    Behaviour,
    ChannelServer,
    ContentServer,
    config,
    expected_finals,
    frame_pcm,
    of,
)

from engine.actors import session
from engine.actors._inlet import open_inlet
from engine.events import AudioFrame, Event, Final, Reconnecting, Rotated, SessionOpened
from engine.policy import RestartPolicy
from engine.stream import Stream, StreamConfig, open_stream

if TYPE_CHECKING:
    from engine.actors.session import SessionStats
    from engine.config import SessionConfig

PATIENT = RestartPolicy(max_attempts=30, backoff_base_s=0.2, backoff_cap_s=2.0)


async def run_session(
    server: ContentServer,
    frames: int,
    cfg: SessionConfig,
    *,
    lane: bool = True,
    pause: tuple[int, float] | None = None,
) -> tuple[list[Event], SessionStats]:
    """Feed ``frames`` paced frames; the session's events and its statistics at the end."""
    if lane:
        send, recv = open_inlet(16)
    else:
        plain_send, recv = trio.open_memory_channel[AudioFrame](16)
        send = plain_send  # type: ignore[assignment]
    events_send, events_recv = trio.open_memory_channel[Event](1000)
    out: list[Event] = []

    async def feed() -> None:
        async with send:
            t0 = trio.current_time()
            shift = 0.0
            for i in range(frames):
                if pause is not None and i == pause[0]:
                    shift = pause[1]
                await trio.sleep_until(t0 + shift + i * 0.1)
                await send.send(AudioFrame(i * FRAME, frame_pcm(i), RATE, t=trio.current_time()))

    async def collect() -> None:
        async for event in events_recv:
            out.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        stats: SessionStats = await nursery.start(
            lambda task_status: session.run(
                inbox=recv,
                outbox=events_send,
                config=cfg,
                dial=server.dial,
                task_status=task_status,
            )
        )
        nursery.start_soon(feed)
    return out, stats


def finals_of(events: list[Event]) -> list[tuple[str, int, int]]:
    return [(e.text, e.start, e.end) for e in events if isinstance(e, Final)]


def wire(server: ContentServer) -> list[list[int]]:
    """The frame indices each connection received, in order (-1: padding)."""
    return [conn.units for conn in server.connections]


def assert_exact(server: ContentServer, frames: int) -> None:
    """Within a connection, frames are consecutive (no duplicate, no hole); every frame reached
    some connection."""
    seen: set[int] = set()
    for units in wire(server):
        real = [u for u in units if u >= 0]
        assert real == list(range(real[0], real[0] + len(real))) if real else True
        seen.update(real)
    assert seen == set(range(frames))


class TestLanes:
    async def test_live_frames_take_the_fast_lane(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With room in the transport, every live frame is sent inside ``send``: no lag."""
        server = ChannelServer()
        events, stats = await run_session(server, 60, config())
        assert finals_of(events) == expected_finals(60)
        assert stats.fast_frames == 59  # frame 0 came during the handshake: replayed
        assert stats.send_lag_max_ms == 0.0 and stats.send_lag_p99_ms == 0.0
        assert wire(server) == [list(range(60))]

    async def test_a_plain_channel_takes_the_awaited_lane_to_the_same_wire(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Same frames on the wire, same transcript, whichever lane carried them."""
        fast, slow = ChannelServer(), ChannelServer()
        fast_events, fast_stats = await run_session(fast, 60, config())
        slow_events, slow_stats = await run_session(slow, 60, config(), lane=False)
        assert slow_stats.fast_frames == 0 and fast_stats.fast_frames == 59
        assert wire(fast) == wire(slow)
        assert finals_of(fast_events) == finals_of(slow_events)

    async def test_a_transport_without_a_fast_lane_gets_every_frame_awaited(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """trio-websocket's transport refuses every frame: all go by the awaited lane, exactly."""
        server = ContentServer()
        events, stats = await run_session(server, 40, config())
        assert stats.fast_frames == 0
        assert finals_of(events) == expected_finals(40)
        assert wire(server) == [list(range(40))]

    async def test_a_server_that_reads_slowly_moves_frames_to_the_awaited_lane(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A full transport queue: the frame waits (counted as send lag), in order, nothing lost."""
        server = ChannelServer(Behaviour(pauses={10: 1.5, 30: 0.7}))
        server.buffer = 2
        events, stats = await run_session(server, 60, config())
        assert finals_of(events) == expected_finals(60)
        assert wire(server) == [list(range(60))]
        assert 0 < stats.fast_frames < 60
        assert 500.0 <= stats.send_lag_max_ms <= 1500.0
        assert stats.send_lag_p99_ms <= stats.send_lag_max_ms

    async def test_a_stalled_transport_falls_back_to_the_send_deadline(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A server that stops reading: the awaited lane's deadline fires, a new task replays."""
        server = ChannelServer(Behaviour(deaf_after=12), Behaviour())
        server.buffer = 2
        cfg = config(send_timeout_s=2.0, ping_interval_s=600.0, stall_timeout_s=600.0)
        events, _ = await run_session(server, 60, cfg)
        assert "stalled" in of(events, Reconnecting)[0].cause
        assert finals_of(events) == expected_finals(60)
        assert_exact(server, 60)


class TestTimers:
    async def test_the_idle_timer_still_pads_a_paused_source(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """No timer per frame, yet a pause is noticed ``idle_timeout_s`` after the last frame."""
        server = ChannelServer()
        events, stats = await run_session(server, 30, config(idle_timeout_s=8.0), pause=(10, 40.0))
        (conn,) = server.connections
        assert conn.units.count(-1) >= 4
        first_pad = conn.frame_times[conn.units.index(-1)]
        last_real = conn.frame_times[conn.units.index(9)]
        assert first_pad - last_real == pytest.approx(8.0)
        assert finals_of(events) == expected_finals(30)
        assert stats.fast_frames == 29

    async def test_the_idle_policy_finish_reopens_on_new_audio(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Idle finish with the fast lane: the task ends in the pause, the next starts at frame 10."""
        server = ChannelServer()
        cfg = config(idle_timeout_s=5.0, idle_policy="finish")
        events, _ = await run_session(server, 30, cfg, pause=(10, 40.0))
        assert len(server.connections) == 2 and server.connections[1].units[0] == 10
        assert of(events, SessionOpened)[1].offset == 10 * FRAME
        assert finals_of(events) == expected_finals(30)

    async def test_rotation_still_happens(self, autojump_clock: trio.testing.MockClock) -> None:
        """The taker wakes the pump when a rotation is due: make-before-break, gapless."""
        server = ChannelServer()
        cfg = config(max_task_age_s=3.0, rotation_lead_s=1.0, rotation_grace_s=2.0)
        events, stats = await run_session(server, 120, cfg)
        rotations = of(events, Rotated)
        assert len(rotations) >= 2
        assert all(r.at % (GROUP * FRAME) == 0 for r in rotations)
        assert finals_of(events) == expected_finals(120)
        assert stats.fast_frames > 60


faults = st.one_of(
    st.builds(Behaviour, fail_after=st.integers(1, 50)),
    st.builds(Behaviour, close_after=st.integers(1, 50)),
    st.builds(Behaviour, mute_after=st.integers(1, 30)),
    st.builds(
        Behaviour,
        pauses=st.dictionaries(st.integers(1, 50), st.sampled_from([0.05, 0.3, 1.0]), max_size=4),
    ),
)


def run(server: ContentServer, frames: int, *, lane: bool) -> list[Event]:
    async def main() -> list[Event]:
        with trio.fail_after(3600):
            cfg = config(policy=PATIENT, finish_timeout_s=3.0, stall_timeout_s=3.0)
            events, _ = await run_session(server, frames, cfg, lane=lane)
            return events

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


class TestProperties:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        plan=st.lists(faults, max_size=4),
        frames=st.integers(10, 70),
        buffer=st.sampled_from([1, 2, 4, 64]),
    )
    def test_both_lanes_put_the_same_frames_on_the_wire(
        self, plan: list[Behaviour], frames: int, buffer: int
    ) -> None:
        """Slow reads, drops and reconnects in any order: both lanes send the same frames to
        the same connections, and the transcript is the fault-free one."""
        servers = []
        for _ in range(2):
            server = ChannelServer(*plan, Behaviour())
            server.buffer = buffer
            servers.append(server)
        fast = run(servers[0], frames, lane=True)
        slow = run(servers[1], frames, lane=False)
        assert wire(servers[0]) == wire(servers[1])
        assert finals_of(fast) == finals_of(slow) == expected_finals(frames)
        assert_exact(servers[0], frames)


class TestStream:
    async def test_the_streams_statistics_carry_the_send_lag(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A stream's inbox is the inlet: its frames take the fast lane, and a server that
        pauses reading shows as send lag in ``Stream.statistics()``."""
        server = ChannelServer(Behaviour(pauses={20: 0.8}))
        server.buffer = 2
        events: list[Event] = []

        async def collect(stream: Stream) -> None:
            events.extend([e async for e in stream.events()])

        async with trio.open_nursery() as nursery:
            async with open_stream(StreamConfig(session=config()), dial=server.dial) as stream:
                nursery.start_soon(collect, stream)
                t0 = trio.current_time()
                for i in range(40):
                    await trio.sleep_until(t0 + i * 0.1)
                    await stream.push(frame_pcm(i), rate=RATE)
                await trio.sleep(1.0)
                stats = stream.statistics()
                assert stream.stats.fast_frames > 20
        assert 300.0 <= stats.send_lag_max_ms <= 800.0
        assert 0.0 < stats.send_lag_p99_ms <= stats.send_lag_max_ms
        assert finals_of(events) == expected_finals(40)
