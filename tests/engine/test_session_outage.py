"""The session's live view of an outage's loss (SessionStats.pending_lost_samples), in virtual time.

While no task is open, what the replay buffer drops is already lost: the view
counts it as it happens, and the AudioGap that closes the outage carries exactly
that span, including what dropped while the new task's handshake was slow.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio
import trio.testing
import trio_websocket
from supervisor_helpers import (
    FRAME,
    RATE,
    Behaviour,
    ContentServer,
    config,
    frame_pcm,
    of,
)

from engine.actors import session
from engine.events import AudioFrame, AudioGap, Event, SessionOpened, StreamEnded
from engine.policy import RestartPolicy

HANDSHAKE_S = 0.55  # the reopening handshake: the 1 s buffer drops 5 more frames meanwhile


async def run(
    server: ContentServer, frames: int, *, first_dial_s: float = 0.0
) -> tuple[list[Event], list[tuple[float, int]]]:
    """Feed ``frames`` paced frames; sample the live pending loss every 50 ms. The first
    connection waits ``first_dial_s`` before it dials (a start token that came late)."""
    frames_send, frames_recv = trio.open_memory_channel[AudioFrame](16)
    events_send, events_recv = trio.open_memory_channel[Event](1000)
    out: list[Event] = []
    pending: list[tuple[float, int]] = []

    @contextlib.asynccontextmanager
    async def dial(
        url: str, headers: list[tuple[bytes, bytes]], *, connect_timeout: float
    ) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        if len(server.connections) == 5:  # the one that succeeds after the outage
            await trio.sleep(HANDSHAKE_S)
        if not server.connections:
            await trio.sleep(first_dial_s)
        async with server.dial(url, headers, connect_timeout=connect_timeout) as ws:
            yield ws

    async def feed() -> None:
        async with frames_send:
            t0 = trio.current_time()
            for i in range(frames):
                await trio.sleep_until(t0 + i * 0.1)
                await frames_send.send(AudioFrame(i * FRAME, frame_pcm(i), RATE))

    async def collect() -> None:
        async for event in events_recv:
            out.append(event)

    cfg = config(replay_buffer_s=1.0, policy=RestartPolicy(max_attempts=10, backoff_base_s=1.0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        nursery.start_soon(collect)
        stats = await nursery.start(
            lambda task_status: session.run(
                inbox=frames_recv,
                outbox=events_send,
                config=cfg,
                dial=dial,
                task_status=task_status,
            )
        )

        async def sample() -> None:
            while True:
                pending.append((trio.current_time(), stats.pending_lost_samples))
                await trio.sleep(0.05)

        nursery.start_soon(sample)
        while not of(out, StreamEnded):  # noqa: ASYNC110 - sampled in virtual time
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    return out, pending


class TestPendingLoss:
    async def test_counted_as_it_happens_and_reported_once(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The view rises while the outage drops audio, never falls before the gap, and the
        one gap equals its peak: the slow handshake's drops included."""
        refused = [Behaviour(reject=503)] * 4
        server = ContentServer(Behaviour(fail_after=13), *refused, Behaviour())
        events, pending = await run(server, 300)
        (gap,) = of(events, AudioGap)
        assert gap.reason == "replay-overflow"
        lost = gap.end - gap.start
        reopened = of(events, SessionOpened)[-1]
        assert reopened.offset == gap.end  # the task starts after everything dropped
        values = [n for _, n in pending]
        peak = max(values)
        assert peak == lost
        rising = values[: values.index(peak) + 1]
        assert rising == sorted(rising) and len(set(rising)) > 5  # it rose, step by step
        assert values[-1] == 0  # reported: nothing pending any more
        # the handshake's wait dropped audio too, and it is in the gap
        during = [n for t, n in pending if reopened.t - HANDSHAKE_S < t < reopened.t]
        assert during and max(during) - min(during) >= 4 * FRAME
        ended = of(events, StreamEnded)[0]
        assert ended.audio_lost_ms == lost * 1000 // RATE


class TestBeforeTheFirstTask:
    async def test_audio_the_buffer_dropped_before_the_first_task_is_a_gap(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """No task was ever open: a first task that starts 3 s late (a start token held
        back) with a 1 s buffer loses the oldest ~2 s, and says so exactly, once."""
        events, pending = await run(ContentServer(Behaviour()), 80, first_dial_s=3.0)
        (gap,) = of(events, AudioGap)
        assert (gap.reason, gap.start) == ("replay-overflow", 0)
        assert 15 * FRAME <= gap.end - gap.start <= 25 * FRAME
        (opened,) = of(events, SessionOpened)
        assert opened.offset == gap.end  # the task starts at the oldest audio kept
        peak = max(n for _, n in pending)  # counted while it waited (sampled every 50 ms)
        assert gap.end - gap.start - FRAME <= peak <= gap.end - gap.start
        assert pending[-1][1] == 0
        ended = of(events, StreamEnded)[0]
        assert ended.audio_lost_ms == (gap.end - gap.start) * 1000 // RATE
