"""Process-level tuning for many streams: the garbage collector's policy, and its pauses.

A process carrying hundreds of streams holds hundreds of thousands of tracked objects
(tasks, cancel scopes, channels, timelines), and CPython's cyclic collector stops the
whole trio loop while it scans them: every frame due meanwhile is sent late by up to
the pause. Measured at 1,000 paced streams (15 s of audio; CPU time of the collecting
thread, on a loaded machine, so pauses read long): the default thresholds
``(700, 10, 10)`` ran 362 young, 33 middle and 3 full collections, the full ones up to
384 ms each, 2.1 s of collector in all (14 µs per frame, ~14 % of the client's CPU);
:data:`FOR_STREAMS` ran 16 young (15 ms each), 1 middle (78 ms) and no full one, 0.32 s
in all (2 µs per frame). This module holds that policy; it is **opt-in** for the
library (an embedder's process is its own to tune): the CLI, the daemon workers and
the benchmarks call :func:`tune_for_streams` at start-up, an embedder may do the same,
or use :func:`tuned_for_streams` around its run.

    previous = tune_for_streams()      # before opening the streams
    ...
    restore(previous)                  # optional: the collector as it was

    with GcPauses() as pauses:         # measure the collector's pauses
        ...
    pauses.statistics()

The policy (:data:`FOR_STREAMS`)
--------------------------------
- **Fewer young collections, and fewer objects promoted.** The first threshold
  counts tracked objects allocated minus freed. A frame's objects die young (by
  reference count) and cost nothing, but objects that live a little (a queued frame,
  an event in a channel) survive two young collections of 700 within milliseconds and
  are promoted to the oldest generation, where they count towards the next *full*
  collection (below). At 10,000 only what lives for seconds is promoted, and young
  collections run 20× less often. Each is longer (it scans every young object alive:
  ~15 ms of CPU at 1,000 streams on the loaded machine): well under the 20 ms lateness
  budget, about once a second.
- **Full collections stay bounded.** CPython runs a full collection only when the
  third threshold's count is reached *and* the objects promoted since the last one
  exceed 25 % of the long-lived heap. A steady process (streams that live on) promotes
  little, so the 25 % rule alone keeps full collections rare; while streams come and
  go, the count thresholds bound how much cyclic garbage of ended streams waits:
  at most about ``t0 * t1 * t2`` net allocations (here 1M objects) between two
  chances. Raising the third threshold to 1,000 (tried) made that ~10⁹: a daemon
  churning streams for weeks would then keep the cycles of every ended stream for
  hours, a leak in all but name. The thresholds here keep the default's shape
  (t1 = 10 young collections per middle one, t2 = 10) with a bigger first step.
- **The start-up heap is frozen, once.** :func:`gc.freeze` moves every object alive
  now (modules, classes, functions, configuration: ~50k objects, ~10 % of a
  1,000-stream heap) to a permanent generation that is never scanned again.
  Frozen cyclic garbage is never collected, so freezing *after* streams started is
  a leak (every ended stream's cycles would stay): only the start-up heap is frozen,
  after a full collection, and only by the first call (a later call, or a heap
  someone froze before, freezes nothing more), so what it can keep is bounded by
  what existed at start-up and never grows.

Every function here changes process-wide state (the collector is one per process):
call them from an entry point, on the main thread, not from library code.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, final

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "FOR_STREAMS",
    "GcPauseStatistics",
    "GcPauses",
    "GcPolicy",
    "GcState",
    "restore",
    "tune_for_streams",
    "tuned_for_streams",
]


class GcPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the cyclic collector runs (see the module's "The policy").

    Attributes:
        thresholds: :func:`gc.set_threshold`'s three thresholds.
        freeze_startup: collect, then :func:`gc.freeze` the heap alive at the call
            (only if nothing is frozen yet).
    """

    thresholds: tuple[int, int, int]
    freeze_startup: bool = True

    def __post_init__(self) -> None:
        if self.thresholds[0] <= 0 or min(self.thresholds) < 0:
            raise ValueError(f"thresholds must be (>0, >=0, >=0), got {self.thresholds}")


FOR_STREAMS: Final = GcPolicy(thresholds=(10_000, 10, 10))
"""The policy for a process carrying many streams (the CLI, the daemon, the benches)."""


