"""The suspend gate (pure, synchronous)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.daemon.gate import EnergyGate, dbfs

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

    def test_an_interruption_skips_what_was_withheld(self) -> None:
        """A source break while closed: the held silence is skipped now, the pre-roll restarts."""
        g = gate(after_s=0.5, preroll_ms=200)
        for _ in range(5):
            g.feed(QUIET, RATE)
        assert g.closed
        for _ in range(8):
            g.feed(QUIET, RATE)
        step = g.interrupt()
        assert (step.skipped, step.skip_rate, step.push) == (8 * BLOCK, RATE, ())
        assert g.closed and g.ring_samples == 0
        assert not g.interrupt().skipped  # nothing more to skip
        reopen = g.feed(loud(), RATE)
        assert reopen.resumed and reopen.skipped == 0 and len(reopen.push) == 1
        assert g.skipped_s == pytest.approx(8 * BLOCK / RATE)

    def test_an_open_gate_has_nothing_to_skip(self) -> None:
        g = gate()
        g.feed(loud(), RATE)
        assert g.interrupt().skipped == 0
        assert not g.closed
