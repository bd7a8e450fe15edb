"""Wire lag seen from the server's side: how far behind real time a client's bytes arrive.

The same measure for every client design, taken from outside the client: a thread
samples the simulator's established sockets with ``ss -tin`` (the kernel's
``tcp_info``) every ``interval`` seconds and keeps each connection's
``bytes_received``. A paced stream delivers ``rate`` bytes per second, so at a
sample time ``t`` its *implied start* is ``t - bytes / rate``; an on-time stream's
implied start only jitters within one frame period (bytes arrive a frame at a
time), and a stream that falls behind drifts later. The lag of a sample is its
implied start minus the stream's earliest one, minus one frame period (clipped at
0): a lower bound on the stream's lateness at that moment, with one frame of
resolution (it cannot tell 5 ms from 50 ms; it tells 300 ms, and seconds, exactly).

Samples before a stream's first two frames (handshake, ``run-task``) and within a
frame of its last byte (after its audio ended) are left out. A lag a stream had
from its very first frame is invisible (there is nothing earlier to compare with).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from typing import Any

from tools.bench._report import percentiles_ms

_BYTES = re.compile(rb"bytes_received:(\d+)")


class WireSampler:
    """Samples ``bytes_received`` of every connection to ``port`` in a daemon thread.

    ``start()`` begins, ``stop()`` ends it (bounded: it joins the thread for at most
    a few seconds) and returns the analysis. Memory is bounded by the run: one
    (time, bytes) pair per connection per sample.
    """

    def __init__(self, port: int, *, interval: float = 0.5) -> None:
        self.port = port
        self.interval = interval
        self.samples: dict[bytes, list[tuple[float, int]]] = {}
        self.peak_connections = 0
        self.first_seen: float | None = None  # time.monotonic() of the first connection seen
        self.sample_wall_s: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="wire-sampler")

    def start(self) -> None:
        self._thread.start()

    def _sample(self) -> None:
        t0 = time.monotonic()
        try:
            out = subprocess.run(
                ["ss", "-tinH", "state", "established", "sport", "=", f":{self.port}"],
                capture_output=True,
                timeout=5.0,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            self.failures += 1
            return
        t1 = time.monotonic()
        # The kernel's snapshot was taken somewhere inside ss's run (20-40 ms on a busy
        # machine, mostly start-up): date it at the middle, not at the end.
        t = (t0 + t1) / 2
        peer = b""
        count = 0
        for line in out.splitlines():
            if line[:1] not in (b" ", b"\t"):
                fields = line.split()
                peer = fields[-1] if fields else b""
                continue
            m = _BYTES.search(line)
            if m and peer:
                self.samples.setdefault(peer, []).append((t, int(m.group(1))))
                count += 1
        self.peak_connections = max(self.peak_connections, count)
        if count and self.first_seen is None:
            self.first_seen = t
        self.sample_wall_s.append(t1 - t0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def first_audio(self, frame_bytes: float) -> float | None:
        """When the first stream had sent two frames of audio (``time.monotonic()``), if any.

        Connecting (handshakes, task starts, the CLI's start limit) comes before it.
        """
        times = [
            next((t for t, b in series if b >= series[0][1] + 2 * frame_bytes), None)
            for series in self.samples.values()
        ]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def stop(self, *, bytes_per_s: float, frame_s: float) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=10.0)
        return {
            "method": "ss -tin bytes_received on the server's sockets (see tools/bench/_wire.py)",
            "interval_s": self.interval,
            "resolution_ms": round(frame_s * 1000),
            "connections_seen": len(self.samples),
            "peak_connections": self.peak_connections,
            "samples": len(self.sample_wall_s),
            "sample_failures": self.failures,
            "ss_wall_ms_mean": round(
                1000 * sum(self.sample_wall_s) / max(1, len(self.sample_wall_s)), 1
            ),
            "lag_ms": percentiles_ms(lags(self.samples, bytes_per_s, frame_s)),
        }


def lags(
    samples: dict[bytes, list[tuple[float, int]]], bytes_per_s: float, frame_s: float
) -> list[float]:
    """Every usable sample's lag in seconds (see the module docstring)."""
    frame_bytes = bytes_per_s * frame_s
    out: list[float] = []
    for series in samples.values():
        lo, hi = series[0][1], series[-1][1]
        active = [(t, b) for t, b in series if lo + 2 * frame_bytes <= b < hi - frame_bytes]
        if not active:
            continue
        implied = [t - b / bytes_per_s for t, b in active]
        first = min(implied)
        out.extend(max(0.0, x - first - frame_s) for x in implied)
    return out
