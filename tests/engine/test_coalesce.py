"""Catching up: a session that is behind sends its queued frames as fewer, larger messages.

When the pump finds a second frame queued behind the one it got (the fast lane was
refused: the transport was full, the task not open), it takes the queued frames too
and sends contiguous ones as one binary message of at most ``COALESCE_MS``
(``Feed.coalesce``, ``message_runs``). The wire must carry the same audio, in order,
each frame once per connection; replay, commit, send lag and the counters exact.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from supervisor_helpers import (
    FRAME,
    GROUP,
    RATE,
    Behaviour,
    ChannelServer,
    config,
    expected_finals,
    frame_pcm,
    of,
)
from test_fast_lane import PATIENT, assert_exact, finals_of, run_session, wire

from engine.actors import session
from engine.actors._feed import COALESCE_MS, Feed, coalesce, message_runs
from engine.actors._inlet import open_inlet
from engine.events import AudioFrame, Event, Reconnecting, SessionOpened, TaskMetrics

if TYPE_CHECKING:
    from supervisor_helpers import Connection, ServerEnd

    from adapters.dashscope.memory_transport import MemoryTransport
    from engine.actors.session import SessionStats

LIMIT = RATE * COALESCE_MS // 1000  # samples


def frames_of(sizes: list[tuple[int, int]]) -> list[AudioFrame]:
    """Frames of ``(hole before, samples)``, each sample holding its global index (mod 2**15)."""
    frames, at = [], 0
    for hole, samples in sizes:
        at += hole
        pcm = b"".join((i % 32768).to_bytes(2, "little") for i in range(at, at + samples))
        frames.append(AudioFrame(at, pcm, RATE))
        at += samples
    return frames


class TestMessageRuns:
    @given(
        sizes=st.lists(
            st.tuples(st.sampled_from([0, 0, 0, 7, 1600]), st.integers(1, 4000)),
            min_size=1,
            max_size=12,
        ),
        limit=st.sampled_from([1600, 3200, 6400]),
    )
    def test_runs_tile_the_frames_without_joining_across_a_hole_or_past_the_cap(
        self, sizes: list[tuple[int, int]], limit: int
    ) -> None:
        """Every frame in one run, in order; a run is contiguous and, if joined, within the cap."""
        frames = frames_of(sizes)
        runs = list(message_runs(frames, limit))
        assert [f for run in runs for f in run] == frames
        for run in runs:
            assert all(a.end == b.start for a, b in itertools.pairwise(run))
            if len(run) > 1:
                assert sum(f.samples for f in run) <= limit
        for a, b in itertools.pairwise(runs):  # maximal: the next frame did not fit
            fits = sum(f.samples for f in a) + b[0].samples <= limit
            assert a[-1].end != b[0].start or not fits


class TestFeedCoalesce:
    async def test_the_queued_frames_come_along_up_to_the_cap_with_their_send_lag(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Two 100 ms frames make the 200 ms cap; each frame's lag is counted once sent."""
        send, inbox = open_inlet(8)
        feed = Feed(inbox, 60 * RATE, RATE)
        frames = frames_of([(0, FRAME)] * 5)
        for frame in frames:
            send.send_nowait(frame)
            await trio.sleep(0.1)
        first = await feed.next_frame(10.0)
        assert first == frames[0]
        batch, arrivals = coalesce(feed, first, LIMIT)
        assert batch == frames[:2] and len(arrivals) == 2
        assert feed.buffer.end == frames[1].end
        feed.sent_live(arrivals)
        assert feed.send_lag.count == 2
        assert 0.4 <= feed.send_lag.max_s <= 0.6  # frame 0 waited 0.5 s
        third = await feed.next_frame(10.0)
        assert third == frames[2]
        assert coalesce(feed, third, LIMIT)[0] == [frames[2], frames[3]]

    async def test_the_end_of_input_while_coalescing_is_noticed(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The input ends behind the queued frames: they come along, and input_done is set."""
        send, inbox = open_inlet(8)
        feed = Feed(inbox, 60 * RATE, RATE)
        frames = frames_of([(0, 800), (0, 800)])
        for frame in frames:
            send.send_nowait(frame)
        send.close()
        first = await feed.next_frame(10.0)
        assert coalesce(feed, first, LIMIT)[0] == frames
        assert feed.input_done

    async def test_a_frame_alone_changes_nothing(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Nothing queued behind it: a list of one, the lag counted as before."""
        send, inbox = open_inlet(8)
        feed = Feed(inbox, 60 * RATE, RATE)
        (frame,) = frames_of([(0, FRAME)])
        send.send_nowait(frame)
        first = await feed.next_frame(10.0)
        assert coalesce(feed, first, LIMIT) == ([frame], [])
        feed.sent_live([])
        assert feed.send_lag.count == 1 and not feed.input_done


class _Recording:
    """A server end that records the size of every binary message it receives."""

    def __init__(self, inner: MemoryTransport, sizes: list[int]) -> None:
        self._inner = inner
        self._sizes = sizes

    async def receive(self) -> bytes | str:
        data = await self._inner.receive()
        if isinstance(data, bytes):
            self._sizes.append(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SizingServer(ChannelServer):
    """A ChannelServer that keeps each connection's binary message sizes (bytes)."""

    def __init__(self, *behaviours: Behaviour) -> None:
        super().__init__(*behaviours)
        self.sizes: list[list[int]] = []

    async def converse(self, ws: ServerEnd, conn: Connection, b: Behaviour) -> None:
        sizes: list[int] = []
        self.sizes.append(sizes)
        await super().converse(_Recording(ws, sizes), conn, b)  # type: ignore[arg-type]


def check_coalescing(
    server: SizingServer, events: list[Event], stats: SessionStats, frames: int
) -> None:
    """The wire carries every frame, in order, once per connection; each connection after the
    first starts at its task's offset (the commit point) and so re-sends exactly what was not
    committed; live messages stay within the cap; the counters agree."""
    assert finals_of(events) == expected_finals(frames)
    assert_exact(server, frames)
    opened = of(events, SessionOpened)
    for conn, opening in zip(wire(server), opened, strict=False):
        real = [u for u in conn if u >= 0]
        if real:
            assert real[0] * FRAME == opening.offset
    # Whole frames only, nothing cut or added (a connection that failed stopped decoding).
    for units, sizes in zip(wire(server), server.sizes, strict=True):
        assert sum(sizes) >= 2 * FRAME * len(units)
    assert sum(server.sizes[-1]) == 2 * FRAME * len(wire(server)[-1])
    # A finished task reports its count (a failed one cannot): together, the stream's.
    coalesced = sum(m.frames_coalesced for m in of(events, TaskMetrics))
    if of(events, Reconnecting):
        assert coalesced <= stats.frames_coalesced
    else:
        assert coalesced == stats.frames_coalesced


class TestSession:
    async def test_a_paused_reader_is_caught_up_in_200_ms_messages(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The transport stops taking frames for 1.5 s: the queued frames go two by two."""
        server = SizingServer(Behaviour(pauses={10: 1.5}))
        server.buffer = 2
        events, stats = await run_session(server, 60, config())
        check_coalescing(server, events, stats, 60)
        assert stats.frames_coalesced >= 6
        (sizes,) = server.sizes
        assert sizes.count(4 * FRAME) >= 3  # 200 ms messages (100 ms frames: two each)
        live = sizes[1:]  # the first frame came during the handshake: replayed
        assert max(live) <= 2 * LIMIT

    async def test_a_session_that_keeps_up_never_coalesces(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With room in the transport, every live frame goes alone (the fast lane)."""
        server = SizingServer()
        events, stats = await run_session(server, 40, config())
        check_coalescing(server, events, stats, 40)
        assert stats.frames_coalesced == 0
        assert all(size == 2 * FRAME for size in server.sizes[0][1:])


async def run_with_holes(
    server: ChannelServer, frames: int, holes: dict[int, int], *, lane: bool
) -> tuple[list[Event], SessionStats]:
    """``frames`` paced frames; before frame ``i`` in ``holes``, the source skipped that
    many samples (the frame starts later on the global timeline)."""
    if lane:
        send, recv = open_inlet(16)
    else:
        plain_send, recv = trio.open_memory_channel[AudioFrame](16)
        send = plain_send  # type: ignore[assignment]
    events_send, events_recv = trio.open_memory_channel[Event](1000)
    out: list[Event] = []

    async def feed() -> None:
        async with send:
            t0, at = trio.current_time(), 0
            for i in range(frames):
                at += holes.get(i, 0)
                await trio.sleep_until(t0 + i * 0.1)
                await send.send(AudioFrame(at, frame_pcm(i), RATE, t=trio.current_time()))
                at += FRAME

    async def collect() -> None:
        async for item in events_recv:
            out.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        stats: SessionStats = await nursery.start(
            lambda task_status: session.run(
                inbox=recv, outbox=events_send, config=config(), dial=server.dial,
                task_status=task_status,
            )
        )  # fmt: skip
        nursery.start_soon(feed)
    return out, stats


class TestHoles:
    @pytest.mark.parametrize("lane", [True, False])
    async def test_a_skipped_span_inside_a_backlog_is_not_joined_over(
        self, autojump_clock: trio.testing.MockClock, lane: bool
    ) -> None:
        """The source skipped time while the session was behind: the queued frames on each
        side of the hole go in separate messages, the task's clock jumps the hole, and the
        transcript is the one of a session that kept up."""
        # Not at a sentence's edge: a final ending exactly at a skip maps past the hole
        # once the task's clock holds the skip, with or without coalescing (main too).
        holes = {12: 8000, 21: 4000, 23: 3200}
        behind = SizingServer(Behaviour(pauses={8: 1.5, 18: 1.0}))
        behind.buffer = 1
        events, stats = await run_with_holes(behind, 40, holes, lane=lane)
        steady = SizingServer()
        reference, steady_stats = await run_with_holes(steady, 40, holes, lane=lane)
        assert stats.frames_coalesced >= 4 and steady_stats.frames_coalesced == 0
        assert finals_of(events) == finals_of(reference)
        assert len(finals_of(events)) == 40 // GROUP
        assert wire(behind) == wire(steady) == [list(range(40))]


faults = st.one_of(
    st.builds(Behaviour, fail_after=st.integers(1, 50)),
    st.builds(Behaviour, close_after=st.integers(1, 50)),
    st.builds(
        Behaviour,
        pauses=st.dictionaries(st.integers(1, 50), st.sampled_from([0.3, 1.0, 2.5]), max_size=3),
    ),
)


class TestProperties:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        plan=st.lists(faults, max_size=3),
        pauses=st.dictionaries(
            st.integers(1, 40), st.sampled_from([0.5, 1.5]), min_size=1, max_size=2
        ),
        frames=st.integers(10, 60),
        buffer=st.sampled_from([1, 2, 4]),
        lane=st.booleans(),
    )
    def test_coalesced_audio_is_exact_across_reconnects(
        self,
        plan: list[Behaviour],
        pauses: dict[int, float],
        frames: int,
        buffer: int,
        lane: bool,
    ) -> None:
        """Pauses, failures and closes in any order, either lane: what was pushed reaches the
        wire exactly (once per connection, in order), a reconnect replays exactly the
        uncommitted audio, and the counters agree with what was coalesced."""
        plan = [b if b.pauses else dataclasses.replace(b, pauses=pauses) for b in plan]
        server = SizingServer(*plan, Behaviour(pauses=pauses))
        server.buffer = buffer

        async def main() -> tuple[list[Event], SessionStats]:
            with trio.fail_after(3600):
                cfg = config(policy=PATIENT, finish_timeout_s=3.0, stall_timeout_s=3.0)
                return await run_session(server, frames, cfg, lane=lane)

        events, stats = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        check_coalescing(server, events, stats, frames)
        event(f"coalesced: {stats.frames_coalesced > 0}")
