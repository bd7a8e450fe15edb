"""Per-test wall time and CPU time, as a pytest plugin: where does a test's time go?

``pytest -p tools.ci.timing --timing-json FILE`` writes one record per test (setup, call
and teardown together): its wall time, the CPU time of this process (every thread,
``time.process_time``), and the CPU time of the child processes it reaped
(``RUSAGE_CHILDREN``). A test whose wall time is far above its CPU time waits on
something (paced audio, a subprocess's sleeps, a timeout): it can share the machine.
A test whose CPU time is close to its wall time is CPU-bound: running it beside
another only slows both.

The numbers are the test's, measured from its own process; under pytest-xdist each
worker writes ``FILE`` with its worker id appended, and with ``-m EXPR`` (``make
test`` runs its two parts side by side) the expression too, so the parts' workers do
not overwrite one another's. Nothing here asserts anything.

``python -m tools.ci.timing durations OUT FILE...`` sums such records per test file
into ``OUT`` (``tools/ci/durations.json``: the order ``make test`` runs files in,
:mod:`tools.ci.order`).
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Generator, Iterable, Sequence
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--timing-json",
        default=None,
        help="write each test's wall and CPU seconds to this JSON file",
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _Timing:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        start = time.time()  # wall clock: comparable across the workers' processes
        wall, cpu, children = time.monotonic(), time.process_time(), _children_cpu()
        try:
            return (yield)
        finally:
            self.records.append(
                {
                    "nodeid": item.nodeid,
                    "start_unix": round(start, 3),
                    "wall_s": round(time.monotonic() - wall, 3),
                    "cpu_s": round(time.process_time() - cpu, 3),
                    "children_cpu_s": round(_children_cpu() - children, 3),
                    "worker": os.environ.get("PYTEST_XDIST_WORKER", ""),
                }
            )

    def pytest_sessionfinish(self) -> None:
        self.path.write_text(json.dumps(self.records, indent=1) + "\n", encoding="utf-8")


def pytest_configure(config: pytest.Config) -> None:
    target = config.getoption("--timing-json")
    if target is None:
        return
    path = pathlib.Path(target)
    tags = [
        "-".join(str(config.getoption("markexpr", "") or "").split()),
        os.environ.get("PYTEST_XDIST_WORKER", ""),
    ]
    stem = ".".join([path.stem, *filter(None, tags)])
    path = path.with_name(f"{stem}{path.suffix}")
    config.pluginmanager.register(_Timing(path), "stenograph-timing")


def file_durations(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Wall seconds per test file (its tests' setup, call and teardown), longest first."""
    totals: defaultdict[str, float] = defaultdict(float)
    for record in records:
        totals[str(record["nodeid"]).split("::", 1)[0]] += float(record["wall_s"])
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return {name: round(seconds, 1) for name, seconds in ranked}


def main(argv: Sequence[str] | None = None) -> int:
    """``durations OUT FILE...``: write the per-file wall seconds of timing records."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "durations":
        print("usage: python -m tools.ci.timing durations OUT TIMING_JSON...", file=sys.stderr)
        return 2
    records: list[dict[str, Any]] = []
    for name in args[2:]:
        records += json.loads(pathlib.Path(name).read_text(encoding="utf-8"))
    durations = file_durations(records)
    pathlib.Path(args[1]).write_text(json.dumps(durations, indent=1) + "\n", encoding="utf-8")
    print(f"{len(durations)} files, {sum(durations.values()):.0f} s in all -> {args[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
