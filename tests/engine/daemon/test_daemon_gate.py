"""The suspend gate and the timeline map (pure, synchronous)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.daemon.gate import EnergyGate, TimelineMap, dbfs
from engine.events import AudioGap, Final, Partial, SessionOpened, Word

RATE = 16000
BLOCK = 1600  # 100 ms
QUIET = np.zeros(BLOCK, dtype=np.float32)


def loud(value: float = 0.5) -> np.ndarray:
    return np.full(BLOCK, value, dtype=np.float32)


def gate(after_s: float = 1.0, preroll_ms: int = 300) -> EnergyGate:
    return EnergyGate(threshold_dbfs=-40.0, after_s=after_s, preroll_ms=preroll_ms)


class TestDbfs:
    def test_levels(self) -> None:
        assert dbfs(QUIET) == -math.inf
        assert dbfs(np.zeros(0, dtype=np.float32)) == -math.inf
        assert dbfs(loud(0.5)) == pytest.approx(-6.0206, abs=1e-3)
        sine = np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE).astype(np.float32)
        assert dbfs(sine) == pytest.approx(-3.0103, abs=1e-3)


class TestEnergyGate:
    def test_silence_is_pushed_until_after_s_then_held(self) -> None:
        """The first after_s of silence is sent (the server sees the speech end); then nothing."""
        g = gate(after_s=1.0)
        assert g.feed(loud(), RATE).push
        steps = [g.feed(QUIET, RATE) for _ in range(15)]
        assert [bool(s.push) for s in steps] == [True] * 10 + [False] * 5
        assert steps[9].suspended and g.closed
        assert not any(s.skipped for s in steps)

    def test_speech_reopens_with_exactly_the_preroll(self) -> None:
        """Reopening pushes the last preroll_ms of the silence, then the loud block."""
        g = gate(after_s=1.0, preroll_ms=250)
        g.feed(loud(), RATE)
        for _ in range(10):
            g.feed(QUIET, RATE)
        for i in range(30):  # 3 s held
            g.feed(np.full(BLOCK, i * 1e-6, dtype=np.float32), RATE)
        block = loud(0.25)
        step = g.feed(block, RATE)
        assert step.resumed and not g.closed
        preroll = np.concatenate(step.push[:-1])
        assert len(preroll) == 250 * RATE // 1000
        assert step.push[-1] is block
        assert preroll[-1] == pytest.approx(29e-6)  # the end of the silence, in order
        assert step.skipped == 30 * BLOCK - len(preroll)
        assert g.skipped_s == pytest.approx(step.skipped / RATE)

    def test_the_ring_stays_bounded(self) -> None:
        """However long the silence, the gate holds about preroll_ms."""
        g = gate(after_s=0.1, preroll_ms=300)
        for _ in range(10_000):
            g.feed(QUIET, RATE)
        assert g.ring_samples < 300 * RATE // 1000 + BLOCK

    def test_a_rate_change_while_closed_skips_at_the_old_rate(self) -> None:
        g = gate(after_s=0.1, preroll_ms=0)
        g.feed(QUIET, RATE)
        for _ in range(5):
            g.feed(QUIET, RATE)
        step = g.feed(np.zeros(4800, dtype=np.float32), 48000)
        assert (step.skipped, step.skip_rate, step.push) == (5 * BLOCK, RATE, ())
        step = g.feed(np.full(4800, 0.5, dtype=np.float32), 48000)
        assert step.resumed and step.skipped == 4800 and step.skip_rate == 48000


class TestTimelineMap:
    def make(self) -> TimelineMap:
        # pushed 0..1000, skipped 500, pushed 1000..1600, skipped 300 (at 8 kHz: 600 at 16k)
        t = TimelineMap(RATE)
        t.pushed(1000, RATE)
        t.skip(500, RATE)
        t.pushed(600, RATE)
        t.skip(300, 8000)
        return t

    def test_starts_and_ends_around_a_skip(self) -> None:
        """A start at the skip maps after it; an end there belongs before it."""
        t = self.make()
        assert [t.to_global(p) for p in (0, 999, 1000, 1599, 1600, 1700)] == [
            0, 999, 1500, 2099, 2700, 2800,
        ]  # fmt: skip
        assert t.to_global(1000, end=True) == 1000
        assert t.to_global(1600, end=True) == 2100
        assert t.skipped_samples == 1100

    def test_events_move_onto_the_global_timeline(self) -> None:
        t = self.make()
        final = Final(1, 900, 1600, "a b", (Word(900, 1000, "a"), Word(1000, 1600, "b")))
        mapped = t.map_event(final)
        assert isinstance(mapped, Final)
        assert (mapped.start, mapped.end) == (900, 2100)
        assert [(w.start, w.end) for w in mapped.words] == [(900, 1000), (1500, 2100)]
        assert t.map_event(Partial(2, 1600, "c")).start == 2700  # type: ignore[attr-defined]
        assert t.map_event(SessionOpened("t", 1000)).offset == 1500  # type: ignore[attr-defined]
        gap = t.map_event(AudioGap(1000, 1000, "connection-lost"))
        assert (gap.start, gap.end) == (1500, 1500)  # type: ignore[attr-defined]
        assert TimelineMap(RATE).map_event(final) is final  # nothing skipped: untouched

    def test_anchors_are_bounded(self) -> None:
        """Old suspensions are forgotten beyond max_anchors; recent positions stay exact."""
        t = TimelineMap(RATE, max_anchors=8)
        for _ in range(100):
            t.pushed(10, RATE)
            t.skip(5, RATE)
        assert t.anchors == 8
        assert (t.to_global(995), t.to_global(1000)) == (995 + 495, 1000 + 500)
        assert (
            t.to_global(0) == 0 + 5 * 92
        )  # before the oldest anchor kept: its predecessor's offset

    @given(st.lists(st.tuples(st.booleans(), st.integers(1, 5000)), max_size=40))
    def test_mapping_is_monotonic_and_never_moves_back(self, ops: list[tuple[bool, int]]) -> None:
        """Global positions grow with pushed ones and are never before them."""
        t = TimelineMap(RATE)
        pushed = 0
        for skip, n in ops:
            if skip:
                t.skip(n, RATE)
            else:
                t.pushed(n, RATE)
                pushed += n
        points = [t.to_global(p) for p in range(0, pushed + 1, max(1, pushed // 50))]
        assert points == sorted(points)
        assert all(
            g >= p for g, p in zip(points, range(0, pushed + 1, max(1, pushed // 50)), strict=False)
        )
