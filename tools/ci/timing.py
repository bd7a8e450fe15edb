"""Per-test wall time and CPU time, as a pytest plugin: where does a test's time go?

``pytest -p tools.ci.timing --timing-json FILE`` writes one record per test (setup, call
and teardown together): its wall time, the CPU time of this process (every thread,
``time.process_time``), and the CPU time of the child processes it reaped
(``RUSAGE_CHILDREN``). A test whose wall time is far above its CPU time waits on
something (paced audio, a subprocess's sleeps, a timeout): it can share the machine.
A test whose CPU time is close to its wall time is CPU-bound: running it beside
another only slows both.

The numbers are the test's, measured from its own process; under pytest-xdist each
worker writes ``FILE`` with its worker id appended. Nothing here asserts anything.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import time
from collections.abc import Generator
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
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        path = path.with_name(f"{path.stem}.{worker}{path.suffix}")
    config.pluginmanager.register(_Timing(path), "stenograph-timing")
