"""What the capacity benchmark measures and how it reports it: CPU snapshots, a step's
counters, the JSON record of a step and the Markdown table (``capacity.py`` runs the steps)."""

from __future__ import annotations

import argparse
import collections
import os
import platform
import resource
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import trio

from engine.policy import RateLimit
from engine.ratelimit import StartLimiter

LATE_MS = 20.0  # PERF.md: "kept up" = p99 wake-up lateness under 20 ms
START_LIMIT = RateLimit(1_000_000.0, burst=1_000_000)  # never throttles a benchmark's starts
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ measuring


class CpuSnapshot(NamedTuple):
    wall: float  # time.monotonic()
    client: float  # CPU seconds of this process (all threads)
    sim: float  # CPU seconds of the simulator process
    busy: float  # CPU seconds of the whole machine, all cores
    irq: float  # ... of which in interrupts (hard and soft)


def process_cpu(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) in seconds, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _machine_cpu() -> tuple[float, float]:
    """CPU seconds of the whole machine (all cores) from /proc/stat: (busy, of which irq).

    Interrupt time (irq + softirq, where loopback TCP does much of its work) is charged
    to no process, so it is reported apart from "others".
    """
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK, (irq + softirq) / CLK_TCK


def snapshot(sim_pid: int) -> CpuSnapshot:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy, irq = _machine_cpu()
    return CpuSnapshot(
        time.monotonic(), usage.ru_utime + usage.ru_stime, process_cpu(sim_pid), busy, irq
    )


