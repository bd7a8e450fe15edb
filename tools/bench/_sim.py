"""The simulator as a child process of a benchmark (``tools.bench.sim_server``), optionally pinned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tools.bench._report import process_cpu

ROOT = Path(__file__).resolve().parents[2]


class SimProcess:
    """``python -m tools.bench.sim_server`` in a child process; it stops when its stdin closes.

    Args:
        cpus: a ``taskset -c`` CPU list to pin it to (``None``: not pinned).

    Raises:
        RuntimeError: the simulator exited before it printed its address.
    """

    def __init__(self, cpus: str | None = None) -> None:
        pin = ["taskset", "-c", cpus] if cpus is not None else []
        self.proc = subprocess.Popen(
            [*pin, sys.executable, "-m", "tools.bench.sim_server"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"the simulator did not start (exit code {self.proc.returncode})")
        info = json.loads(line)
        self.pid: int = info["pid"]
        self.port: int = info["port"]
        self.url = f"ws://{info['host']}:{info['port']}/api-ws/v1/inference"

    def cpu_s(self) -> float | None:
        """CPU seconds the simulator used so far (None once it is gone)."""
        try:
            return process_cpu(self.pid)
        except OSError:
            return None

    def close(self) -> str:
        """Stop the simulator; never raises. Returns how: ``eof``, ``sigterm`` or ``sigkill``.

        An overloaded simulator can take long to wind down a thousand connections, so
        end-of-file on stdin gets some seconds, then SIGTERM, then SIGKILL.
        """
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        for how, stop, grace in (
            ("eof", None, 15.0),
            ("sigterm", self.proc.terminate, 10.0),
            ("sigkill", self.proc.kill, None),
        ):
            if stop is not None:
                stop()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            return how
        raise AssertionError("unreachable")  # pragma: no cover - wait() without timeout
