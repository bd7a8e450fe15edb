"""The session's results lane: results mapped and emitted inside the connection's reader (MockClock).

While the pump's consumer is parked on an empty results queue and the session's
outbox has room, the reader maps and emits each result itself; otherwise the
result is queued and the consumer emits it, awaiting the outbox. Whichever lane
carries a result, the stream must see the same events in the same order, the
same commit points and the same duplicate handling. The renderer here is a
collector that can stall, which fills the outbox and switches lanes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import structlog
import trio
import trio.testing
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

from adapters.dashscope import messages as m
from adapters.dashscope.connection import RESULTS_BUFFER
from engine.actors import session
from engine.actors._inlet import open_inlet
from engine.actors._report import Report
from engine.events import AudioFrame, Event, Final, Partial, Reconnecting, SessionOpened
from engine.policy import RestartPolicy

if TYPE_CHECKING:
    from supervisor_helpers import Connection, ServerEnd

    from adapters.dashscope.inference import InferenceServer
    from engine.actors.session import SessionStats

PATIENT = RestartPolicy(max_attempts=30, backoff_base_s=0.2, backoff_cap_s=2.0)


async def run_session(
    server: ChannelServer,
    frames: int,
    *,
    outbox: int = 1000,
    stalls: dict[int, float] | None = None,
    probe: list[tuple[int, int]] | None = None,
    resumed: list[float] | None = None,
    **cfg: Any,
) -> tuple[list[Event], SessionStats]:
    """Feed ``frames`` paced frames; the renderer stalls ``stalls[k]`` s after its k-th event.

    ``probe`` gets ``(events so far, stats.fast_results)`` at each stall's start and end,
    ``resumed`` the time each stall ended.
    """
    send, recv = open_inlet(16)
    events_send, events_recv = trio.open_memory_channel[Event](outbox)
    out: list[Event] = []
    stats: SessionStats | None = None

    async def feed() -> None:
        async with send:
            t0 = trio.current_time()
            for i in range(frames):
                await trio.sleep_until(t0 + i * 0.1)
                await send.send(AudioFrame(i * FRAME, frame_pcm(i), RATE, t=trio.current_time()))

    async def collect() -> None:
        async for event in events_recv:
            out.append(event)
            pause = (stalls or {}).get(len(out))
            if pause is not None:
                assert stats is not None
                if probe is not None:
                    probe.append((len(out), stats.fast_results))
                await trio.sleep(pause)
                if resumed is not None:
                    resumed.append(trio.current_time())
                if probe is not None:
                    probe.append((len(out), stats.fast_results))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        stats = await nursery.start(
            lambda task_status: session.run(
                inbox=recv,
                outbox=events_send,
                config=config(policy=PATIENT, **cfg),
                dial=server.dial,
                task_status=task_status,
            )
        )
        nursery.start_soon(feed)
    assert stats is not None
    return out, stats


def results_of(events: list[Event]) -> list[tuple[Any, ...]]:
    """The result events as the renderer sees them (without the envelope's time)."""
    return [
        (type(e).__name__, e.sentence_id, e.text, e.start, getattr(e, "end", None))
        for e in events
        if isinstance(e, Partial | Final)
    ]


def finals_of(events: list[Event]) -> list[tuple[str, int, int]]:
    return [(e.text, e.start, e.end) for e in of(events, Final)]


class TestLanes:
    async def test_an_idle_renderer_gets_every_result_from_the_reader(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A renderer that keeps up: every result takes the lane (no wake of the consumer)."""
        events, stats = await run_session(ChannelServer(), 60)
        assert finals_of(events) == expected_finals(60)
        assert stats.fast_results == len(results_of(events)) == 24  # 12 partials, 12 finals

    async def test_lanes_switch_mid_stream_and_nothing_moves(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A renderer that stalls twice: results queue meanwhile, the lane comes back after;
        the events, their order and the finals are those of a renderer that never stalled."""
        steady, _ = await run_session(ChannelServer(), 100)
        probe: list[tuple[int, int]] = []
        stalled, stats = await run_session(
            ChannelServer(), 100, outbox=0, stalls={5: 1.2, 20: 0.7}, probe=probe
        )
        assert results_of(stalled) == results_of(steady)
        assert finals_of(stalled) == expected_finals(100)
        # while the renderer stalled, no result took the lane; after it, they did again
        (_, before1), (_, after1), (_, before2), (_, after2) = probe
        assert after1 == before1 and after2 == before2
        assert 0 < stats.fast_results < len(results_of(stalled))
        assert stats.fast_results > after2  # the lane came back after the last stall


class TestBackpressure:
    async def test_a_full_outbox_queues_results_then_holds_the_reader(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A renderer stalled for 8 s: the queue (16) fills and holds the reader, which holds
        the socket; nothing is dropped, nothing reordered, and the stream carries on."""
        steady, _ = await run_session(ChannelServer(), 120)
        resumed: list[float] = []
        stalled, stats = await run_session(
            ChannelServer(), 120, outbox=0, stalls={3: 8.0}, resumed=resumed
        )
        # 8 s of results (4 a second) waited: the queue's 16 and what the socket held,
        # all emitted the moment the renderer came back
        burst = [e for e in stalled if isinstance(e, Partial | Final) and e.t == resumed[0]]
        assert len(burst) > RESULTS_BUFFER
        assert results_of(stalled) == results_of(steady)
        assert finals_of(stalled) == expected_finals(120)
        assert not of(stalled, Reconnecting)  # backpressure is not a failure
        assert 0 < stats.fast_results < len(results_of(stalled))


class TestFailures:
    async def test_queued_results_are_emitted_before_the_reconnect(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The connection dies while its results wait in the queue (the renderer stalls):
        every result it sent comes out first, then the reconnect; the new task replays from
        the commit point, so the finals are exact."""
        server = ChannelServer(Behaviour(close_after=23), Behaviour())
        events, _ = await run_session(server, 80, outbox=0, stalls={2: 3.0})
        first_dead = next(i for i, e in enumerate(events) if isinstance(e, Reconnecting))
        before = [e.text for e in of(events[:first_dead], Final)]
        assert before == [f"group {g}" for g in range(23 // GROUP)]  # all it finalized
        assert finals_of(events) == expected_finals(80)
        assert len(of(events, SessionOpened)) == 2

    async def test_duplicate_finals_are_dropped_alike_on_both_lanes(
        self, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A server that repeats every final: the repeat is a duplicate (it ends at the commit
        point) and is dropped, with the same commit points, whichever lane carried it."""
        with structlog.testing.capture_logs() as lane_logs:
            lane, lane_stats = await run_session(RepeatingServer(), 60)
        monkeypatch.setattr(Report, "has_room", lambda self: False)  # the queue only
        with structlog.testing.capture_logs() as queue_logs:
            queued, queue_stats = await run_session(RepeatingServer(), 60)
        assert results_of(lane) == results_of(queued)
        assert finals_of(lane) == expected_finals(60)
        assert lane_stats.fast_results > 0 and queue_stats.fast_results == 0

        def dropped(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in logs if e["event"] == "session.duplicate_final_dropped"]

        assert len(dropped(lane_logs)) == 12
        assert dropped(lane_logs) == dropped(queue_logs)


class RepeatingServer(ChannelServer):
    """Sends every final twice (the repeat ends at the commit point: a duplicate)."""

    async def after_unit(
        self,
        ws: ServerEnd,
        core: InferenceServer,
        conn: Connection,
        b: Behaviour,
        index: int,
        seen: dict[int, int],
        task_ms: int,
    ) -> None:
        await super().after_unit(ws, core, conn, b, index, seen, task_ms)
        group, last = divmod(index, GROUP)
        first = group * GROUP
        if index >= 0 and last == GROUP - 1 and all(i in seen for i in range(first, index + 1)):
            sentence = {
                "sentence_id": group + 1,
                "begin_time": seen[first],
                "end_time": task_ms,
                "text": f"group {group}",
                "sentence_end": True,
                "heartbeat": False,
                "words": [],
            }
            await ws.send(core.send(m.SendResult({"sentence": sentence})))