def rss_kb() -> int:
    """This process's resident set size now, in KiB (``/proc/self/status`` VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0  # pragma: no cover - every Linux process has VmRSS


def percentiles_ms(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of seconds, in milliseconds (None when there are no values)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    a = np.asarray(values) * 1000.0
    p50, p99 = np.percentile(a, [50, 99])
    return {
        "p50": round(float(p50), 3),
        "p99": round(float(p99), 3),
        "max": round(float(a.max()), 3),
    }


# ----------------------------------------------------------------- a step's counters


@dataclass
class StepState:
    """What the consumer and the feeders record during one step."""

    n: int
    index: dict[str, int]
    resolved: list[bool]
    all_resolved: trio.Event = field(default_factory=trio.Event)
    unresolved: int = 0
    opened: int = 0
    t0: list[float | None] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    frames_sent: int = 0
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    final_lags: list[float] = field(default_factory=list)
    audio_lost_ms: int = 0
    gap_reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    error_kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    final_texts: list[list[str]] = field(default_factory=list)

    def resolve(self, i: int) -> None:
        """Stream ``i`` opened its first task, or failed before it could."""
        if not self.resolved[i]:
            self.resolved[i] = True
            self.unresolved -= 1
            if self.unresolved == 0:
                self.all_resolved.set()


def _field(stats: object, *names: str) -> float | None:
    for name in names:
        value = stats.get(name) if isinstance(stats, dict) else getattr(stats, name, None)
        if isinstance(value, int | float):
            return float(value)
    return None


def engine_stats(streams: list[object]) -> dict[str, Any]:
    """The engine's own lateness figures (SEAMS.md seam 3), null on an engine without them.

    ``pacer_p99_ms``: this run's pacer lateness (``engine.pacer.statistics()``);
    ``send_lag_p99_ms``: median and max over the streams' ``send_lag_p99_ms`` (``streams``
    holds each stream's ``statistics()``); ``frames_coalesced``: live frames the streams
    sent joined while behind (null on an engine that does not coalesce).
    """
    try:
        from engine import pacer  # type: ignore[attr-defined,unused-ignore]

        stats = pacer.statistics()
        used = _field(stats, "count")
        pacer_p99 = _field(stats, "p99_ms", "p99") if used else None  # None: nothing paced
    except (ImportError, AttributeError, RuntimeError):
        pacer_p99 = None
    lags = sorted(lag for lag in (_field(s, "send_lag_p99_ms") for s in streams) if lag is not None)
    coalesced = [n for n in (_field(s, "frames_coalesced") for s in streams) if n is not None]
    return {
        "pacer_p99_ms": pacer_p99,
        "send_lag_p99_ms": lag_summary(lags),
        "frames_coalesced": int(sum(coalesced)) if coalesced else None,
    }


def lag_summary(lags: list[float]) -> dict[str, float] | None:
    """The median and the maximum of per-stream p99s (None when there are none)."""
    if not lags:
        return None
    lags = sorted(lags)
    return {"median": lags[len(lags) // 2], "max": lags[-1], "streams": len(lags)}


# ---------------------------------------------------------------------- records


def summarize(
    state: StepState,
    window: tuple[CpuSnapshot, CpuSnapshot] | None,
    phases: dict[str, float],
    *,
    completed: bool,
    frames: int,
    args: argparse.Namespace,
    limiter: StartLimiter,
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> dict[str, Any]:
    """The JSON record of one step."""
    n = state.n
    record: dict[str, Any] = {
        "streams": n,
        "duration_s": args.duration,
        "frame_ms": args.frame_ms,
        "completed": completed,
        "streams_opened": state.opened,
        "loadavg_start": [round(x, 2) for x in load[0]],
        "loadavg_end": [round(x, 2) for x in load[1]],
        **{k: round(v, 3) for k, v in phases.items()},
    }
    if window is not None:
        before, after = window
        span = after.wall - before.wall
        client, sim = after.client - before.client, after.sim - before.sim
        irq = after.irq - before.irq
        others = max(0.0, (after.busy - before.busy) - client - sim - irq)
        sent = n * frames  # the window holds every paced frame of every stream
        audio_s = sent * args.frame_ms / 1000.0  # stream-seconds of audio in the window
        record |= {
            "window_s": round(span, 3),
            "client_cpu_s": round(client, 3),
            "client_cpu_pct": round(100 * client / span, 1),
            "client_ms_per_stream_s": round(1000 * client / audio_s, 3),
            "client_pct_core_per_stream": round(100 * client / audio_s, 4),
            "client_us_per_frame": round(1e6 * client / sent, 1),
            "sim_cpu_s": round(sim, 3),
            "sim_cpu_pct": round(100 * sim / span, 1),
            "sim_ms_per_stream_s": round(1000 * sim / audio_s, 3),
            "sim_us_per_frame": round(1e6 * sim / sent, 1),
            "irq_cpu_pct": round(100 * irq / span, 1),
            "others_cpu_pct": round(100 * others / span, 1),
        }
    lateness_ms = percentiles_ms(state.lateness)
    late = sum(1 for x in state.lateness if x * 1000.0 > LATE_MS)
    finals = state.counts["Final"]
    record |= {
        "frames_expected": n * frames,
        "frames_sent": state.frames_sent,
        "lateness_ms": lateness_ms,
        "frames_late_over_20ms": late,
        "kept_up": (
            completed and state.frames_sent == n * frames and (lateness_ms["p99"] or 0.0) < LATE_MS
        ),
        "events": dict(sorted(state.counts.items())),
        "partials": state.counts["Partial"],
        "finals": finals,
        "events_per_stream_s": round(sum(state.counts.values()) / (n * args.duration), 2),
        "finals_per_stream": round(finals / n, 2),
        "final_lag_ms": percentiles_ms(state.final_lags),
        "errors": sum(state.error_kinds.values()),
        "error_kinds": dict(state.error_kinds),
        "reconnects": state.counts["Reconnecting"],
        "gaps": sum(state.gap_reasons.values()),
        "gap_reasons": dict(state.gap_reasons),
        "audio_lost_ms": state.audio_lost_ms,
        "stream_status": dict(state.statuses),
        "start_limiter": {
            "rate_per_s": START_LIMIT.rate,
            "burst": START_LIMIT.burst,
            "waited_s": round(limiter.waited_s, 3),
        },
    }
    return record


# --------------------------------------------------------------------- output


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "trio": metadata.version("trio"),
        "trio_websocket": metadata.version("trio-websocket"),
        "msgspec": metadata.version("msgspec"),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


_COLUMNS = [
    ("N", "{streams}"),
    ("load1", "{load1:.2f}"),
    ("client %core", "{client_cpu_pct}"),
    ("ms CPU/stream-s", "{client_ms_per_stream_s}"),
    ("%core/stream", "{client_pct_core_per_stream}"),
    ("µs/frame", "{client_us_per_frame}"),
    ("sim %core", "{sim_cpu_pct}"),
    ("sim µs/frame", "{sim_us_per_frame}"),
    ("irq %", "{irq_cpu_pct}"),
    ("others %", "{others_cpu_pct}"),
    ("late p50/p99/max ms", "{late}"),
    ("send lag p99 ms", "{send_lag}"),
    ("GC n0/n1/n2", "{gc_counts}"),
    ("GC max ms", "{gc_max}"),
    ("tick late p99/max ms", "{tick_late}"),
    ("hub round max ms", "{hub_round}"),
    ("preempted", "{preempted}"),
    ("frames sent", "{frames_sent}/{frames_expected}"),
    ("partials", "{partials}"),
    ("finals", "{finals}"),
    ("final lag p50/p99 ms", "{lag}"),
    ("err/reconn/gaps", "{errors}/{reconnects}/{gaps}"),
    ("window s", "{window_s}"),
    ("wall s", "{wall_s:.1f}"),
]


def _fmt(p: dict[str, float | None], keys: tuple[str, ...]) -> str:
    return "/".join("-" if p[k] is None else f"{p[k]:.1f}" for k in keys)


def _stall_cells(r: dict[str, Any]) -> dict[str, str]:
    """The table's cells for a step's stall figures (``-`` where unknown)."""
    stalls = r.get("stalls") or {}
    cells: dict[str, str] = {}
    lag = (r.get("engine") or {}).get("send_lag_p99_ms")
    if lag:
        cells["send_lag"] = f"{lag['median']:.1f}/{lag['max']:.1f}"
    if gc := stalls.get("gc"):
        cells["gc_counts"] = "/".join(str(n) for n in gc["count"])
        cells["gc_max"] = f"{max(gc['max_ms']):.1f}"
    if pacer := stalls.get("pacer"):
        cells["tick_late"] = f"{pacer['tick_late_p99_ms']:.1f}/{pacer['tick_late_max_ms']:.1f}"
    if hub := stalls.get("hub"):
        cells["hub_round"] = f"{hub['longest_round_ms']:.1f}"
    if "preempted" in stalls:
        cells["preempted"] = str(stalls["preempted"])
    return cells


def table(records: list[dict[str, Any]]) -> str:
    """A Markdown table of the steps (paste-able into the README).

    ``send lag p99``: the median and the worst of the streams' p99s; ``GC``: the
    collections in the window per generation, and the longest pause; ``tick late``:
    the pacer ticker's own lateness (the loop held by others); ``hub round``: the read
    hub's longest round; ``preempted``: the kernel's involuntary switches away from
    this process in the window (a busy machine's share of the tail).
    """
    rows = [[title for title, _ in _COLUMNS]]
    for r in records:
        values = collections.defaultdict(
            lambda: "-",
            r,
            load1=r["loadavg_end"][0],
            late=_fmt(r["lateness_ms"], ("p50", "p99", "max")),
            lag=_fmt(r["final_lag_ms"], ("p50", "p99")),
            **_stall_cells(r),
        )
        rows.append([spec.format_map(values) for _, spec in _COLUMNS])
    widths = [max(len(row[c]) for row in rows) for c in range(len(_COLUMNS))]
    lines = [
        "| " + " | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)
