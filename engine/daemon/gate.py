"""The suspend idle policy (pure): an energy gate with a pre-roll.

:class:`EnergyGate` sits between a stream's source and ``Stream.push``. While
open it passes every block and counts the run of blocks below the threshold;
once that run reaches ``after_s`` it closes: blocks are no longer pushed (the
session, configured with ``idle_policy="finish"``, finishes its task after
``finish-after-s`` without audio) and only the last ``preroll_ms`` of them is
kept in a ring. The first block above the threshold opens it again: the ring
(the pre-roll, so no word's start is cut) is pushed before the block, and the
rest of the closed span is reported as *skipped*.

The runner hands a skipped span to ``Stream.skip(reason="suspended")``: the
engine moves the stream's global timeline on by it, so transcripts stay on wall
time and the span is reported (``AudioSkipped``). A source that breaks while the
gate is closed (:meth:`EnergyGate.interrupt`) skips what was withheld so far,
before the outage.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["EnergyGate", "GateStep", "dbfs"]


def dbfs(samples: NDArray[np.float32]) -> float:
    """RMS level of float samples (full scale ±1.0) in dBFS; -inf for digital silence."""
    if samples.size == 0:
        return -math.inf
    # float32 sdot: fast, and exact enough for a level in dB (float64 BLAS can be
    # far slower on small machines).
    flat = np.ascontiguousarray(samples, dtype=np.float32).ravel()
    power = float(np.dot(flat, flat)) / flat.size
    return 10.0 * math.log10(power) if power > 0.0 else -math.inf


@dataclass(frozen=True, slots=True)
class GateStep:
    """What to do with one block: skip ``skipped`` samples (at ``skip_rate``), then push ``push``."""

    rate: int
    push: tuple[NDArray[np.float32], ...] = ()
    skipped: int = 0
    skip_rate: int = 0
    suspended: bool = False  # the gate closed after this block
    resumed: bool = False  # the gate opened at this block


class EnergyGate:
    """Decides per block whether audio is pushed (pure; one per stream).

    Args:
        threshold_dbfs: a block below this level is silence.
        after_s: silence this long closes the gate (the silence itself is pushed).
        preroll_ms: audio kept while closed and pushed before the block that reopens.
    """

    def __init__(self, *, threshold_dbfs: float, after_s: float, preroll_ms: int) -> None:
        self.threshold_dbfs: Final = threshold_dbfs
        self.after_s: Final = after_s
        self.preroll_ms: Final = preroll_ms
        self.closed = False
        self._quiet = 0  # samples in the current run of silence
        self._ring: deque[NDArray[np.float32]] = deque()
        self._ring_samples = 0
        self._held = 0  # samples withheld since the gate closed (the ring included)
        self._rate = 0
        self.skipped_s = 0.0  # total audio skipped, for metrics

    @property
    def ring_samples(self) -> int:
        return self._ring_samples

    def feed(self, samples: NDArray[np.float32], rate: int) -> GateStep:
        """Take one block of mono float samples at ``rate``."""
        skipped, skip_rate = 0, rate
        if rate != self._rate:
            # A source that changes rate (a device switch): what was withheld at the
            # old rate is skipped as it is; the pre-roll starts over.
            if self.closed and self._held:
                skipped, skip_rate = self._held, self._rate
                self.skipped_s += skipped / self._rate
            self._rate, self._quiet, self._held = rate, 0, 0
            self._ring.clear()
            self._ring_samples = 0
        loud = dbfs(samples) >= self.threshold_dbfs
        if not self.closed:
            self._quiet = 0 if loud else self._quiet + len(samples)
            if self._quiet >= self.after_s * rate:
                self.closed, self._held = True, 0
                return GateStep(rate, (samples,), suspended=True)
            return GateStep(rate, (samples,))
        if not loud:
            self._hold(samples)
            return GateStep(rate, skipped=skipped, skip_rate=skip_rate)
        if skipped:  # closed across a rate change, reopened by the first new block
            return self._reopen(samples, rate, extra=(skipped, skip_rate))
        return self._reopen(samples, rate)

    def interrupt(self) -> GateStep:
        """The source broke: skip what was withheld so far (the gate stays as it is).

        While closed, the held silence comes before the outage, so it is skipped
        now; the pre-roll starts over (it would not run into the next audio).
        """
        if not self.closed or not self._held:
            return GateStep(self._rate)
        skipped, self._held = self._held, 0
        self.skipped_s += skipped / self._rate
        self._ring.clear()
        self._ring_samples = 0
        return GateStep(self._rate, skipped=skipped, skip_rate=self._rate)

    def _reopen(
        self, samples: NDArray[np.float32], rate: int, extra: tuple[int, int] | None = None
    ) -> GateStep:
        preroll = self._take_preroll(rate)
        skipped = self._held - sum(len(p) for p in preroll)
        self.skipped_s += skipped / rate
        self.closed, self._quiet, self._held = False, 0, 0
        if extra is not None:
            # The old-rate span comes first; the (empty) new-rate one adds nothing.
            return GateStep(rate, (*preroll, samples), extra[0], extra[1], resumed=True)
        return GateStep(rate, (*preroll, samples), skipped, rate, resumed=True)

    def _hold(self, samples: NDArray[np.float32]) -> None:
        self._held += len(samples)
        self._ring.append(samples)
        self._ring_samples += len(samples)
        keep = self.preroll_ms * self._rate // 1000
        while self._ring and self._ring_samples - len(self._ring[0]) >= keep:
            self._ring_samples -= len(self._ring.popleft())

    def _take_preroll(self, rate: int) -> tuple[NDArray[np.float32], ...]:
        keep = self.preroll_ms * rate // 1000
        blocks = list(self._ring)
        self._ring.clear()
        self._ring_samples = 0
        excess = sum(len(b) for b in blocks) - keep
        if excess > 0 and blocks:
            blocks[0] = blocks[0][excess:]
        return tuple(b for b in blocks if len(b))
