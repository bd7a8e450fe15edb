"""How many worker processes a ``steno transcribe``/``translate`` run gets (``--processes``)."""

from __future__ import annotations

import os
from typing import Final

from engine.errors import ConfigError
from engine.ratelimit import max_shares, rate_share

__all__ = ["MAX_PROCESSES", "STREAMS_PER_PROCESS", "plan_processes", "usable_cores"]

#: Without ``--processes``, one more process per this many streams at once (up to the cores).
STREAMS_PER_PROCESS: Final = 16

#: More worker processes than this is a typo, not a machine.
MAX_PROCESSES: Final = 256


def plan_processes(requested: int | None, streams: int, family: str) -> int:
    """How many processes share the files: ``--processes``, never more than the
    ``streams`` at once (the files, at most ``--jobs``), nor than ``family``'s
    task-start burst can be split into (each process needs a whole start of it: the
    shares never add up to more than the budget).

    The default is the usable cores, as soon as there are streams to fill them: one
    process per :data:`STREAMS_PER_PROCESS` streams at once. A worker costs its
    start-up (a second or more of imports before anything streams) and one process
    carries that many streams on a fraction of a core, so a run of a few files
    stays in this process, as fast to start as ever.

    Raises:
        ConfigError: ``--processes`` below 1, or a bad ``STENO_RATE_SHARE``.
    """
    if requested is not None and requested < 1:
        raise ConfigError(
            f"--processes must be at least 1, got {requested}; "
            "fix: e.g. --processes 2 (default: the number of cores)"
        )
    if requested is not None:
        wanted = requested
    else:
        wanted = min(usable_cores(), -(-streams // STREAMS_PER_PROCESS))
    return max(1, min(wanted, streams, max_shares(family, rate_share()), MAX_PROCESSES))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as ``taskset`` sets it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
