"""Shared by the stage modules of ``tools/bench/stages.py``: how a stage measures CPU."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Measure = Callable[[int], float]
"""A stage: ``measure(items)`` processes ``items`` items and returns the CPU seconds spent."""


class Absent(Exception):
    """The stage's code is not in this checkout (the message says what is missing)."""


def cpu_of(fn: Callable[[], object]) -> float:
    """CPU seconds (this process, all threads) that ``fn()`` takes."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def run_trio(main: Callable[[], Any]) -> float:
    """Run ``main`` (async, returning the CPU seconds it measured itself) in a fresh trio run."""
    import trio

    result: float = trio.run(main)
    return result
