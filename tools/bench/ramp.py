"""Three client designs, one server, a ramp of N: JSON, a Markdown table and a PNG.

Usage::

    python -m tools.bench.ramp --streams 100 300 500 1000 --out out/ramp
    python -m tools.bench.ramp --quick --out out/ramp-quick        # N=2, a 3 s clip

For each N of the ramp and each design, in one run:

* ``cli``: ``steno transcribe --jobs N --processes 1`` on N copies of the script's WAV
  file (real time);
* ``cli-p2`` (only when asked for with ``--designs``): the same with ``--processes 2``,
  the parent and both workers pinned to the client's one core. On this two-core
  machine that is the only honest point: it cannot show scaling (one core is the
  simulator's), it shows what sharding costs: a second interpreter, the workers'
  pipes and the parent's relay to the one console, against ``cli`` at the same N.
  The CPU counts every process (the workers are the CLI's reaped children);
* ``embedded``: the embedding API, N streams of ``engine.stream.open_stream`` in one
  process (``tools/bench/capacity.py --script``);
* ``sdk``: the official dashscope SDK, one ``Recognition`` and one thread per stream
  (``tools/bench/sdk_driver.py``),

each against a fresh simulator (``tools/bench/sim_server.py``, scripted recognizer)
pinned with ``taskset -c 1``, the client pinned with ``taskset -c 0``. Every stream
sends the same ~20 s of tone-coded speech from its start (``tools/bench/_speech.py``),
so every final can be checked against the script. A design whose step falls behind
(see ``fell_behind``) is not run at larger N; those steps are recorded as skipped.

Per step, measured the same way for every design: wall time of the client process
over the audio's duration; the client's CPU (``wait4`` rusage: all in, start-up
included) per stream-second, and *marginal* (minus a 1-stream baseline run of the
same design, over the N-1 other streams); peak RSS (``ru_maxrss``) per stream,
marginal the same way; the simulator's CPU; wire lag from the server's sockets
(``tools/bench/_wire.py``); finals scored against the script; errors. Each design
also reports what it can see from inside: the feeders' lateness (``embedded``), the
threads' (``sdk``), and the engine's pacer and send-lag statistics when the engine
has them (``engine.pacer.statistics()``, ``send_lag_p99_ms``; null when absent).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tools.bench import _speech
from tools.bench._rampout import plot, table
from tools.bench._report import lag_summary, machine_info
from tools.bench._sim import ROOT, SimProcess
from tools.bench._wire import WireSampler

DESIGNS = ("cli", "cli-p2", "embedded", "sdk")
DEFAULT_DESIGNS = ("cli", "embedded", "sdk")
CLI_PROCESSES = {"cli": 1, "cli-p2": 2}
CLIENT_CPU, SIM_CPU = "0", "1"
FRAME_MS = 100
BYTES_PER_S = 32000 * (3200 + 8) / 3200  # 16 kHz s16 in 3,200 B frames, WebSocket header 8 B


def client_argv(
    design: str,
    n: int,
    sim: SimProcess,
    work: Path,
    wav: Path,
    script: str,
    cli_start_rate: str | None = None,
) -> list[str]:
    """The client's command line (not yet pinned).

    The CLI keeps the simulator's declared task-start budget (none: all N at once)
    unless ``cli_start_rate`` sets one (``--start-rate``).
    """
    py = sys.executable
    if design in CLI_PROCESSES:
        rate = [] if cli_start_rate is None else ["--start-rate", cli_start_rate]
        return [
            py, "-m", "engine.cli", "-v", "--log-format", "json", "transcribe",
            "--url", sim.url, "--jobs", str(n), "--processes", str(CLI_PROCESSES[design]),
            "--format", "jsonl", "--out", str(work / "out"), "--finish-timeout", "60",
            *rate, *[str(wav)] * n,
        ]  # fmt: skip
    if design == "embedded":
        return [
            py, "-m", "tools.bench.capacity", "--streams", str(n), "--script", script,
            "--sim-url", sim.url, "--sim-pid", str(sim.pid), "--json", str(work / "client.json"),
        ]  # fmt: skip
    return [
        py, "-m", "tools.bench.sdk_driver", "--streams", str(n), "--url", sim.url,
        "--json", str(work / "client.json"), "--script", script,
    ]  # fmt: skip


def run_pinned(
    argv: list[str], work: Path, timeout: float
) -> tuple[int | None, float, os.struct_rusage | None]:
    """Run ``argv`` on CPU 0 with stdout/stderr to files; (exit code or None, wall, rusage).

    Past ``timeout`` the client gets SIGTERM, then SIGKILL 10 s later (exit code None).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env["DASHSCOPE_API_KEY"] = "bench"
    t0 = time.monotonic()
    with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
        proc = subprocess.Popen(
            ["taskset", "-c", CLIENT_CPU, *argv], cwd=ROOT, env=env, stdout=out, stderr=err
        )
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        elapsed = time.monotonic() - t0
        if elapsed > timeout + 10 and timed_out:
            proc.send_signal(signal.SIGKILL)
        elif elapsed > timeout and not timed_out:
            timed_out = True
            proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return (None if timed_out else proc.returncode), wall, usage


