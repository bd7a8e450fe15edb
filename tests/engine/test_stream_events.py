"""``Stream.events()`` takes queued events without a trip through the scheduler each (#11),
and still checkpoints: at least once per ``EVENTS_BURST`` events, and whenever it waits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
import trio.testing

from engine import Secret, SessionConfig
from engine._bursts import EVENTS_BURST
from engine.actors.resampler import ResamplerStats
from engine.events import Event, Partial, StreamEnded, StreamStarted
from engine.stream import InputLedger, Stream, StreamConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def bare_stream(events: trio.MemoryReceiveChannel[Event]) -> Stream:
    """A Stream with only its events edge (what ``events()`` reads)."""
    config = StreamConfig(
        session=SessionConfig(
            stream="s", model="paraformer-realtime-v2", url="ws://x/", api_key=Secret("sk")
        )
    )
    started = StreamStarted("test", "paraformer-realtime-v2", 16000)
    return Stream(
        config,
        None,  # type: ignore[arg-type]  # no input side: events() never touches it
        None,  # type: ignore[arg-type]
        events,
        None,  # type: ignore[arg-type]
        ResamplerStats(),
        InputLedger(),
        started,
    )


def partial(n: int) -> Partial:
    return Partial(n, n * 100, f"p{n}")


class TestBursts:
    async def test_queued_events_come_in_order_and_the_end_last(self) -> None:
        """Started, every queued event in order, then the completed StreamEnded."""
        send, receive = trio.open_memory_channel[Event](3 * EVENTS_BURST)
        for n in range(2 * EVENTS_BURST):
            send.send_nowait(partial(n))
        send.send_nowait(StreamEnded("ok", finals=0))
        send.send_nowait(partial(999))  # a late input event passes the held end
        send.close()
        stream = bare_stream(receive)
        seen = [e async for e in stream.events()]
        assert isinstance(seen[0], StreamStarted) and isinstance(seen[-1], StreamEnded)
        assert seen[1:-1] == [partial(n) for n in range(2 * EVENTS_BURST)] + [partial(999)]
        assert stream.ended is seen[-1]

    async def test_a_burst_takes_no_checkpoint_and_then_one(self) -> None:
        """Up to EVENTS_BURST queued events without a checkpoint; the next one checkpoints."""
        send, receive = trio.open_memory_channel[Event](3 * EVENTS_BURST)
        for n in range(2 * EVENTS_BURST):
            send.send_nowait(partial(n))
        events: AsyncIterator[Event] = bare_stream(receive).events()
        with trio.testing.assert_no_checkpoints():
            assert isinstance(await events.__anext__(), StreamStarted)
            for n in range(EVENTS_BURST):
                assert await events.__anext__() == partial(n)
        with trio.testing.assert_checkpoints():
            assert await events.__anext__() == partial(EVENTS_BURST)
        with trio.testing.assert_no_checkpoints():
            assert await events.__anext__() == partial(EVENTS_BURST + 1)
        await events.aclose()  # type: ignore[attr-defined]

    async def test_waiting_for_the_next_event_is_a_checkpoint(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An empty queue: the consumer parks until an event comes, and is cancellable."""
        send, receive = trio.open_memory_channel[Event](4)
        stream = bare_stream(receive)
        cancelled: AsyncIterator[Event] = stream.events()
        assert isinstance(await cancelled.__anext__(), StreamStarted)
        with trio.move_on_after(1.0) as waited:
            await cancelled.__anext__()
        assert waited.cancelled_caught
        events = stream.events()  # the started event went to the first reader
        got: list[Event] = []

        async def consume() -> None:
            got.append(await events.__anext__())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            send.send_nowait(partial(1))
        assert got == [partial(1)]
        await events.aclose()  # type: ignore[attr-defined]
