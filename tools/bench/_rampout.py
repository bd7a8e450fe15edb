"""The ramp's outputs: the Markdown table (with the ratio to the SDK at each N) and the PNG.

Both read only the ramp's JSON record, so ``python -m tools.bench._rampout ramp.json``
redraws them from a saved run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TARGET_STREAMS = 1000  # issue #11: 1,000 streams per core
TARGET_LATE_MS = 20.0  # ... with p99 send lateness <= 20 ms
TARGET_CPU_MS = 1.0  # ... at <= 1 ms CPU per stream-second
DESIGN_LABELS = {
    "cli": "steno transcribe (CLI)",
    "cli-p2": "steno transcribe --processes 2 (same core)",
    "embedded": "embedding API",
    "sdk": "dashscope SDK, thread per stream",
}

_HEADER = (
    "| N | design | peak conns | wall / audio (a stream) | CPU ms / stream-s | × SDK | KB / stream "
    "| wire lag p99 ms | client late p99 ms | engine lag p99 ms | finals right | errors | status |"
)


def _num(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _stream_wall(step: dict[str, Any]) -> float | None:
    """The worst stream's own wall/audio (a record without it: the streaming one)."""
    value = step.get("stream_wall_per_audio")
    return step.get("streaming_wall_per_audio") if value is None else value


def _late_p99(step: dict[str, Any]) -> float | None:
    late = step.get("client_lateness_ms")
    return None if not late else late.get("p99")


def _engine_p99(step: dict[str, Any]) -> float | None:
    """Engine-added latency p99 (pacer + worst send lag) when the engine reports both."""
    engine = step.get("engine") or {}
    lag = (engine.get("send_lag_p99_ms") or {}).get("max")
    pacer = engine.get("pacer_p99_ms")
    if lag is None and pacer is None:
        return None
    return (lag or 0.0) + (pacer or 0.0)


def table(result: dict[str, Any]) -> str:
    """One row per design per N; ``× SDK`` is the CPU per stream-second over the SDK's."""
    rows = [_HEADER, "|---:|:---|" + "---:|" * 10 + ":---|"]
    sdk = {
        s["streams"]: s.get("cpu_ms_per_stream_s")
        for s in result["steps"]
        if s["design"] == "sdk" and s["status"] != "skipped"
    }
    for step in sorted(result["steps"], key=lambda s: (s["streams"], s["design"])):
        label = DESIGN_LABELS.get(step["design"], step["design"])
        if step["status"] == "skipped":
            rows.append(f"| {step['streams']} | {label} |" + " - |" * 10 + f" {step['reason']} |")
            continue
        cpu, base = step.get("cpu_ms_per_stream_s"), sdk.get(step["streams"])
        ratio = None if cpu is None or not base else cpu / base
        script = step["script"]
        status = (
            step["status"]
            if not step.get("fell_behind")
            else f"fell behind ({step['fell_behind']})"
        )
        rows.append(
            "| "
            + " | ".join(
                [
                    str(step["streams"]),
                    label,
                    str(step["wire"]["peak_connections"]),
                    f"{_num(step['wall_per_audio'])} ({_num(_stream_wall(step))})",
                    _num(cpu),
                    _num(ratio),
                    _num(step.get("mem_kb_per_stream"), "{:.0f}"),
                    _num(step["wire"]["lag_ms"]["p99"], "{:.0f}"),
                    _num(_late_p99(step), "{:.1f}"),
                    _num(_engine_p99(step), "{:.1f}"),
                    f"{script['finals_right']}/{script['finals_expected']}",
                    _num(step.get("errors"), "{}"),
                    status,
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def plot(result: dict[str, Any], path: Path) -> None:
    """Two panels: streams vs p99 lateness, streams vs CPU ms per stream-second.

    One line per design. Lateness is the wire lag (the same measure for every design;
    one frame of resolution), with each design's in-client lateness dashed where it has
    one. The 1,000-stream target and the target levels are marked.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (late_ax, cpu_ax) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for i, design in enumerate(result["settings"]["designs"]):
        steps = [s for s in result["steps"] if s["design"] == design and s["status"] != "skipped"]
        steps.sort(key=lambda s: s["streams"])
        color = f"C{i}"
        label = DESIGN_LABELS.get(design, design)
        # A step with no wire lag (the design never streamed) has no point: never a 0.
        wire = [(s["streams"], s["wire"]["lag_ms"]["p99"]) for s in steps]
        wire = [(n, v) for n, v in wire if v is not None]
        if wire:
            late_ax.plot(*zip(*wire, strict=True), "o-", color=color, label=label)
        inner = [(s["streams"], _late_p99(s)) for s in steps]
        inner = [(n, v) for n, v in inner if v is not None]
        if inner:
            late_ax.plot(*zip(*inner, strict=True), "x--", color=color, alpha=0.6,
                         label=f"{label}: {steps[0]['client_lateness_source']}")  # fmt: skip
        behind = [s for s in steps if s.get("fell_behind")]
        if behind:  # a red ring: the step where the design fell behind
            rings = [(s["streams"], s["wire"]["lag_ms"]["p99"] or _late_p99(s)) for s in behind]
            rings = [(n, v) for n, v in rings if v is not None]
            if rings:
                late_ax.plot(*zip(*rings, strict=True), "o", ms=13, mfc="none", mec="red")
        cpu = [(s["streams"], s.get("cpu_ms_per_stream_s")) for s in steps]
        cpu = [(n, v) for n, v in cpu if v is not None]
        if cpu:
            cpu_ax.plot(*zip(*cpu, strict=True), "o-", color=color, label=label)
    late_ax.set_yscale("symlog", linthresh=1.0)
    late_ax.axhline(TARGET_LATE_MS, color="grey", ls=":", label="target p99 20 ms")
    late_ax.set(xlabel="concurrent streams", ylabel="p99 send lateness (ms)",
                title="Streams vs p99 lateness (solid: wire lag, dashed: in client)")  # fmt: skip
    cpu_ax.axhline(TARGET_CPU_MS, color="grey", ls=":", label="target 1 ms / stream-s")
    cpu_ax.set(xlabel="concurrent streams", ylabel="client CPU ms per stream-second",
               title="Streams vs CPU per stream-second (client on one core)")  # fmt: skip
    for ax in (late_ax, cpu_ax):
        ax.axvline(TARGET_STREAMS, color="red", ls="--", alpha=0.5, label="target: 1,000 streams")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    cpu_ax.set_yscale("log")
    machine = result["machine"]
    loads = [s["loadavg_end"][0] for s in result["steps"] if "loadavg_end" in s]
    fig.suptitle(
        f"{machine.get('cpu_model', '')} · python {machine.get('python')} · "
        f"trio {machine.get('trio')} · {result['started']}"
        + (f" · load avg {min(loads):.1f}–{max(loads):.1f}" if loads else "")
        + " · red ring: fell behind",
        fontsize=8,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Redraw ``ramp.md`` and ``ramp.png`` beside a saved ``ramp.json``."""
    [arg] = sys.argv[1:] if argv is None else argv
    src = Path(arg)
    result = json.loads(src.read_text())
    src.with_suffix(".md").write_text(table(result) + "\n")
    plot(result, src.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
