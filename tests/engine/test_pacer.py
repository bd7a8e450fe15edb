"""The shared pacer: sleep_until's contract, one ticker per run, lateness statistics.

Every timing test runs on MockClock(autojump_threshold=0): the clock jumps to the
ticker's deadline, so wake times are exact and comparable to the deadlines.
"""

from __future__ import annotations

import contextvars
import math
import traceback
from dataclasses import dataclass, field

import pytest
import structlog
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


class StepCounter(trio.abc.Instrument):
    """Counts the task steps of the tasks it is told to watch (a driven task must not run)."""

    def __init__(self) -> None:
        self.watched: set[trio.lowlevel.Task] = set()
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task in self.watched:
            self.steps += 1


class Frames:
    """A driven producer of frames due at ``deadlines``; records each call as (deadline, now).

    Its step hands the task back (returns None) after the calls numbered in ``refuse``.
    """

    def __init__(self, deadlines: list[float], *, refuse: frozenset[int] = frozenset()) -> None:
        self.deadlines = deadlines
        self.refuse = refuse
        self.k = 0
        self.calls: list[tuple[float, float]] = []

    def step(self, now: float) -> float | None:
        self.calls.append((self.deadlines[self.k], now))
        self.k += 1
        if self.k == len(self.deadlines) or self.k in self.refuse:
            return None
        return self.deadlines[self.k]