def cli_finals(out: Path, n: int) -> tuple[list[list[str]], int]:
    """Each output file's final texts, and the StreamError count, from the JSONL outputs."""
    finals: list[list[str]] = []
    errors = 0
    for path in sorted(out.glob("*.jsonl")):
        texts = []
        for line in path.read_bytes().splitlines():
            event = json.loads(line)
            if event.get("type") == "Final":
                texts.append(str(event.get("text", "")))
            elif event.get("type") == "StreamError":
                errors += 1
        finals.append(texts)
    return finals[:n], errors


_P99 = re.compile(r"p99")


def engine_stats(stderr: Path) -> dict[str, Any]:
    """The engine's own end-of-run statistics from JSON log lines (null when absent).

    ``pacer_p99_ms``: the process's pacer lateness p99 (SEAMS.md seam 3, logged once at
    the end of a run), and ``pacer_lateness_ms`` its p50/p99/max (every paced block's
    hand-over against its deadline: the CLI's send lateness); ``send_lag_p99_ms``: the
    median and the maximum of the streams' send-lag p99s (logged in each session's end
    line); ``start_budget``: the task-start budget the CLI chose (``ratelimit.budget``:
    the simulator's own, none, unless ``--start-rate`` says otherwise).
    """
    pacer: float | None = None
    lateness: dict[str, float] | None = None
    budget: dict[str, Any] | None = None
    lags: list[float] = []
    for line in stderr.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec.get("send_lag_p99_ms"), int | float):
            lags.append(float(rec["send_lag_p99_ms"]))
        event = str(rec.get("event", ""))
        if event == "ratelimit.budget":
            budget = {"source": rec.get("source"), "limits": rec.get("limits")}
        if "pacer" in event:
            for key, value in rec.items():
                if _P99.search(key) and isinstance(value, int | float):
                    pacer = float(value)
            if all(isinstance(rec.get(k), int | float) for k in ("p50_ms", "p99_ms", "max_ms")):
                lateness = {k: round(float(rec[f"{k}_ms"]), 3) for k in ("p50", "p99", "max")}
    return {
        "pacer_p99_ms": pacer,
        "pacer_lateness_ms": lateness,
        "send_lag_p99_ms": lag_summary(lags),
        "start_budget": budget,
    }


def stream_spans(
    samples: dict[bytes, list[tuple[float, int]]], frame_bytes: float
) -> list[tuple[float, float]]:
    """Each connection's (first audio, last byte) times, from the wire sampler's series.

    First audio: the first sample with two frames past the connection's first count
    (its handshake and ``run-task``); last byte: the first sample at its final count.
    Both within one sample interval; a connection that sent no audio is left out.
    """
    spans = []
    for series in samples.values():
        lo, hi = series[0][1], series[-1][1]
        start = next((t for t, b in series if b >= lo + 2 * frame_bytes), None)
        end = next(t for t, b in series if b == hi)
        if start is not None and end >= start:
            spans.append((start, end))
    return spans


