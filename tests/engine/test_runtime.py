"""engine.runtime: the collector's policy applied and restored, its pauses measured, and
no cyclic garbage of ended streams kept for good under it.

Every test leaves the process's collector as it found it (the ``collector`` fixture).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from engine import runtime
from engine.runtime import (
    FOR_STREAMS,
    GcPauses,
    GcPolicy,
    GcState,
    restore,
    tune_for_streams,
    tuned_for_streams,
)


@pytest.fixture(name="collector")
def _collector() -> Iterator[tuple[int, int, int]]:
    """The collector's thresholds before the test; restored (and unfrozen) after it."""
    assert gc.get_freeze_count() == 0, "the test process must not have a frozen heap"
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


class TestPolicy:
    def test_tune_applies_and_returns_the_previous_settings(
        self, collector: tuple[int, int, int]
    ) -> None:
        """The thresholds are the policy's; the state returned holds the ones replaced."""
        previous = tune_for_streams()
        assert gc.get_threshold() == FOR_STREAMS.thresholds
        assert previous == GcState(thresholds=collector, froze=True)
        assert gc.get_freeze_count() > 0

    def test_restore_puts_everything_back(self, collector: tuple[int, int, int]) -> None:
        """restore() brings back the thresholds and unfreezes what the call froze."""
        restore(tune_for_streams())
        assert gc.get_threshold() == collector
        assert gc.get_freeze_count() == 0

    def test_a_second_call_freezes_nothing_more(self, collector: tuple[int, int, int]) -> None:
        """Idempotent: the same thresholds, no second freeze (what it froze stays bounded);
        restoring the second call leaves the first call's freeze in place."""
        first = tune_for_streams()
        frozen = gc.get_freeze_count()
        keep = [[] for _ in range(1000)]  # objects born after start-up: never frozen
        second = tune_for_streams()
        assert gc.get_threshold() == FOR_STREAMS.thresholds
        assert gc.get_freeze_count() == frozen
        assert second == GcState(thresholds=FOR_STREAMS.thresholds, froze=False)
        restore(second)
        assert gc.get_freeze_count() == frozen
        restore(first)
        assert gc.get_threshold() == collector and gc.get_freeze_count() == 0
        assert len(keep) == 1000

    def test_a_heap_frozen_by_someone_else_is_left_alone(
        self, collector: tuple[int, int, int]
    ) -> None:
        """An embedder's own freeze is neither repeated nor undone by us."""
        gc.freeze()
        theirs = gc.get_freeze_count()
        previous = tune_for_streams()
        assert not previous.froze and gc.get_freeze_count() == theirs
        restore(previous)
        assert gc.get_freeze_count() == theirs

    def test_without_freeze(self, collector: tuple[int, int, int]) -> None:
        """freeze_startup=False only sets the thresholds."""
        previous = tune_for_streams(GcPolicy(thresholds=(5000, 10, 10), freeze_startup=False))
        assert gc.get_threshold() == (5000, 10, 10) and gc.get_freeze_count() == 0
        assert not previous.froze

    def test_the_context_manager_restores_on_error(self, collector: tuple[int, int, int]) -> None:
        """tuned_for_streams() restores the collector even when its block raises."""
        inside: list[tuple[int, int, int]] = []

        def fail() -> None:
            with tuned_for_streams():
                inside.append(gc.get_threshold())
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            fail()
        assert inside == [FOR_STREAMS.thresholds]
        assert gc.get_threshold() == collector and gc.get_freeze_count() == 0

    @pytest.mark.parametrize("thresholds", [(0, 10, 10), (700, -1, 10), (700, 10, -5)])
    def test_bad_thresholds_are_refused(self, thresholds: tuple[int, int, int]) -> None:
        """A first threshold of 0 (the collector off) or a negative one is a ValueError."""
        with pytest.raises(ValueError, match="thresholds"):
            GcPolicy(thresholds=thresholds)


