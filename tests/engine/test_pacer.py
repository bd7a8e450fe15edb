"""The shared pacer: sleep_until's contract, one ticker per run, lateness statistics.

Every timing test runs on MockClock(autojump_threshold=0): the clock jumps to the
ticker's deadline, so wake times are exact and comparable to the deadlines.
"""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from engine import pacer as pacer_module
from engine.pacer import LatenessHistogram, Pacer, current_pacer


async def wake_times(pacer: Pacer, deadlines: list[float]) -> list[tuple[float, float]]:
    """Start one waiter per deadline (all at once); return (deadline, woken) in wake order."""
    woken: list[tuple[float, float]] = []

    async def waiter(deadline: float) -> None:
        await pacer.wait_until(deadline)
        woken.append((deadline, trio.current_time()))

    async with trio.open_nursery() as nursery:
        for d in deadlines:
            nursery.start_soon(waiter, d)
    return woken


class TestSleepUntilContract:
    async def test_wakes_in_deadline_order_never_early(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Waiters wake in deadline order, each at or after its deadline and within a tick."""
        pacer = Pacer(tick=0.005)
        t0 = trio.current_time()
        deadlines = [t0 + x for x in (0.3, 0.1, 0.2013, 0.2, 0.05, 0.0021, 0.1049)]
        woken = await wake_times(pacer, deadlines)
        assert [d for d, _ in woken] == sorted(deadlines)
        for d, t in woken:
            assert d <= t <= d + pacer.tick

    async def test_same_tick_is_one_wake(self, autojump_clock: trio.testing.MockClock) -> None:
        """Many waiters due in one tick are served by one ticker wake, in arrival order."""
        pacer = Pacer(tick=0.005)
        t0 = trio.current_time()
        deadlines = [t0 + 0.1011 + i * 0.00009 for i in range(40)]  # all in (0.100, 0.105]
        woken = await wake_times(pacer, deadlines)
        assert pacer.ticks == 1
        assert {t for _, t in woken} == {max(deadlines)}  # the bucket is due at its latest member

    async def test_an_earlier_deadline_re_aims_the_ticker(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A waiter with an earlier deadline than the ticker's current sleep wakes on time."""
        pacer = Pacer()
        t0 = trio.current_time()
        woken: dict[str, float] = {}

        async def waiter(name: str, deadline: float) -> None:
            await pacer.wait_until(deadline)
            woken[name] = trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, "late", t0 + 10.0)
            await trio.testing.wait_all_tasks_blocked()  # the ticker sleeps towards t0 + 10
            nursery.start_soon(waiter, "early", t0 + 1.0)
        assert woken == {"early": t0 + 1.0, "late": t0 + 10.0}

    async def test_past_deadline_is_a_checkpoint(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A deadline already past returns at once, still a checkpoint, and counts its lateness."""
        pacer = Pacer()
        await trio.sleep(1.0)
        now = trio.current_time()
        with trio.testing.assert_checkpoints():
            await pacer.wait_until(now - 0.25)
        assert trio.current_time() == now
        stats = pacer.statistics()
        assert stats.count == 1
        assert stats.max_ms == pytest.approx(250.0)

    async def test_cancelled_waiter_leaves_nothing(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A cancelled wait raises Cancelled, records nothing, and the others still wake on time."""
        pacer = Pacer()
        t0 = trio.current_time()
        woken: list[float] = []

        async def waiter(deadline: float) -> None:
            await pacer.wait_until(deadline)
            woken.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as doomed:
                nursery.start_soon(waiter, t0 + 2.0)
                await trio.testing.wait_all_tasks_blocked()
            cancelled = trio.CancelScope()

            async def cancelled_waiter() -> None:
                with cancelled:
                    await pacer.wait_until(t0 + 1.0)
                    pytest.fail("the cancelled waiter woke")  # pragma: no cover

            nursery.start_soon(cancelled_waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert pacer.statistics().waiting == 2
            cancelled.cancel()
        assert not doomed.cancelled_caught
        assert cancelled.cancelled_caught
        assert woken == [t0 + 2.0]
        assert pacer.statistics().count == 1
        assert pacer.statistics().waiting == 0

    async def test_nan_deadline(self) -> None:
        """NaN is refused (sleep_until would never return)."""
        with pytest.raises(ValueError, match="NaN"):
            await Pacer().wait_until(math.nan)

    @pytest.mark.parametrize("tick", [0.0, -1.0, math.nan, math.inf])
    def test_bad_tick(self, tick: float) -> None:
        """The tick must be a positive finite number of seconds."""
        with pytest.raises(ValueError, match="tick"):
            Pacer(tick=tick)


class TestSchedule:
    async def test_absolute_schedule_has_no_drift(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A producer pacing 100 ms frames for 10 minutes of audio is on time at the last one."""
        pacer = Pacer()
        t0 = trio.current_time()
        late = 0.0
        for k in range(1, 6001):
            await pacer.wait_until(t0 + k * 0.1)
            late = max(late, trio.current_time() - (t0 + k * 0.1))
        assert late == 0.0
        assert trio.current_time() == t0 + 6000 * 0.1

    async def test_a_stall_is_caught_up_then_on_time(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After a 0.45 s stall the overdue frames go at once and later ones on schedule."""
        pacer = Pacer()
        t0 = trio.current_time()
        sent: list[float] = []
        for k in range(1, 21):
            await pacer.wait_until(t0 + k * 0.1)
            sent.append(trio.current_time() - t0)
            if k == 5:
                await trio.sleep(0.45)
        assert sent[:5] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
        assert sent[5:9] == pytest.approx([0.95] * 4)
        assert sent[9:] == pytest.approx([(k + 1) * 0.1 for k in range(9, 20)])
        stats = pacer.statistics()
        assert stats.count == 20
        assert stats.max_ms == pytest.approx(350.0)  # the frame due at 0.6 went at 0.95

    async def test_many_streams_share_ticks(self, autojump_clock: trio.testing.MockClock) -> None:
        """200 streams started 1 ms apart: every frame on time, ~1 ticker wake per ms used."""
        pacer = Pacer(tick=0.001)
        t0 = trio.current_time()
        worst = 0.0

        async def stream(offset: float) -> None:
            nonlocal worst
            for k in range(1, 21):
                deadline = t0 + offset + k * 0.1
                await pacer.wait_until(deadline)
                worst = max(worst, trio.current_time() - deadline)

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(stream, (i % 50) * 0.001)
        assert worst <= pacer.tick
        stats = pacer.statistics()
        assert stats.count == 200 * 20
        assert stats.ticks <= 50 * 20 + 1  # one wake per distinct millisecond, not per stream


class TestOnePerRun:
    async def test_current_pacer_is_per_run(self) -> None:
        """Within a run the pacer is one object; the module's statistics() reads it."""
        assert current_pacer() is current_pacer()
        await current_pacer().wait_until(trio.current_time())
        assert pacer_module.statistics().count == 1

    def test_runs_do_not_share_a_pacer_or_leak_its_task(self) -> None:
        """Each trio.run has its own pacer; its ticker ends with the run."""
        seen: list[Pacer] = []

        async def main() -> None:
            pacer = current_pacer()
            seen.append(pacer)
            await pacer.wait_until(trio.current_time() + 0.01)

        for _ in range(2):
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        assert seen[0] is not seen[1]
        assert [p.statistics().count for p in seen] == [1, 1]

    async def test_pacer_in_the_callers_nursery_with_deadline(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A waiter's own deadline (fail_after) cancels its wait like sleep_until's would."""
        pacer = Pacer()
        t0 = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.5):
                await pacer.wait_until(t0 + 1.0)
        assert trio.current_time() == t0 + 0.5
        await pacer.wait_until(t0 + 1.0)  # the pacer still works afterwards
        assert trio.current_time() == t0 + 1.0


class TestLatenessHistogram:
    def test_empty(self) -> None:
        """No samples: every statistic is zero."""
        h = LatenessHistogram()
        assert (h.count, h.percentile(0.5), h.percentile(0.99), h.max_ms) == (0, 0.0, 0.0, 0.0)

    def test_percentiles_are_bin_upper_edges(self) -> None:
        """p50/p99 never understate: the upper edge of the bin holding the quantile."""
        h = LatenessHistogram()
        for _ in range(98):
            h.record(0.00005)  # 0.05 ms
        h.record(0.00425)  # 4.25 ms
        h.record(0.0123)  # 12.3 ms
        assert h.count == 100
        assert h.percentile(0.5) == 0.1
        assert h.percentile(0.99) == pytest.approx(4.3)
        assert h.max_ms == pytest.approx(12.3)

    def test_bounded_and_overflow(self) -> None:
        """Huge lateness lands in the overflow bin; the max is exact; negatives count as 0."""
        h = LatenessHistogram()
        h.record(60.0)
        h.record(-1.0)
        assert h.percentile(1.0) == pytest.approx(60_000.0)
        assert h.percentile(0.5) == 0.0
