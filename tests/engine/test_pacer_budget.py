"""The pacer's bounded tick (rule 5) and its loop-stall gauge, on MockClock.

A tick calls at most ``max_steps`` steps, the earliest deadlines first; the rest are
called by the next tick, after the other runnable tasks; waiters never wait for the
budget; deferrals are counted; the ticker's own lateness shows a stall.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from engine.pacer import DEFAULT_MAX_STEPS, Pacer


class Log:
    """Calls of many one-shot drivers and the other task's turns, in order."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.entries: list[tuple[str, float, int]] = []  # (kind, deadline, tick)

    def step(self, deadline: float) -> None:
        self.entries.append(("step", deadline, self.pacer.ticks))

    async def drive_once(self, deadline: float) -> None:
        await self.pacer.drive(lambda now: self.step(deadline), deadline)

    async def other(self) -> None:
        while True:
            self.entries.append(("other", 0.0, self.pacer.ticks))
            await trio.lowlevel.checkpoint()

    def steps(self) -> list[tuple[float, int]]:
        return [(d, tick) for kind, d, tick in self.entries if kind == "step"]


class TestTickBudget:
    async def test_a_backlog_goes_in_slices_in_deadline_order(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Ten overdue steps over three buckets, three per tick: 3, 3, 3, 1 calls in
        deadline order, the other task runs between the ticks, 7 + 4 + 1 deferrals."""
        pacer = Pacer(tick=0.001, max_steps=3)
        log = Log(pacer)
        t0 = trio.current_time()
        # arrival order scrambled; deadlines in three buckets (ms 11, 12, 13)
        deadlines = [t0 + x for x in (0.0125, 0.0101, 0.0112, 0.0129, 0.0103, 0.0118, 0.0127,
                                      0.0105, 0.0111, 0.0121)]  # fmt: skip
        async with trio.open_nursery() as nursery:
            for d in deadlines:
                nursery.start_soon(log.drive_once, d)
            await trio.testing.wait_all_tasks_blocked()
            autojump_clock.jump(0.1)  # a stall: every bucket is due at the next tick
            nursery.start_soon(log.other)
            while len(log.steps()) < len(deadlines):
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
        steps = log.steps()
        assert [d for d, _ in steps] == sorted(deadlines)
        ticks = [tick for _, tick in steps]
        assert [ticks.count(t) for t in sorted(set(ticks))] == [3, 3, 3, 1]
        assert pacer.statistics().deferred == 7 + 4 + 1
        # the other task had its turns between the slices: trio runs every runnable task
        # once per batch, in a shuffled order, and the ticker's next slice waits for the
        # next batch; so each batch but the first and the last (whose turn may fall before
        # the first slice or after the last) puts one turn between them
        kinds = [kind for kind, _, _ in log.entries]
        first, last = kinds.index("step"), len(kinds) - 1 - kinds[::-1].index("step")
        assert kinds[first:last].count("other") >= len(set(ticks)) - 2

    async def test_waiters_are_never_held_by_the_budget(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A waiter in a bucket past the budget still wakes at the first tick."""
        pacer = Pacer(tick=0.001, max_steps=1)
        log = Log(pacer)
        t0 = trio.current_time()
        woken: list[int] = []

        async def waiter() -> None:
            await pacer.wait_until(t0 + 0.0035)
            woken.append(pacer.ticks)

        async with trio.open_nursery() as nursery:
            for d in (t0 + 0.0011, t0 + 0.0021, t0 + 0.0031):
                nursery.start_soon(log.drive_once, d)
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            autojump_clock.jump(0.01)
        # unparked by tick 1: it runs in the next batch, at most after tick 2 (held by the
        # budget it would have waited for tick 3)
        assert woken in ([1], [2])
        assert [tick for _, tick in log.steps()] == [1, 2, 3]

    async def test_a_step_due_again_is_not_called_twice_in_a_tick(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Rule 4 holds with the budget: a step returning an overdue deadline joins the
        leftovers of the next tick, after the deadlines that were waiting before it."""
        pacer = Pacer(tick=0.001, max_steps=2)
        log = Log(pacer)
        t0 = trio.current_time()
        calls: list[tuple[float, int]] = []

        def repeat(now: float) -> float | None:
            calls.append((now, pacer.ticks))
            return t0 + 0.0012 if len(calls) == 1 else None

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pacer.drive, repeat, t0 + 0.0010)
            for d in (t0 + 0.0011, t0 + 0.0013, t0 + 0.0014):
                nursery.start_soon(log.drive_once, d)
            await trio.testing.wait_all_tasks_blocked()
            autojump_clock.jump(0.01)
        assert [tick for _, tick in calls] == [1, 2]
        assert [tick for _, tick in log.steps()] == [1, 2, 3]

    def test_the_budget_is_checked(self) -> None:
        """max_steps is at least 1; the default is the module's."""
        assert Pacer().max_steps == DEFAULT_MAX_STEPS
        with pytest.raises(ValueError, match="max_steps"):
            Pacer(max_steps=0)


class TestStallGauge:
    async def test_the_tickers_lateness_shows_a_stall(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A task holding the loop for 50 ms past a bucket's due time shows as the ticker's
        own lateness (p99 and max), and the steps' lateness too."""
        pacer = Pacer(tick=0.001)
        log = Log(pacer)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.drive_once, t0 + 0.010)
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep_until(t0 + 0.009)
            autojump_clock.jump(0.051)  # this task holds the loop until t0 + 0.060
        stats = pacer.statistics()
        assert stats.tick_late_max_ms == pytest.approx(50.0)
        assert stats.tick_late_p99_ms == 50.0  # the bin's upper edge
        assert stats.max_ms == pytest.approx(50.0)
        assert stats.tick_busy_max_ms == 0.0  # MockClock: a tick takes no time

    async def test_an_idle_ticker_is_on_time(self, autojump_clock: trio.testing.MockClock) -> None:
        """With nothing holding the loop the ticker runs at its due times."""
        pacer = Pacer(tick=0.001)
        log = Log(pacer)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for k in range(1, 20):
                nursery.start_soon(log.drive_once, t0 + k * 0.0037)
        stats = pacer.statistics()
        assert stats.ticks == 19
        assert stats.tick_late_max_ms == 0.0 and stats.deferred == 0