class TestDrive:
    async def test_steps_run_at_their_deadlines_without_the_task(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Each step is called at its deadline inside a tick; the task runs only when it ends."""
        pacer = Pacer(tick=0.001)
        t0 = trio.current_time()
        frames = Frames([t0 + k * 0.1 for k in range(1, 51)])
        counter = StepCounter()
        trio.lowlevel.add_instrument(counter)
        try:
            counter.watched.add(trio.lowlevel.current_task())
            await pacer.drive(frames.step, frames.deadlines[0])
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert frames.calls == [(d, d) for d in frames.deadlines]
        assert counter.steps == 1  # woken once, by the last step's None
        assert trio.current_time() == frames.deadlines[-1]
        stats = pacer.statistics()
        assert (stats.count, stats.max_ms, stats.waiting) == (50, 0.0, 0)

    async def test_none_hands_the_task_back_and_it_drives_again(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A step returning None wakes the task at that tick; its next drive resumes the schedule."""
        pacer = Pacer()
        t0 = trio.current_time()
        frames = Frames([t0 + k * 0.1 for k in range(1, 11)], refuse=frozenset({3, 7}))
        returns: list[float] = []
        while frames.k < len(frames.deadlines):
            await pacer.drive(frames.step, frames.deadlines[frames.k])
            returns.append(trio.current_time() - t0)
        assert returns == pytest.approx([0.3, 0.7, 1.0])
        assert frames.calls == [(d, d) for d in frames.deadlines]

    async def test_a_past_deadline_is_called_at_the_next_tick(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """drive is a checkpoint even when due; a backlog goes in order, one call per tick,
        at once (other tasks run between the ticks)."""
        pacer = Pacer()
        await trio.sleep(1.0)
        now = trio.current_time()
        frames = Frames([now - 0.3, now - 0.2, now - 0.1, now + 0.1])
        with trio.testing.assert_checkpoints():
            await pacer.drive(frames.step, frames.deadlines[0])
        assert frames.calls == [(d, now) for d in frames.deadlines[:3]] + [(now + 0.1, now + 0.1)]
        assert pacer.ticks == 4
        assert pacer.statistics().max_ms == pytest.approx(300.0)

    async def test_a_backlog_does_not_starve_the_run(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """50 overdue frames: one call per tick, and another task runs between the ticks."""
        pacer = Pacer()
        await trio.sleep(10.0)
        now = trio.current_time()
        frames = Frames([now - 5.0 + k * 0.1 for k in range(50)])
        turns = 0
        done = False

        async def other() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            await pacer.drive(frames.step, frames.deadlines[0])
            done = True
        assert [d for d, _ in frames.calls] == frames.deadlines
        assert pacer.ticks == 50 and turns >= 49
        assert trio.current_time() == now

    async def test_steps_of_one_tick_go_in_deadline_order(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Drivers due in one bucket are called in deadline order, whatever their arrival."""
        pacer = Pacer(tick=0.005)
        t0 = trio.current_time()
        order: list[float] = []

        async with trio.open_nursery() as nursery:
            for offset in (0.1049, 0.1011, 0.1033, 0.1001):

                def step(now: float, d: float = t0 + offset) -> None:
                    order.append(d)

                nursery.start_soon(pacer.drive, step, t0 + offset)
        assert order == sorted(order)
        assert pacer.ticks == 1

    async def test_an_error_in_a_step_is_raised_in_the_task(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The step's exception reaches the driver with its traceback; the ticker and the
        other drivers carry on."""
        pacer = Pacer()
        t0 = trio.current_time()
        other = Frames([t0 + k * 0.1 for k in range(1, 11)])

        def broken(now: float) -> float | None:
            raise KeyError("the source broke")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pacer.drive, other.step, other.deadlines[0])
            with pytest.raises(KeyError, match="the source broke") as info:
                await pacer.drive(broken, t0 + 0.35)
            assert trio.current_time() == t0 + 0.35
        assert "broken" in [frame.name for frame in traceback.extract_tb(info.tb)]
        assert other.calls == [(d, d) for d in other.deadlines]
        assert pacer.statistics().count == 11

    @pytest.mark.parametrize("bad", [0.5, 0.4, math.nan, math.inf])
    async def test_a_step_must_move_its_deadline_forward(
        self, autojump_clock: trio.testing.MockClock, bad: float
    ) -> None:
        """A next deadline not later than the current one ends the drive (a tick always ends)."""
        pacer = Pacer()
        t0 = trio.current_time()
        with pytest.raises(ValueError, match="later time"):
            await pacer.drive(lambda now: t0 + bad, t0 + 0.5)
        assert pacer.statistics().waiting == 0

    async def test_nan_deadline(self) -> None:
        """NaN is refused before anything is registered."""
        with pytest.raises(ValueError, match="NaN"):
            await Pacer().drive(lambda now: None, math.nan)

    async def test_a_cancelled_drive_leaves_nothing(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Cancelled while parked: its step is never called again; the others stay on time."""
        pacer = Pacer()
        t0 = trio.current_time()
        doomed = Frames([t0 + k * 0.1 for k in range(1, 21)])
        other = Frames([t0 + k * 0.1 + 0.05 for k in range(1, 21)])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pacer.drive, other.step, other.deadlines[0])
            with trio.move_on_at(t0 + 0.55) as scope:
                await pacer.drive(doomed.step, doomed.deadlines[0])
            assert scope.cancelled_caught
            assert pacer.statistics().waiting == 1
        assert [d for d, _ in doomed.calls] == doomed.deadlines[:5]
        assert other.calls == [(d, d) for d in other.deadlines]
        assert pacer.statistics().waiting == 0

    async def test_a_step_that_cancels_its_own_drive(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The next deadline of a step whose task was cancelled meanwhile is dropped."""
        pacer = Pacer()
        t0 = trio.current_time()
        calls: list[float] = []
        with trio.CancelScope() as scope:

            def step(now: float) -> float:
                calls.append(now)
                scope.cancel()
                return now + 1.0

            await pacer.drive(step, t0 + 0.1)
        assert scope.cancelled_caught and calls == [t0 + 0.1]
        await trio.sleep(5.0)
        assert calls == [t0 + 0.1] and pacer.statistics().waiting == 0

    async def test_a_step_runs_in_the_drivers_context(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Contextvars (structlog's bindings) of the driving task are in effect in its step."""
        var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="ticker")
        seen: list[object] = []

        def step(now: float) -> None:
            seen.append(var.get())
            seen.append(structlog.contextvars.get_contextvars().get("stream"))

        var.set("driver")
        with structlog.contextvars.bound_contextvars(stream="s7"):
            await Pacer().drive(step, trio.current_time() + 0.2)
        assert seen == ["driver", "s7"]

    async def test_waiters_and_drivers_share_the_ticks(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A waiter and a driver due at the same time are served by one tick."""
        pacer = Pacer()
        t0 = trio.current_time()
        frames = Frames([t0 + k * 0.1 for k in range(1, 11)])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pacer.drive, frames.step, frames.deadlines[0])

            async def waiter() -> None:
                for k in range(1, 11):
                    await pacer.wait_until(t0 + k * 0.1)

            nursery.start_soon(waiter)
        assert pacer.ticks == 10
        assert pacer.statistics().count == 20


# --------------------------------------------------------- interleavings


@dataclass
class Actor:
    """One producer of a generated interleaving: a waiter or a driver with its script."""

    kind: str  # "wait" or "drive"
    deadlines: list[float]
    hand_back: set[int]  # the driver's step returns None after these calls
    fail_at: int | None  # the driver's step raises on this call
    cancel_at: float | None
    calls: list[tuple[float, float, int]] = field(default_factory=list)  # deadline, now, tick
    runs: int = 0  # times the driver's task came back from drive()
    failed: bool = False
    cancelled: bool = False


@st.composite
def actors(draw: st.DrawFn) -> list[Actor]:
    out = []
    for _ in range(draw(st.integers(1, 6))):
        gaps = draw(st.lists(st.integers(0, 400), min_size=1, max_size=12))
        deadlines, t = [], draw(st.integers(-50, 300)) / 1000
        for g in gaps:
            t += (g + 1) / 10_000  # strictly later, on an off-tick grid (0.1 ms)
            deadlines.append(t)
        n = len(deadlines)
        cancel = draw(st.one_of(st.none(), st.integers(0, 600).map(lambda ms: ms / 1000)))
        out.append(
            Actor(
                kind=draw(st.sampled_from(["wait", "drive"])),
                deadlines=deadlines,
                hand_back=draw(st.sets(st.integers(1, n))),
                fail_at=draw(st.one_of(st.none(), st.integers(0, n - 1))),
                cancel_at=cancel,
            )
        )
    return out


async def play_interleaving(
    pacer: Pacer, cast: list[Actor], steps: list[tuple[int, float]]
) -> float:
    """Play the cast from now (t0, returned); deadlines and cancel times are offsets from t0.

    Every step call is also logged in ``steps`` as (tick, deadline), in call order."""
    t0 = trio.current_time()

    async def wait(a: Actor) -> None:
        for d in a.deadlines:
            await pacer.wait_until(t0 + d)
            a.calls.append((t0 + d, trio.current_time(), pacer.ticks))

    async def drive(a: Actor) -> None:
        k = 0

        def step(now: float) -> float | None:
            nonlocal k
            a.calls.append((t0 + a.deadlines[k], now, pacer.ticks))
            steps.append((pacer.ticks, t0 + a.deadlines[k]))
            if k == a.fail_at:
                raise RuntimeError(f"step {k}")
            k += 1
            if k == len(a.deadlines) or k in a.hand_back:
                return None
            return t0 + a.deadlines[k]

        while k < len(a.deadlines):
            try:
                await pacer.drive(step, t0 + a.deadlines[k])
            except RuntimeError:
                a.failed = True
                return
            a.runs += 1

    async def act(a: Actor) -> None:
        with trio.CancelScope(deadline=math.inf if a.cancel_at is None else t0 + a.cancel_at) as cs:
            await (wait(a) if a.kind == "wait" else drive(a))
        a.cancelled = cs.cancelled_caught

    async with trio.open_nursery() as nursery:
        for a in cast:
            nursery.start_soon(act, a)
    return t0


class TestInterleavings:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(cast=actors(), tick_ms=st.sampled_from([1, 5]))
    def test_rules_hold_for_any_mix_of_waits_drives_and_cancels(
        self, cast: list[Actor], tick_ms: int
    ) -> None:
        """Never early, never more than a tick late, no lost or repeated call, cancellation
        leaves nothing, errors reach their task, and one tick serves steps in bucket order."""
        pacer = Pacer(tick=tick_ms / 1000)
        steps: list[tuple[int, float]] = []
        t0 = trio.run(
            play_interleaving,
            pacer,
            cast,
            steps,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
        tick = pacer.tick
        for a in cast:
            done = [d for d, _, _ in a.calls]
            registered = t0  # a deadline joins the pacer when the previous one was served
            for d, now, _ in a.calls:
                assert d <= now <= max(d, registered) + tick + 1e-9  # rules 1 and 2
                registered = now
            # No lost or repeated call: a prefix of the schedule, in order.
            assert done == [t0 + d for d in a.deadlines[: len(done)]]
            if a.failed:
                assert a.kind == "drive" and len(a.calls) == a.fail_at + 1
            elif a.cancelled:
                assert a.cancel_at is not None
                assert all(now <= t0 + a.cancel_at + 1e-9 for _, now, _ in a.calls)  # rule 3
                # ... and what it missed was not yet due a tick before the cancel
                missed = a.deadlines[len(done) :]
                if missed:
                    assert max(t0 + missed[0], registered) > t0 + a.cancel_at - tick - 1e-9
            else:
                assert len(a.calls) == len(a.deadlines)
                if a.kind == "drive":  # its task ran only when a step handed it back
                    assert a.runs == len({k for k in a.hand_back if k < len(a.deadlines)}) + 1
        # Within one tick steps go bucket by bucket, in time order.
        keys = [(ticks, math.ceil(d / tick)) for ticks, d in steps]
        assert keys == sorted(keys)
        stats = pacer.statistics()
        assert stats.count == sum(len(a.calls) for a in cast)
        assert stats.waiting == 0


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
