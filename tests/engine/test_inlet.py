"""The session's inbox (``engine/actors/_inlet.py``) and its lag histogram (``_lag.py``)."""

from __future__ import annotations

import math
import sys

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from engine.actors._feed import Feed
from engine.actors._inlet import Inbox, open_inlet
from engine.actors._lag import BUCKETS, LagHistogram, _index
from engine.events import AudioFrame


def frame(i: int) -> AudioFrame:
    return AudioFrame(i * 160, bytes([i % 256]) * 320, 16000)


class Taker:
    """A scripted taker: takes while ``accept`` says so, records what it took."""

    def __init__(self, inbox: Inbox, *, accept: bool = True, wake_at: int | None = None) -> None:
        self.inbox = inbox
        self.accept = accept
        self.wake_at = wake_at
        self.took: list[tuple[AudioFrame, float]] = []

    def __call__(self, f: AudioFrame, arrived: float) -> bool:
        if not self.accept:
            return False
        self.took.append((f, arrived))
        if self.wake_at is not None and len(self.took) == self.wake_at:
            self.inbox.wake()
        return True


class TestInlet:
    async def test_without_a_taker_frames_queue_in_order_with_their_arrival(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Unarmed, the inlet is a bounded channel; each frame keeps the time it was handed over."""
        inlet, inbox = open_inlet(4)
        for i in range(3):
            await trio.sleep(1.0)
            await inlet.send(frame(i))
        assert inbox.statistics().current_buffer_used == 3
        got = []
        for _ in range(3):
            got.append((await inbox.receive(), inbox.arrived_t))
        assert got == [(frame(i), float(i + 1)) for i in range(3)]

    async def test_a_full_queue_blocks_send_and_refuses_send_nowait(self) -> None:
        """Backpressure as a memory channel's: the bound holds."""
        inlet, inbox = open_inlet(2)
        inlet.send_nowait(frame(0))
        await inlet.send(frame(1))
        with pytest.raises(trio.WouldBlock):
            inlet.send_nowait(frame(2))
        with trio.move_on_after(1.0) as scope:
            await inlet.send(frame(2))
        assert scope.cancelled_caught
        assert inbox.receive_nowait() == frame(0)

    async def test_send_is_a_checkpoint_even_when_the_taker_takes(self) -> None:
        """The producer always yields once: a loop of sends cannot starve the scheduler."""
        inlet, inbox = open_inlet(2)
        taker = Taker(inbox)
        with trio.CancelScope() as scope:
            inbox.arm(taker, scope)
            with trio.testing.assert_checkpoints():
                await inlet.send(frame(0))
        assert [f for f, _ in taker.took] == [frame(0)]

    async def test_a_cancelled_send_takes_nothing(self) -> None:
        """Cancelled at its checkpoint, ``send`` neither offers nor queues the frame."""
        inlet, inbox = open_inlet(2)
        taker = Taker(inbox)
        with trio.CancelScope() as park:
            inbox.arm(taker, park)
            with trio.CancelScope() as scope:
                scope.cancel()
                await inlet.send(frame(0))
        assert taker.took == []
        assert inbox.statistics().current_buffer_used == 0

    async def test_a_refused_frame_disarms_the_lane_until_the_pump_drains(self) -> None:
        """Once one frame is queued, later ones queue behind it: the order is the send order."""
        inlet, inbox = open_inlet(4)
        taker = Taker(inbox, accept=False)
        with trio.CancelScope() as scope:
            inbox.arm(taker, scope)
            await inlet.send(frame(0))
            taker.accept = True  # would take now, but frame 0 waits in the queue
            await inlet.send(frame(1))
        assert taker.took == []
        assert [inbox.receive_nowait(), inbox.receive_nowait()] == [frame(0), frame(1)]

    async def test_wake_ends_the_park_and_later_frames_queue(self) -> None:
        """A taker that leaves awaited work wakes the parked receiver; the rest queue."""
        inlet, inbox = open_inlet(4)
        taker = Taker(inbox, wake_at=2)
        received: list[AudioFrame] = []

        async def pump() -> None:
            with trio.CancelScope() as scope:
                inbox.arm(taker, scope)
                try:
                    received.append(await inbox.receive())
                finally:
                    inbox.disarm()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            await trio.testing.wait_all_tasks_blocked()
            for i in range(3):
                await inlet.send(frame(i))
        assert inbox.woken and received == []
        assert [f for f, _ in taker.took] == [frame(0), frame(1)]
        assert inbox.receive_nowait() == frame(2)

    async def test_closing_the_inlet_ends_the_inbox_after_the_queue(self) -> None:
        """``close`` is the end of input: queued frames first, then EndOfChannel."""
        inlet, inbox = open_inlet(4)
        async with inlet:
            await inlet.send(frame(0))
        assert [f async for f in inbox] == [frame(0)]
        with pytest.raises(trio.EndOfChannel):
            await inbox.receive()

    async def test_closing_the_inbox_breaks_the_producer(self) -> None:
        """The session gone, a send fails as on a memory channel (even while armed)."""
        inlet, inbox = open_inlet(4)
        with trio.CancelScope() as scope:
            inbox.arm(Taker(inbox), scope)
            async with inbox:
                pass
        with pytest.raises(trio.BrokenResourceError):
            await inlet.send(frame(0))
        await inlet.aclose()


class TestTrySend:
    async def test_the_armed_taker_takes_it_without_a_checkpoint(self) -> None:
        """The synchronous hand-over: the taker takes the frame, no checkpoint, no queue."""
        inlet, inbox = open_inlet(2)
        taker = Taker(inbox)
        inbox.arm(taker, trio.CancelScope())
        with trio.testing.assert_no_checkpoints():
            assert inlet.try_send(frame(0))
        assert [f for f, _ in taker.took] == [frame(0)]
        assert inbox.statistics().current_buffer_used == 0

    async def test_unarmed_it_queues_within_the_bound_then_refuses(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Queued with their hand-over time while there is room; a full queue takes nothing."""
        inlet, inbox = open_inlet(2)
        await trio.sleep(1.0)
        assert inlet.room() == 2
        assert inlet.try_send(frame(0)) and inlet.try_send(frame(1))
        assert inlet.room() == 0
        with trio.testing.assert_no_checkpoints():
            assert not inlet.try_send(frame(2))
        assert inbox.statistics().current_buffer_used == 2
        assert [inbox.receive_nowait(), inbox.receive_nowait()] == [frame(0), frame(1)]
        assert inbox.arrived_t == 1.0
        assert inlet.room() == 2

    async def test_a_refusing_taker_queues_it_and_disarms(self) -> None:
        """Refused by the taker, the frame is still taken (queued); later ones queue behind it."""
        inlet, inbox = open_inlet(4)
        taker = Taker(inbox, accept=False)
        inbox.arm(taker, trio.CancelScope())
        assert inlet.room() == 4  # armed: the queue is empty
        assert inlet.try_send(frame(0))
        taker.accept = True
        assert inlet.try_send(frame(1))
        assert taker.took == []
        assert inlet.room() == 2
        assert [inbox.receive_nowait(), inbox.receive_nowait()] == [frame(0), frame(1)]

    async def test_no_room_while_a_producer_waits(self) -> None:
        """A producer blocked on the full queue goes first: room is 0 until it is served."""
        inlet, inbox = open_inlet(1)
        inlet.send_nowait(frame(0))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inlet.send, frame(1))
            await trio.testing.wait_all_tasks_blocked()
            assert inlet.room() == 0
            assert inbox.receive_nowait() == frame(0)  # frame 1 moves into the queue
        assert inlet.room() == 0 and not inlet.try_send(frame(2))
        assert inbox.receive_nowait() == frame(1)

    @given(
        ops=st.lists(
            st.sampled_from(["try", "send", "take", "arm", "refuse", "disarm"]), max_size=40
        ),
        size=st.integers(1, 4),
    )
    def test_room_counts_the_queue_as_its_statistics_would(self, ops: list[str], size: int) -> None:
        """Any mix of hand-overs (synchronous and awaited), receives and armed or refusing
        takers: room() is the bound while armed, 0 while a producer waits, else the free
        places the channel's own statistics show; and try_send takes a frame exactly then."""

        async def main() -> None:
            inlet, inbox = open_inlet(size)
            taker = Taker(inbox)
            k = 0
            async with trio.open_nursery() as nursery:
                for op in ops:
                    match op:
                        case "try":
                            room = inlet.room()
                            assert inlet.try_send(frame(k)) == (room > 0)
                        case "send":
                            nursery.start_soon(inlet.send, frame(k))
                        case "take":
                            if inbox.statistics().current_buffer_used:
                                inbox.receive_nowait()
                        case "arm" | "refuse" if not inbox.statistics().current_buffer_used:
                            taker.accept = op == "arm"  # the pump arms on an empty queue only
                            inbox.arm(taker, trio.CancelScope())
                        case "disarm":
                            inbox.disarm()
                    k += 1
                    await trio.testing.wait_all_tasks_blocked()
                    stats = inbox.statistics()
                    if inbox._lane.taker is not None:
                        expected = size
                    elif stats.tasks_waiting_send:
                        expected = 0
                    else:
                        expected = size - stats.current_buffer_used
                    assert inlet.room() == expected
                inbox.disarm()
                while (
                    inbox.statistics().current_buffer_used or inbox.statistics().tasks_waiting_send
                ):
                    inbox.receive_nowait()
                    await trio.testing.wait_all_tasks_blocked()
                assert inlet.room() == size

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    async def test_a_closed_inbox_breaks_it(self) -> None:
        """The session gone, try_send raises as send does."""
        inlet, inbox = open_inlet(2)
        inbox.close()
        with pytest.raises(trio.BrokenResourceError):
            inlet.try_send(frame(0))


class TestLagHistogram:
    def test_empty_is_zero(self) -> None:
        """No frame, no lag."""
        h = LagHistogram()
        assert (h.count, h.max_s, h.quantile_s(0.99)) == (0, 0.0, 0.0)

    @given(st.lists(st.floats(0.0, 3000.0), min_size=1, max_size=200), st.floats(0.01, 1.0))
    def test_a_quantile_is_its_bucket_bound(self, lags: list[float], q: float) -> None:
        """Never below the true quantile, at most 25 % (or 1 µs) above it, never above the max."""
        h = LagHistogram()
        for lag in lags:
            h.add(lag)
        ranked = sorted(lags)
        true = ranked[max(1, math.ceil(q * len(lags))) - 1]
        got = h.quantile_s(q)
        assert got <= max(lags) and h.max_s == max(lags) and h.count == len(lags)
        assert got >= min(true, 2147.483647) - 1e-6
        assert got <= true * 1.25 + 1e-6

    @given(st.one_of(st.integers(-5, 5000), st.integers(0, 1 << 45)))
    def test_add_counts_in_the_bucket_of_its_microseconds(self, us: int) -> None:
        """add() (its bucket index inlined) lands where _index puts the duration."""
        h = LagHistogram()
        h.add(us / 1e6)
        assert [i for i, n in enumerate(h._counts) if n] == [_index(int(us / 1e6 * 1e6))]

    def test_the_memory_is_fixed(self) -> None:
        """Huge and negative durations land in the end buckets; nothing grows."""
        h = LagHistogram()
        for lag in (-1.0, 0.0, 1e-7, 1e6, 1e12):
            h.add(lag)
        assert len(h._counts) == BUCKETS and h.count == 5 and h.max_s == 1e12
        assert sys.getsizeof(h._counts) <= 4 * BUCKETS + 80  # packed: 4 bytes a bucket

    def test_a_full_bucket_widens_the_counters(self) -> None:
        """A bucket at 2**32 - 1 (13 years of frames) widens every counter to 8 bytes."""
        h = LagHistogram()
        h.add(0.001)
        h._counts[5] = 2**32 - 1
        h.add(0.000005)
        assert h._counts[5] == 2**32 and h._counts.itemsize == 8
        assert sum(h._counts) == 2**32 + 1 and (h.count, h.max_s) == (2, 0.001)


class TestFeedLanes:
    async def test_a_queued_frame_comes_before_the_wake(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The taker took a frame and woke the pump; a frame queued meanwhile is returned first
        (the pump's post-frame work follows it), and the idle deadline counts from the last."""
        inlet, inbox = open_inlet(4)
        feed = Feed(inbox, 10 * 16000, 16000)
        taken: list[AudioFrame] = []

        def taker(f: AudioFrame, arrived: float) -> bool:
            taken.append(f)
            feed.took_live(f, False, arrived)
            feed.wake()
            return True

        async def producer() -> None:
            await trio.sleep(1.0)
            await inlet.send(frame(0))
            inlet.send_nowait(frame(1))  # before the pump runs: queued behind the wake

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            assert await feed.next_frame(5.0, taker) == frame(1)
            assert taken == [frame(0)] and feed.fast_frames == 1
            t0 = trio.current_time()
            assert await feed.next_frame(5.0, taker) is None
            assert trio.current_time() - t0 == pytest.approx(5.0)
        assert [f.start for f in feed.buffer.frames_from(0)] == [0, 160]