class GcState(msgspec.Struct, frozen=True, kw_only=True):
    """The collector's settings before :func:`tune_for_streams`; :func:`restore` takes it.

    Attributes:
        thresholds: the thresholds then.
        froze: whether that call froze the heap (restoring unfreezes it).
    """

    thresholds: tuple[int, int, int]
    froze: bool = False


def tune_for_streams(policy: GcPolicy = FOR_STREAMS) -> GcState:
    """Apply ``policy`` to this process's collector; return the settings it replaced.

    Idempotent: a second call sets the same thresholds and freezes nothing more.
    Call it at start-up, before the streams open: the freeze's full collection is one
    pause of the start-up heap (milliseconds), and what it freezes must be what lives
    as long as the process.

    Not a trio checkpoint; process-wide (see the module).
    """
    previous = gc.get_threshold()
    froze = False
    if policy.freeze_startup and gc.get_freeze_count() == 0:
        gc.collect()  # garbage of the start-up must not become immortal
        gc.freeze()
        froze = True
    gc.set_threshold(*policy.thresholds)
    return GcState(thresholds=previous, froze=froze)


def restore(previous: GcState) -> None:
    """Put the collector back as :func:`tune_for_streams` found it.

    Unfreezes the heap if that call froze it (the frozen objects join the oldest
    generation and are scanned again from the next full collection on).
    Not a trio checkpoint; process-wide.
    """
    gc.set_threshold(*previous.thresholds)
    if previous.froze:
        gc.unfreeze()


@contextmanager
def tuned_for_streams(policy: GcPolicy = FOR_STREAMS) -> Iterator[GcState]:
    """:func:`tune_for_streams` for the block, :func:`restore` after it (even on error)."""
    previous = tune_for_streams(policy)
    try:
        yield previous
    finally:
        restore(previous)


# ------------------------------------------------------------------ the pauses


class GcPauseStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """The collector's pauses per generation since :meth:`GcPauses.start` (or a reset).

    Attributes:
        count: collections per generation (0, 1, 2).
        total_ms: their summed duration per generation.
        max_ms: the longest one per generation.
        collected: objects they freed, all generations.
    """

    count: tuple[int, int, int]
    total_ms: tuple[float, float, float]
    max_ms: tuple[float, float, float]
    collected: int


@final
class GcPauses:
    """Measures every collection's pause through :data:`gc.callbacks`.

    ``start()`` (or entering the ``with`` block) installs the callback, ``stop()``
    (leaving it) removes it; :meth:`statistics` reads the figures at any time and
    :meth:`reset` zeroes them (to measure a window). The callback runs inside the
    collector: a few attribute updates, no allocation that lives on, never raises.

    Args:
        clock: seconds, monotonic (``time.perf_counter``); tests pass their own.
    """

    __slots__ = ("_clock", "_collected", "_count", "_installed", "_max", "_started", "_total")

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._count = [0, 0, 0]
        self._total = [0.0, 0.0, 0.0]
        self._max = [0.0, 0.0, 0.0]
        self._collected = 0
        self._started = 0.0
        self._installed = False

    def __enter__(self) -> GcPauses:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Install the callback (no-op if installed)."""
        if not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True

    def stop(self) -> None:
        """Remove the callback (no-op if not installed); the figures stay readable."""
        if self._installed:
            gc.callbacks.remove(self._on_gc)
            self._installed = False

    def reset(self) -> None:
        """Zero the figures (a collection under way is still counted when it ends)."""
        self._count[:] = [0, 0, 0]
        self._total[:] = [0.0, 0.0, 0.0]
        self._max[:] = [0.0, 0.0, 0.0]
        self._collected = 0

    def statistics(self) -> GcPauseStatistics:
        """A snapshot, durations in milliseconds (rounded to the microsecond)."""
        c, t, m = self._count, self._total, self._max
        return GcPauseStatistics(
            count=(c[0], c[1], c[2]),
            total_ms=(_ms(t[0]), _ms(t[1]), _ms(t[2])),
            max_ms=(_ms(m[0]), _ms(m[1]), _ms(m[2])),
            collected=self._collected,
        )

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        pause = self._clock() - self._started
        generation = info.get("generation", 2)
        if not 0 <= generation <= 2:  # a future CPython's extra generation: count it as full
            generation = 2
        self._count[generation] += 1
        self._total[generation] += pause
        if pause > self._max[generation]:
            self._max[generation] = pause
        self._collected += info.get("collected", 0)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
