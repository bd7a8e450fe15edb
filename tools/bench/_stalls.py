"""Why the tail is what it is: the collector's pauses and the loop's stalls in a window.

The capacity benchmark's lateness percentiles say *how late* frames were; these say
*why*: every cyclic collection's pause (:class:`engine.runtime.GcPauses`, per
generation), how late the pacer's ticker itself ran (it asks for the loop every
millisecond while streams are paced, so its lateness is how long something else held
the loop), its longest tick and the steps its budget deferred, the client's read hub's
longest round and the rounds its budget cut, and how often the kernel preempted the
process (another process ran: a stall no code here removes). :class:`StallWindow`
starts them at the window's start and reads them at its end; an engine without one of
the sources gives nulls."""

from __future__ import annotations

import gc
import resource
from typing import Any

import msgspec

from engine.runtime import GcPauses


def _read_hub() -> Any:
    """The running trio loop's client read hub, or None (none running, or no hub)."""
    try:
        from adapters.dashscope import _read_hub

        return _read_hub._HUB.get()
    except (ImportError, AttributeError, RuntimeError, LookupError):
        return None


def _pacer() -> Any:
    try:
        from engine import pacer

        return pacer.current_pacer()
    except (ImportError, AttributeError, RuntimeError):
        return None


def _involuntary_switches() -> int:
    """Times the kernel preempted this process so far (``getrusage``'s ``ru_nivcsw``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


class StallWindow:
    """The stall figures of one measured window; use inside the trio run.

    ``pauses`` measures the collector for the whole process (install it once, at
    start-up); :meth:`begin` zeroes what the window reads, :meth:`end` reads it.
    """

    def __init__(self, pauses: GcPauses) -> None:
        self.pauses = pauses
        self._before: dict[str, Any] = {}
        self._switches = 0

    def begin(self) -> dict[str, Any]:
        """Start the window; return the collector's figures until now (the connect phase)."""
        before = gc_record(self.pauses)
        self.pauses.reset()
        self._switches = _involuntary_switches()
        hub = _read_hub()
        if hub is not None:
            hub.longest_round_s = 0.0
            self._before = {"rounds": hub.rounds, "cut_rounds": getattr(hub, "cut_rounds", 0)}
        return before

    def end(self) -> dict[str, Any]:
        """The window's figures: ``gc``, ``pacer`` and ``hub`` (null where unknown).

        Call it after the window's CPU snapshot: it counts the tracked objects (what a
        full collection scans; ``gc.get_objects()`` is itself a pause of that size).
        """
        preempted = _involuntary_switches() - self._switches
        record = gc_record(self.pauses)
        record["tracked_objects"] = len(gc.get_objects())
        return {
            "gc": record,
            "pacer": pacer_record(),
            "hub": self._hub(),
            # the kernel took the core away this often in the window (another process
            # ran): a stall no code of ours can remove, and the reason for long ticks
            # with short collections on a busy machine
            "preempted": preempted,
        }

    def _hub(self) -> dict[str, Any] | None:
        hub = _read_hub()
        if hub is None or not hasattr(hub, "longest_round_s"):
            return None
        return {
            "rounds": hub.rounds - self._before.get("rounds", 0),
            "cut_rounds": hub.cut_rounds - self._before.get("cut_rounds", 0),
            "longest_round_ms": round(hub.longest_round_s * 1000.0, 3),
        }


def gc_record(pauses: GcPauses) -> dict[str, Any]:
    """The collector's pauses per generation, its thresholds and frozen objects now."""
    stats = msgspec.structs.asdict(pauses.statistics())
    stats["thresholds"] = list(gc.get_threshold())
    stats["frozen"] = gc.get_freeze_count()
    return stats


def pacer_record() -> dict[str, Any] | None:
    """The ticker's own lateness (the loop-stall gauge), its longest tick, deferrals."""
    pacer = _pacer()
    if pacer is None or not hasattr(pacer, "tick_lateness"):
        return None
    stats = pacer.statistics()
    return {
        "ticks": stats.ticks,
        "tick_late_p99_ms": stats.tick_late_p99_ms,
        "tick_late_max_ms": stats.tick_late_max_ms,
        "tick_busy_max_ms": stats.tick_busy_max_ms,
        "deferred": stats.deferred,
    }