def run_step(design: str, n: int, args: argparse.Namespace, wav: Path) -> dict[str, Any]:
    """One design at one N against a fresh simulator: the step's record."""
    work = args.out / "work" / f"{design}-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    audio_s = args.audio_s
    sim = SimProcess(cpus=SIM_CPU)
    sampler = WireSampler(sim.port, interval=args.sample_interval)
    load_start = os.getloadavg()
    try:
        sim_cpu0 = sim.cpu_s() or 0.0
        sampler.start()
        # past the clients' own deadlines (capacity.py: 2 x 30 s connect + audio + 120 s
        # finish), so a client that falls behind still writes what it measured
        timeout = args.step_timeout or audio_s * 2 + 240 + n * 0.05
        code, wall, usage = run_pinned(
            client_argv(design, n, sim, work, wav, args.script, args.cli_start_rate), work, timeout
        )
        t_end = time.monotonic()
        wire = sampler.stop(bytes_per_s=BYTES_PER_S, frame_s=FRAME_MS / 1000)
        first_audio = sampler.first_audio(BYTES_PER_S * FRAME_MS / 1000)
        spans = stream_spans(sampler.samples, BYTES_PER_S * FRAME_MS / 1000)
        sim_cpu = (sim.cpu_s() or 0.0) - sim_cpu0
    finally:
        sim_exit = sim.close()
    record: dict[str, Any] = {
        "design": design,
        "streams": n,
        "exit_code": code,
        "status": "ok" if code == 0 else ("timeout" if code is None else f"exit {code}"),
        "audio_s": round(audio_s, 2),
        "wall_s": round(wall, 3),
        "wall_per_audio": round(wall / audio_s, 3),
        # from the first audio the server saw (start-up and connecting excluded; ±1 sample
        # interval) to the client's exit
        "streaming_wall_per_audio": (
            None if first_audio is None else round((t_end - first_audio) / audio_s, 3)
        ),
        # each stream's own: from its first audio to its last byte (a design that starts
        # its streams one after another, as the CLI does under the task-start limit,
        # is judged per stream; the worst one)
        "stream_wall_per_audio": (
            round(max(end - start for start, end in spans) / audio_s, 3) if spans else None
        ),
        "start_spread_s": (
            round(max(s for s, _ in spans) - min(s for s, _ in spans), 3) if spans else None
        ),
        "connect_s": (
            None
            if first_audio is None or sampler.first_seen is None
            else round(first_audio - sampler.first_seen, 3)
        ),
        "client_cpu_s": None if usage is None else round(usage.ru_utime + usage.ru_stime, 3),
        "client_maxrss_kb": None if usage is None else usage.ru_maxrss,
        "sim_cpu_s": round(sim_cpu, 3),
        "sim_ms_per_stream_s": round(1000 * sim_cpu / (n * audio_s), 3),
        "sim_exit": sim_exit,
        "wire": wire,
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    if record["client_cpu_s"] is not None:
        record["cpu_ms_per_stream_s_all_in"] = round(
            1000 * record["client_cpu_s"] / (n * audio_s), 3
        )
    inner: dict[str, Any] = {}
    if (work / "client.json").exists():
        inner = json.loads((work / "client.json").read_text())
        if design == "embedded":
            inner = inner["steps"][0] if inner.get("steps") else {}
    if design in CLI_PROCESSES:
        finals, errors = cli_finals(work / "out", n)
        record["script"] = _speech.score(finals, n, args.script)
        record["errors"] = errors
        record["engine"] = engine_stats(work / "stderr")
        record["client_lateness_ms"] = record["engine"]["pacer_lateness_ms"]
        record["client_lateness_source"] = "engine pacer: each block's hand-over vs its deadline"
    else:
        record["script"] = inner.get("script") or _speech.score([], n, args.script)
        record["errors"] = inner.get("errors")
        record["engine"] = inner.get("engine")
        record["client_lateness_ms"] = inner.get("lateness_ms")
        record["client_lateness_source"] = (
            "feeder wake-up (capacity.py)" if design == "embedded" else "send_audio_frame return"
        )
        record["in_process_rss_per_stream_kb"] = inner.get("rss_per_stream_kb")
        record["client"] = {k: v for k, v in inner.items() if k not in ("script", "events")}
    if code != 0:
        record["stderr_tail"] = (work / "stderr").read_text(errors="replace")[-2000:]
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return record


def add_marginals(record: dict[str, Any], base: dict[str, Any] | None) -> None:
    """CPU and peak RSS per extra stream over the design's 1-stream baseline run."""
    n = record["streams"]
    ok = base is not None and n > 1 and record["client_cpu_s"] is not None
    if ok and base is not None and base["client_cpu_s"] is not None:
        extra = (n - 1) * record["audio_s"]
        record["cpu_ms_per_stream_s"] = round(
            1000 * (record["client_cpu_s"] - base["client_cpu_s"]) / extra, 3
        )
        record["mem_kb_per_stream"] = round(
            (record["client_maxrss_kb"] - base["client_maxrss_kb"]) / (n - 1), 1
        )
    else:  # no baseline: all in, and the client's own RSS delta where it measures one
        record["cpu_ms_per_stream_s"] = record.get("cpu_ms_per_stream_s_all_in")
        record["mem_kb_per_stream"] = record.get("in_process_rss_per_stream_kb")


def fell_behind(record: dict[str, Any], args: argparse.Namespace) -> str | None:
    """Why this step counts as the design's collapse (None: it kept up well enough)."""
    lag = record["wire"]["lag_ms"]["p99"]
    script = record["script"]
    if record["status"] != "ok":
        return record["status"]
    ratio = record.get("stream_wall_per_audio") or record["streaming_wall_per_audio"]
    if ratio is None or ratio > args.max_wall_ratio:
        return f"a stream's wall/audio {ratio} > {args.max_wall_ratio}"
    if lag is not None and lag > args.max_lag_ms:
        return f"wire lag p99 {lag} ms > {args.max_lag_ms} ms"
    if script["finals_right"] < 0.9 * script["finals_expected"]:
        return f"finals right {script['finals_right']}/{script['finals_expected']}"
    return None


def compare_to_embedded(result: dict[str, Any]) -> None:
    """Each CLI step's CPU per stream-second (all in) over the embedding API's at its N.

    ``cpu_vs_embedded`` (issue #11: the CLI within 1.3x of the embedding, same run, same
    server); null when either step has no CPU figure.
    """
    embedded = {
        s["streams"]: s.get("cpu_ms_per_stream_s_all_in")
        for s in result["steps"]
        if s.get("design") == "embedded"
    }
    for step in result["steps"]:
        if step.get("design") in CLI_PROCESSES and step.get("status") != "skipped":
            cli, base = step.get("cpu_ms_per_stream_s_all_in"), embedded.get(step["streams"])
            step["cpu_vs_embedded"] = round(cli / base, 3) if cli and base else None


def versions() -> dict[str, str]:
    """The versions the three designs run on, and the commit measured."""
    from importlib import metadata

    out = {}
    for dist in ("stenograph", "dashscope", "aiohttp", "websocket-client", "numpy", "soxr"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    out["commit"] = git.stdout.strip() or "unknown"
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.ramp", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--streams", type=int, nargs="+", default=[100, 200, 300, 500, 700, 1000], metavar="N"
    )
    parser.add_argument(
        "--designs", nargs="+", choices=DESIGNS, default=list(DEFAULT_DESIGNS),
        help=f"default: {' '.join(DEFAULT_DESIGNS)}",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("out/ramp"), help="output directory")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N=2, a 3 s clip, no baseline, no rest"
    )
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the 1-stream runs (no marginal CPU and memory)")  # fmt: skip
    parser.add_argument(
        "--keep-going", action="store_true",
        help="run every N of a design even after it fell behind (default: skip the rest)",
    )  # fmt: skip
    parser.add_argument(
        "--cli-start-rate", metavar="RATE",
        help="the CLI's --start-rate (default: the simulator's own budget, none: all at once)",
    )  # fmt: skip
    parser.add_argument("--max-wall-ratio", type=float, default=1.5)
    parser.add_argument("--max-lag-ms", type=float, default=1000.0)
    parser.add_argument(
        "--step-timeout", type=float, help="seconds (default 2 x audio + 240 + N / 20)"
    )
    parser.add_argument("--sample-interval", type=float, default=0.5, help="wire sampler period")
    parser.add_argument("--settle", type=float, default=2.0, help="rest between steps")
    parser.add_argument("--keep-work", action="store_true", help="keep each step's files")
    args = parser.parse_args(argv)
    args.script = "full"
    if args.quick:
        args.streams, args.script, args.settle, args.baseline = [2], "quick", 0.0, False
    if min(args.streams) <= 0:
        parser.error("--streams must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    wav = args.out / "speech.wav"
    args.audio_s = _speech.write_wav(wav, args.script)
    result: dict[str, Any] = {
        "tool": "tools/bench/ramp.py",
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info() | {"versions": versions()},
        "settings": {
            "designs": args.designs,
            "streams": args.streams,
            "audio_s": round(args.audio_s, 2),
            "script": list(_speech.SCRIPTS[args.script]),
            "frame_ms": FRAME_MS,
            "model": _speech.MODEL,
            "pinning": {"client": f"taskset -c {CLIENT_CPU}", "simulator": f"taskset -c {SIM_CPU}"},
            "simulator": "fresh tools.bench.sim_server per step, scripted recognizer",
            "steno_transport": os.environ.get("STENO_TRANSPORT", "(unset: the default)"),
            "cli_start_rate": args.cli_start_rate or "(the simulator's budget: none)",
            "baseline": "1-stream run per design" if args.baseline else None,
            "fell_behind": {"max_wall_ratio": args.max_wall_ratio, "max_lag_ms": args.max_lag_ms},
        },
        "baselines": {},
        "steps": [],
    }
    collapsed: dict[str, str] = {}
    plan = [(d, 1, True) for d in args.designs] if args.baseline else []
    plan += [(d, n, False) for n in args.streams for d in args.designs]
    for k, (design, n, is_base) in enumerate(plan):
        if design in collapsed and not is_base:
            result["steps"].append(
                {"design": design, "streams": n, "status": "skipped", "reason": collapsed[design]}
            )
            continue
        if k:
            time.sleep(args.settle)
        try:
            record = run_step(design, n, args, wav)
        except (OSError, RuntimeError, ValueError) as exc:  # the simulator, taskset, ss
            collapsed[design] = f"failed at N={n}: {type(exc).__name__}: {exc}"
            result["steps"].append({"design": design, "streams": n, "status": "skipped",
                                    "reason": collapsed[design]})  # fmt: skip
            print(f"{design:>8} N={n:<5} {collapsed[design]}", file=sys.stderr, flush=True)
            continue
        if is_base:
            result["baselines"][design] = record
        else:
            add_marginals(record, result["baselines"].get(design))
            why = fell_behind(record, args)
            record["fell_behind"] = why
            if why is not None and not args.keep_going:
                collapsed[design] = f"fell behind at N={n}: {why}"
            result["steps"].append(record)
        print(f"{design:>8} N={n:<5} {record['status']:>8} wall/audio {record['wall_per_audio']}"
              f" wire p99 {record['wire']['lag_ms']['p99']} ms", flush=True)  # fmt: skip
        (args.out / "ramp.json").write_text(json.dumps(result, indent=2) + "\n")
    compare_to_embedded(result)
    (args.out / "ramp.json").write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    (args.out / "ramp.md").write_text(text + "\n")
    print(text)
    try:
        plot(result, args.out / "ramp.png")
    except ImportError:
        print("\nno ramp.png: matplotlib is missing (pip install -e '.[bench]')", file=sys.stderr)
        return 1
    print(f"\nwrote {args.out / 'ramp.json'}, {args.out / 'ramp.md'}, {args.out / 'ramp.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