class TestPauses:
    def test_counts_and_times_each_generation(self) -> None:
        """Each collection is counted in its generation with its duration (a fake clock)."""
        ticks = iter([0.0, 0.004, 1.0, 1.010, 2.0, 2.001])
        pauses = GcPauses(clock=lambda: next(ticks))
        with pauses:
            gc.collect(0)
            gc.collect(2)
            gc.collect(2)
        stats = pauses.statistics()
        assert stats.count == (1, 0, 2)
        assert stats.total_ms == pytest.approx((4.0, 0.0, 11.0))
        assert stats.max_ms == pytest.approx((4.0, 0.0, 10.0))

    def test_stop_removes_the_callback_and_reset_zeroes(self) -> None:
        """After stop() nothing is counted; reset() zeroes the figures; start/stop twice is
        harmless."""
        pauses = GcPauses()
        pauses.start()
        pauses.start()
        gc.collect(1)
        pauses.stop()
        pauses.stop()
        assert pauses._on_gc not in gc.callbacks
        assert pauses.statistics().count == (0, 1, 0)
        gc.collect(1)
        assert pauses.statistics().count == (0, 1, 0)
        pauses.reset()
        assert pauses.statistics().count == (0, 0, 0)
        assert pauses.statistics().collected == 0

    def test_counts_what_was_collected(self) -> None:
        """Objects a collection freed are added up."""
        with GcPauses() as pauses:
            for _ in range(10):
                ring: list[object] = []
                ring.append(ring)
            del ring
            gc.collect()
        assert pauses.statistics().collected >= 10


class Life:
    """One stream's lifetime: a cycle of ``size`` tracked objects (as a stream's actors,
    channels and timelines refer to each other), freed only by the cyclic collector."""

    __slots__ = ("__weakref__", "ring")

    def __init__(self, size: int) -> None:
        self.ring: list[object] = [self, *([] for _ in range(size - 1))]


def peak_unfreed(policy: GcPolicy, *, lives: int, size: int, window: int) -> int:
    """Run ``lives`` stream lifetimes, ``window`` alive at a time, under ``policy``; return
    the most lifetimes not yet freed (alive, or ended and not collected) at any start."""
    alive = 0
    peak = 0

    def freed(_: weakref.ref[Life]) -> None:
        nonlocal alive
        alive -= 1

    refs: list[weakref.ref[Life]] = []
    running: list[Life] = []
    gc.collect()  # counts start at 0
    with tuned_for_streams(policy):
        for _ in range(lives):
            life = Life(size)
            refs.append(weakref.ref(life, freed))
            alive += 1
            running.append(life)
            if len(running) > window:
                running.pop(0)  # this stream ended: its cycle is garbage now
            peak = max(peak, alive)
        del life
        running.clear()
    gc.collect()
    assert alive == 0  # everything is collectable: only *when* differs
    return peak


@pytest.mark.slow
class TestNoLeak:
    """20,000 lifetimes of 100 objects, 1,500 alive at once: every stream lives through
    a middle collection, so its cycle reaches the oldest generation before it ends (as a
    real stream's does); the run allocates 2M objects, twice FOR_STREAMS' t0*t1*t2."""

    LIVES = 20_000
    SIZE = 100
    WINDOW = 1_500

    def bound(self, policy: GcPolicy) -> float:
        """Lifetimes alive or waiting: the window, plus t0*t1*t2 objects' worth (+50 %)."""
        t0, t1, t2 = policy.thresholds
        return self.WINDOW + 1.5 * t0 * t1 * t2 / self.SIZE

    def test_ended_streams_cycles_are_collected(self, collector: tuple[int, int, int]) -> None:
        """Under FOR_STREAMS the garbage of ended streams stays bounded, however many
        lifetimes run (the run goes past the bound, so this can fail)."""
        assert self.bound(FOR_STREAMS) < self.LIVES
        peak = peak_unfreed(FOR_STREAMS, lives=self.LIVES, size=self.SIZE, window=self.WINDOW)
        assert peak <= self.bound(FOR_STREAMS)

    def test_a_huge_oldest_threshold_keeps_them(self, collector: tuple[int, int, int]) -> None:
        """The contrast that chose t2: the same policy with t2 = 1,000 frees no ended
        stream's cycle in the whole run (a full collection would come after ~10⁸ objects)."""
        t0, t1, _ = FOR_STREAMS.thresholds
        policy = GcPolicy(thresholds=(t0, t1, 1_000))
        peak = peak_unfreed(policy, lives=self.LIVES, size=self.SIZE, window=self.WINDOW)
        assert peak > self.bound(FOR_STREAMS)
        assert peak == self.LIVES


def test_the_module_documents_its_policy() -> None:
    """The docstring names the thresholds FOR_STREAMS uses (kept in step by hand)."""
    assert runtime.__doc__ is not None
    t0, _, t2 = FOR_STREAMS.thresholds
    assert f"{t0:,}" in runtime.__doc__ and f"t2 = {t2}" in runtime.__doc__
