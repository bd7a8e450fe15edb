"""The results edge of a connection: a bounded queue and a synchronous lane (MockClock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from adapters.dashscope._results import open_results
from engine.results import Heard, Result


def heard(n: int) -> Heard:
    return Heard(False, n, None, f"r{n}")


def texts(results: list[Result]) -> list[str]:
    return [r.text for r in results if isinstance(r, Heard)]


@pytest.mark.usefixtures("autojump_clock")  # every wait is virtual
class TestResultsLane:
    async def test_an_armed_taker_takes_every_result_and_the_consumer_never_wakes(self) -> None:
        """While the consumer is parked on an empty queue, the reader's puts are its taker's."""
        out, results = open_results(2)
        taken: list[Result] = []
        woke: list[Result] = []

        async def consume() -> None:
            while True:
                try:
                    woke.append(await results.receive_or_take(lambda r: taken.append(r) is None))
                except trio.EndOfChannel:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            for n in range(10):  # more than the queue holds: none is queued
                out.send_nowait(heard(n))
            assert results.statistics().current_buffer_used == 0
            out.close()
        assert texts(taken) == [f"r{n}" for n in range(10)] and woke == []
        assert out.lane_results == 10

    async def test_a_refused_result_is_queued_and_later_ones_queue_behind_it(self) -> None:
        """Once one result is queued, the lane is closed until the consumer drains the queue."""
        out, results = open_results(8)
        taken: list[Result] = []
        refuse = [True]

        def taker(result: Result) -> bool:
            if refuse[0]:
                return False
            taken.append(result)
            return True

        seen: list[Result] = []

        async def consume() -> None:
            while True:
                try:
                    result = await results.receive_or_take(taker)
                except trio.EndOfChannel:
                    return
                seen.append(result)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            out.send_nowait(heard(0))  # refused: queued, the lane disarmed
            refuse[0] = False
            out.send_nowait(heard(1))  # the taker would take it now: it queues all the same
            out.send_nowait(heard(2))
            assert taken == []
            await trio.testing.wait_all_tasks_blocked()  # the consumer drains, re-arms, parks
            out.send_nowait(heard(3))  # the lane again
            out.close()
        assert texts(seen) == ["r0", "r1", "r2"] and texts(taken) == ["r3"]
        assert out.lane_results == 1

    async def test_a_full_queue_pushes_back(self) -> None:
        """No consumer, no lane: the queue fills, then the reader must wait for room."""
        out, results = open_results(2)
        out.send_nowait(heard(0))
        out.send_nowait(heard(1))
        with pytest.raises(trio.WouldBlock):
            out.send_nowait(heard(2))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.send, heard(2))
            await trio.sleep(5)
            assert results.statistics().tasks_waiting_send == 1
            assert texts([await results.receive() for _ in range(3)]) == ["r0", "r1", "r2"]

    async def test_the_end_comes_after_what_was_queued(self) -> None:
        """Closing the reader's end: the consumer reads the queue, then EndOfChannel."""
        out, results = open_results(4)
        out.send_nowait(heard(0))
        out.send_nowait(heard(1))
        out.close()
        got = [r async for r in results]
        assert texts(got) == ["r0", "r1"]
        with pytest.raises(trio.EndOfChannel):
            await results.receive_or_take(lambda r: True)

    async def test_the_lane_is_disarmed_however_the_wait_ends(self) -> None:
        """A consumer cancelled while parked leaves no taker behind: results queue."""
        out, results = open_results(4)
        taken: list[Result] = []
        with trio.move_on_after(1) as scope:
            await results.receive_or_take(lambda r: taken.append(r) is None)
        assert scope.cancelled_caught
        out.send_nowait(heard(0))
        assert taken == [] and results.statistics().current_buffer_used == 1

    async def test_discard_drops_everything_until_the_end(self) -> None:
        """A retired task's results: queued ones and later ones are dropped, then it returns."""
        out, results = open_results(4)
        out.send_nowait(heard(0))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(results.discard)
            await trio.testing.wait_all_tasks_blocked()
            for n in range(1, 10):
                out.send_nowait(heard(n))
            out.close()
        assert out.lane_results == 9

    async def test_a_closed_consumer_breaks_the_reader(self) -> None:
        """The consumer's close: the reader's next put fails (as a memory channel's)."""
        out, results = open_results(4)
        results.close()
        with pytest.raises(trio.BrokenResourceError):
            out.send_nowait(heard(0))
