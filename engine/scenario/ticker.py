"""The run's clock work, once a second: activity samples, abort checks, history, progress.

:class:`Ticker` samples ``sessions_active`` per scenario, evaluates ``abort-on-fail``
thresholds (after their ``delay-abort-eval``) and cancels the executors on a breach,
appends each ``history-interval``'s rows to ``history.csv`` (one write per interval,
so a crash leaves a valid prefix) with the client's CPU per stream-second and RSS,
and draws the progress line on a terminal (or writes it to a status file that a
``--processes`` parent sums: :func:`progress_line`).
"""

from __future__ import annotations

import os
import resource
from typing import TYPE_CHECKING, TextIO

import msgspec
import trio

from engine.scenario.lifecycle import Lifecycle
from engine.scenario.report import ThresholdDef, Window, history_csv, judge
from engine.scenario.spec import ScenarioFile, seconds

if TYPE_CHECKING:
    import pathlib

    from engine.scenario.metrics import Recorder

__all__ = ["Progress", "Ticker", "progress_line"]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # not Linux: the peak is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000


class Ticker:
    """Once a second: activity samples, progress, abort checks; per interval: history."""

    def __init__(
        self,
        file: ScenarioFile,
        recorder: Recorder,
        active: dict[str, int],
        defs: list[ThresholdDef],
        history: pathlib.Path,
        progress: TextIO | None,
    ) -> None:
        self.file = file
        self.recorder = recorder
        self.active = active
        self.phases: dict[str, Lifecycle] = {s.name: Lifecycle() for s in file.scenarios}
        self.abort_defs = [d for d in defs if d.abort_on_fail]
        self.history_path = history
        self.progress = progress
        self.status: pathlib.Path | None = None  # a status file for a --processes parent
        self.windows: list[Window] = []
        self.aborted: str | None = None
        self.interval = seconds(file.run.history_interval)
        self._stream_s = 0.0
        self._cpu = _cpu_s()

    async def run(self, start: float, stop: trio.CancelScope) -> None:
        tick = 0
        next_cut = self.interval
        while True:
            tick += 1
            await trio.sleep_until(start + tick)
            elapsed = trio.current_time() - start
            for s in self.file.scenarios:
                n = self.active.get(s.name, 0)
                if n or elapsed >= seconds(s.start_time):
                    self.recorder.observe("sessions_active", s.name, n)
                self._stream_s += n
            if self.abort_defs and self.aborted is None:
                self._check_abort(elapsed, stop)
            if elapsed + 1e-6 >= next_cut:
                self.cut(next_cut)
                next_cut += self.interval
            if self.progress is not None or self.status is not None:
                self._draw(elapsed)

    def _check_abort(self, elapsed: float, stop: trio.CancelScope) -> None:
        due = [d for d in self.abort_defs if elapsed >= d.delay_abort_eval_s]
        verdicts = judge(due, self.recorder.states(), duration_s=elapsed)
        for key, vs in verdicts.items():
            for v in vs:
                if not v.ok:
                    self.aborted = f"{key}: {v.threshold} failed (abort-on-fail)"
                    stop.cancel()
                    return

    def cut(self, t: float) -> None:
        cpu = _cpu_s()
        if self._stream_s > 0:
            self.recorder.observe("cpu_per_stream_s", "", (cpu - self._cpu) * 1000 / self._stream_s)
        self.recorder.observe("rss_mb", "", _rss_mb())
        self._cpu, self._stream_s = cpu, 0.0
        window = Window(round(t, 3), self.recorder.cut())
        self.windows.append(window)
        with open(self.history_path, "a", encoding="utf-8") as f:
            f.write(history_csv([window], header=False))

    def snapshot(self, elapsed: float) -> Progress:
        """What the progress line shows (and a ``--processes`` parent reads)."""
        fpd = [
            t.percentile_units(95)
            for s in self.file.scenarios
            if (t := self.recorder.trend("first_package_delay", s.name)) is not None
        ]
        p95 = max((v for v in fpd if v is not None), default=None)
        return Progress(
            elapsed=round(elapsed, 1),
            active=dict(self.active),
            phases={name: life.phase.value for name, life in self.phases.items()},
            started=self.recorder.count("sessions_started"),
            errors=self.recorder.count("errors"),
            dropped=self.recorder.count("sessions_dropped"),
            p95_first_package_delay_ms=None if p95 is None else p95 / 1000,
        )

    def _draw(self, elapsed: float) -> None:
        snapshot = self.snapshot(elapsed)
        if self.status is not None:
            tmp = self.status.with_suffix(".tmp")
            tmp.write_bytes(msgspec.json.encode(snapshot))
            os.replace(tmp, self.status)  # readers never see half a file
        if self.progress is not None:
            self.progress.write(progress_line([snapshot]))
            self.progress.flush()


class Progress(msgspec.Struct, frozen=True):
    """One process's live numbers, once a second."""

    elapsed: float
    active: dict[str, int]
    phases: dict[str, str]
    started: int
    errors: int
    dropped: int
    p95_first_package_delay_ms: float | None


def progress_line(snapshots: list[Progress]) -> str:
    """The terminal's progress line for one process, or the sum of several (segments)."""
    active: dict[str, int] = {}
    for p in snapshots:
        for name, n in p.active.items():
            active[name] = active.get(name, 0) + n
    phases = snapshots[0].phases if len(snapshots) == 1 else {}
    parts = [
        f"{name} {n}" + (f" {phases[name]}" if name in phases else "") for name, n in active.items()
    ]
    p95s = [
        p.p95_first_package_delay_ms for p in snapshots if p.p95_first_package_delay_ms is not None
    ]
    p95 = f"{max(p95s):.0f}ms" if p95s else "-"
    label = "p95" if len(snapshots) == 1 else f"max p95 of {len(snapshots)}"
    return (
        f"\r\x1b[K{max(p.elapsed for p in snapshots):5.0f}s  active: {', '.join(parts) or '0'}  "
        f"started {sum(p.started for p in snapshots)}  {label} first_package_delay {p95}  "
        f"errors {sum(p.errors for p in snapshots)}  dropped {sum(p.dropped for p in snapshots)}"
    )
