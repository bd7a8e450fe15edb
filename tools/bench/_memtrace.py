"""Where a benchmark's memory goes: tracemalloc diffs by line and file, live objects by type.

Both views compare two points of one run (``before``, ``after``) and divide by the
streams added between them, so one-time costs (imports, arenas, the first stream)
cancel out. Tracing costs memory of its own: read the RSS of an untraced run.
"""

from __future__ import annotations

import gc
import linecache
import sys
import tracemalloc
from collections import Counter
from typing import Any

import trio

__all__ = [
    "TypeCensus",
    "by_file",
    "by_line",
    "by_owner",
    "census",
    "census_diff",
    "count_tasks",
    "gc_tracked",
    "rss_peak_kb",
    "settle",
]

TypeCensus = dict[str, tuple[int, int]]
"""Live gc-tracked objects by type name: ``(count, bytes)`` (``sys.getsizeof``, shallow)."""


async def settle(seconds: float) -> None:
    """Let ``seconds`` of the run pass, then collect garbage (before a measurement)."""
    await trio.sleep(seconds)
    gc.collect()


def gc_tracked() -> int:
    """Objects the cyclic garbage collector tracks now, after a full collection.

    Every collection of the oldest generation scans all of them, so their number per
    stream sets the cost of the collector's longest pauses (not the bytes: a tracked
    ``set`` and a tracked ``list`` cost it the same). Take it before a tracemalloc
    snapshot or a census: both leave tracked objects of their own.
    """
    gc.collect()
    return len(gc.get_objects())


def count_tasks() -> Counter[str]:
    """Every task of this trio run (the tree under the root task), by name."""
    todo = [trio.lowlevel.current_root_task()]
    count: Counter[str] = Counter()
    while todo:
        task = todo.pop()
        if task is None:
            continue
        count[task.name.rsplit(".", 1)[-1]] += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


def _ours_only(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    """Without the measurement's own allocations (this module's census, say)."""
    return snapshot.filter_traces([tracemalloc.Filter(False, __file__)])


def _where(frame: tracemalloc.Frame) -> str:
    return f"{frame.filename.split('/work/')[-1]}:{frame.lineno}"


def by_line(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int = 30
) -> list[dict[str, Any]]:
    """The ``top`` lines that grew most from ``before`` to ``after``, per stream."""
    rows = []
    for stat in _ours_only(after).compare_to(_ours_only(before), "lineno")[:top]:
        frame = stat.traceback[0]
        rows.append(
            {
                "where": _where(frame),
                "code": linecache.getline(frame.filename, frame.lineno).strip()[:70],
                "bytes_per_stream": round(stat.size_diff / n),
                "blocks_per_stream": round(stat.count_diff / n, 2),
            }
        )
    return rows


def by_file(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int = 15
) -> tuple[float, dict[str, int]]:
    """Traced KiB per stream in all, and the ``top`` files' bytes per stream."""
    stats = _ours_only(after).compare_to(_ours_only(before), "filename")
    total = round(sum(stat.size_diff for stat in stats) / 1024 / n, 1)
    files = {
        stat.traceback[0].filename.split("/work/")[-1]: round(stat.size_diff / n)
        for stat in stats[:top]
    }
    return total, files


def _ours(frame: tracemalloc.Frame) -> bool:
    name = frame.filename
    return not (name.startswith("<") or "site-packages" in name or "/lib/python3" in name)


def by_owner(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int = 40
) -> list[dict[str, Any]]:
    """Growth by the innermost line of *our* code on each allocation's stack, per stream.

    With ``tracemalloc.start(depth)`` for a depth of 6 or more, the trio objects a
    line makes (a task's coroutine, a cancel scope's status, a channel's state) are
    charged to the engine or adapter line that asked for them.
    """
    sizes: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for stat in _ours_only(after).compare_to(_ours_only(before), "traceback"):
        frames = list(reversed(stat.traceback))  # tracemalloc lists the oldest frame first
        owner = next((f for f in frames if _ours(f)), frames[0])
        where = _where(owner)
        sizes[where] += stat.size_diff
        blocks[where] += stat.count_diff
    return [
        {
            "where": where,
            "bytes_per_stream": round(size / n),
            "blocks_per_stream": round(blocks[where] / n, 2),
        }
        for where, size in sizes.most_common(top)
    ]


def census() -> TypeCensus:
    """Every live object reachable from the gc's tracked objects, by type.

    Objects the gc does not track (``bytes``, ``str``, floats, msgspec Structs and
    tuples holding only such things) are found through the tracked objects that
    refer to them, and counted once each.
    """
    gc.collect()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    tracked = gc.get_objects()
    seen = {id(obj) for obj in tracked}
    todo = list(tracked)
    while todo:
        obj = todo.pop()
        name = type(obj).__qualname__
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
        for ref in gc.get_referents(obj):
            if id(ref) not in seen and not gc.is_tracked(ref):
                seen.add(id(ref))
                todo.append(ref)
    return {name: (counts[name], sizes[name]) for name in counts}


def census_diff(
    before: TypeCensus, after: TypeCensus, n: int, top: int = 25
) -> list[dict[str, Any]]:
    """The ``top`` types whose live bytes grew most, per stream (count and bytes)."""
    rows = []
    for name, (count, size) in after.items():
        count0, size0 = before.get(name, (0, 0))
        rows.append((size - size0, count - count0, name))
    rows.sort(reverse=True)
    return [
        {"type": name, "bytes_per_stream": round(size / n), "objects_per_stream": round(k / n, 2)}
        for size, k, name in rows[:top]
    ]


def rss_peak_kb() -> int:
    """This process's peak resident set size so far, in KiB (``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0  # pragma: no cover - every Linux process has VmHWM
