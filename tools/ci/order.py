"""Longest test files first: the order in which ``make test`` hands files to its workers.

pytest-xdist with ``--dist loadfile`` gives each worker a whole file at a time, in the
order the files were collected (with ``--no-loadscope-reorder``; by default it sorts
them by their number of tests, which put the suite's three longest files, one test
each, last, so one worker ran them alone at the end while the other sat idle). With
the longest files first (longest-processing-time scheduling) the short ones fill in
around them and the workers finish together.

How long a file takes comes from ``tools/ci/durations.json``: seconds of wall time per
file, as :mod:`tools.ci.timing` measured them (``python -m tools.ci.timing durations``
rewrites it from a run's ``--timing-json`` files). A file it does not know yet counts
as the median of those it knows. An old or missing file only costs balance, never a
test: the order changes, not what runs.
"""

from __future__ import annotations

import json
import pathlib
import statistics
from collections.abc import Mapping, Sequence
from typing import Final

__all__ = ["DURATIONS", "load_durations", "longest_first"]

DURATIONS: Final = pathlib.Path(__file__).with_name("durations.json")
"""The recorded seconds per test file (relative to the repository root)."""


def load_durations(path: pathlib.Path = DURATIONS) -> dict[str, float]:
    """The recorded seconds per file; empty if the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def longest_first(files: Sequence[str], durations: Mapping[str, float]) -> list[int]:
    """The indices of ``files`` (one per collected test) ordered longest file first.

    Stable: the tests of one file keep their order and stay together, and files of
    equal weight keep the order they were collected in. A file missing from
    ``durations`` weighs the median of the known ones present (0 if none is known).
    """
    known = [durations[f] for f in dict.fromkeys(files) if f in durations]
    default = statistics.median(known) if known else 0.0
    first_seen = {f: i for i, f in reversed(list(enumerate(files)))}
    return sorted(
        range(len(files)),
        key=lambda i: (-durations.get(files[i], default), first_seen[files[i]], i),
    )
