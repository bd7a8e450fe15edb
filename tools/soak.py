"""Real-time soak of ``steno daemon``: N streams against the simulator for M minutes.

    python tools/soak.py --streams 8 --minutes 30 --out soak.json

The simulator (scripted recognizer) runs in this process; the daemon runs as a
child process exactly as in production (``python -m engine.cli daemon``,
its key from a file, JSON logs to a file), every stream looping a tone-coded
recording with silences, so the suspend/keep-alive paths and rolling files all
work. Every ``--sample-s`` the daemon's RSS, open file descriptors and threads
are read from ``/proc`` and its ``/metrics`` scraped. At the end it is stopped
with SIGTERM (a graceful drain), and the least-squares **slope** of RSS (MB per
minute) and of open fds (per minute) after a warm-up is printed and written to
JSON with every sample. ``--max-rss-slope`` turns the slope into a pass/fail
(exit 1). Linux only (``/proc``).

Fault mode: ``--drop-every-s S`` makes the simulator drop every connection (no
close frame, a TCP RST) after S seconds of audio (S×10 frames of 100 ms; the
run-task message counts too), so every stream reconnects again and again, as
against a service that cuts long connections (each stream counts a task that
lived half that long as healthy, so it reconnects without growing backoff). The
report then adds the RSS
slope per 1,000 reconnects (a leak per connection shows there, whatever the
rate) and the sockets of the daemon by TCP state (CLOSE-WAIT: a dead
connection's socket nobody closed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import soundfile
import trio

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.recognizers.scripted import ScriptedRecognizer  # noqa: E402
from adapters.recognizers.tonecode import synthesize  # noqa: E402
from adapters.sim.config import SimConfig  # noqa: E402
from adapters.sim.faults import Drop, FaultPlan  # noqa: E402
from adapters.sim.server import open_simulator  # noqa: E402
from engine import logging as steno_logging  # noqa: E402

KEY = "sk-soak-local-simulator"
SENTENCES = ["good morning", "the weather is sunny today", "we will have the budget", "thank you"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    p.add_argument(
        "--warmup-s", type=float, default=None, help="ignored at the start (default 20%%)"
    )
    p.add_argument("--idle", choices=["keepalive", "suspend", "mixed"], default="mixed")
    p.add_argument(
        "--silence-s", type=float, default=12.0, help="silence after each recording loop"
    )
    p.add_argument(
        "--drop-every-s",
        type=float,
        default=None,
        help="fault mode: the simulator drops every connection after this much audio",
    )
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("soak.json"))
    p.add_argument("--max-rss-slope", type=float, default=None, help="fail above this MB/min")
    p.add_argument("--workdir", type=pathlib.Path, default=None, help="keep files here")
    return p.parse_args(argv)


def write_inputs(work: pathlib.Path, args: argparse.Namespace, url: str) -> pathlib.Path:
    speech = synthesize(SENTENCES, 16000)
    audio = np.concatenate([speech, np.zeros(int(args.silence_s * 16000), dtype=np.int16)])
    wav = work / "loop.wav"
    soundfile.write(wav, audio, 16000, subtype="PCM_16")
    (work / "key").write_text(KEY + "\n")
    lines = [
        "[daemon]",
        'listen = "127.0.0.1:0"',
        f'url = "{url}"',
        f'api-key-file = "{work / "key"}"',
        f'output-dir = "{work / "out"}"',
        'log-level = "info"',
        "drain-deadline-s = 30",
    ]
    for n in range(args.streams):
        policy = args.idle if args.idle != "mixed" else ("suspend" if n % 2 else "keepalive")
        lines += [
            "",
            "[[stream]]",
            f'id = "soak-{n}"',
            f'source = {{ kind = "file", path = "{wav}", loop = true }}',
            'outputs = { formats = ["jsonl", "srt", "txt"], rotate = "hour", max-bytes = 1_000_000 }',
            f'idle = {{ policy = "{policy}", after-s = 4, threshold-dbfs = -60, preroll-ms = 300 }}',
        ]
        if args.drop_every_s is not None:
            # A task that lived until its drop counts as healthy, so every reconnect
            # starts from the first backoff step and the buffers do not fill up.
            lines.append(f"restart = {{ healthy-after-s = {min(30.0, args.drop_every_s / 2):g} }}")
    config = work / "daemon.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


_TCP_STATES = {"01": "established", "06": "time_wait", "08": "close_wait", "09": "last_ack"}


def proc_sample(pid: int) -> dict[str, int]:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    sample = {"rss_kb": rss, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads}
    return sample | socket_states(pid)


def socket_states(pid: int) -> dict[str, int]:
    """The process's open TCP sockets by state (``sockets_close_wait`` …; others as ``other``)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # an fd closed while we looked
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    counts = {f"sockets_{name}": 0 for name in (*_TCP_STATES.values(), "other")}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in pathlib.Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    counts[f"sockets_{_TCP_STATES.get(fields[3], 'other')}"] += 1
    return counts


async def scrape(port: int) -> dict[str, float]:
    """Sum every stream's finals, reconnects and lost audio from /metrics."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\n\r\n")
            data = b""
            while chunk := await stream.receive_some(1 << 16):
                data += chunk
    totals: dict[str, float] = {}
    for line in data.partition(b"\r\n\r\n")[2].decode().splitlines():
        for name in (
            "steno_finals_total",
            "steno_reconnects_total",
            "steno_audio_lost_seconds_total",
        ):
            if line.startswith(name + "{"):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points; None with fewer than 3."""
    if len(points) < 3:
        return None
    x, y = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


async def wait_for_port(log: pathlib.Path, proc: trio.Process) -> int:
    """The daemon's HTTP port, from its JSON log file."""
    with trio.fail_after(30):
        # Another process's log file: nothing to wait on but the file itself.
        while True:
            if proc.returncode is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode}; see {log}")
            for line in (await trio.Path(log).read_text()).splitlines():
                if '"daemon.http.listening"' in line:
                    return int(json.loads(line)["port"])
            await trio.sleep(0.1)


async def soak(args: argparse.Namespace, work: pathlib.Path) -> dict[str, Any]:
    recognizer = ScriptedRecognizer.tone()
    faults = None
    if args.drop_every_s is not None:
        # after_frames counts the client's messages: run-task, then 100 ms frames.
        drop = Drop(after_frames=max(2, round(args.drop_every_s * 10) + 1))
        faults = FaultPlan(faults=(drop,), seed=17)
    async with open_simulator(SimConfig(api_keys=[KEY]), recognizer, faults=faults) as sim:
        config = await trio.to_thread.run_sync(write_inputs, work, args, str(sim.inference_url))
        log = work / "daemon.log"
        env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
        env["PYTHONPATH"] = str(ROOT)
        log_file = await trio.to_thread.run_sync(open, log, "wb")
        with log_file:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "engine.cli", "daemon", str(config)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            port = await wait_for_port(log, proc)
            samples: list[dict[str, Any]] = []
            t0 = time.monotonic()
            deadline = t0 + args.minutes * 60
            while True:
                now = time.monotonic()
                sample: dict[str, Any] = {"t_s": round(now - t0, 3)}
                sample.update(await trio.to_thread.run_sync(proc_sample, proc.pid))
                sample.update(await scrape(port))
                samples.append(sample)
                if now >= deadline:
                    break
                await trio.sleep(min(args.sample_s, max(0.0, deadline - now)))
            proc.send_signal(signal.SIGTERM)  # a graceful drain
            with trio.fail_after(60):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()
    await recognizer.aclose()
    warmup = args.warmup_s if args.warmup_s is not None else 0.2 * args.minutes * 60
    steady = [s for s in samples if s["t_s"] >= warmup] or samples
    last = samples[-1]
    reconnects = [s.get("steno_reconnects_total", 0.0) for s in steady]
    per_reconnect = (
        slope([(r, s["rss_kb"] / 1024) for r, s in zip(reconnects, steady, strict=True)])
        if reconnects[-1] - reconnects[0] >= 10
        else None  # too few reconnects after warm-up for a slope
    )
    return {
        "streams": args.streams,
        "drop_every_s": args.drop_every_s,
        "minutes": args.minutes,
        "idle": args.idle,
        "warmup_s": warmup,
        "exit_code": proc.returncode,
        "rss_mb_start": round(steady[0]["rss_kb"] / 1024, 2),
        "rss_mb_end": round(last["rss_kb"] / 1024, 2),
        "rss_slope_mb_per_min": slope([(s["t_s"] / 60, s["rss_kb"] / 1024) for s in steady]),
        # A leak keeps its slope; allocator warm-up flattens: compare the second half.
        "rss_slope_second_half_mb_per_min": slope(
            [(s["t_s"] / 60, s["rss_kb"] / 1024) for s in steady[len(steady) // 2 :]]
        ),
        "rss_slope_mb_per_1000_reconnects": (
            None if per_reconnect is None else per_reconnect * 1000
        ),
        "fd_slope_per_min": slope([(s["t_s"] / 60, s["fds"]) for s in steady]),
        "close_wait_max": max(s["sockets_close_wait"] for s in samples),
        "fds_max": max(s["fds"] for s in samples),
        "threads_max": max(s["threads"] for s in samples),
        "finals": last.get("steno_finals_total", 0.0),
        "reconnects": last.get("steno_reconnects_total", 0.0),
        "audio_lost_s": last.get("steno_audio_lost_seconds_total", 0.0),
        "samples": samples,
    }


def report(result: dict[str, Any]) -> str:
    def fmt(value: float | None, unit: str) -> str:
        return "n/a (too few samples)" if value is None else f"{value:+.3f} {unit}"

    return "\n".join(
        [
            f"soak: {result['streams']} streams, {result['minutes']:g} min, idle={result['idle']}, "
            + (
                f"a drop every {result['drop_every_s']:g} s of audio, "
                if result["drop_every_s"] is not None
                else "no faults, "
            )
            + f"exit {result['exit_code']}",
            f"  RSS {result['rss_mb_start']} → {result['rss_mb_end']} MB, "
            f"slope {fmt(result['rss_slope_mb_per_min'], 'MB/min')} (after {result['warmup_s']:.0f} s warm-up), "
            f"second half {fmt(result['rss_slope_second_half_mb_per_min'], 'MB/min')}",
            "  RSS per 1,000 reconnects "
            + (
                fmt(result["rss_slope_mb_per_1000_reconnects"], "MB")
                if result["drop_every_s"] is not None
                else "n/a (no faults)"
            ),
            f"  open fds max {result['fds_max']}, slope {fmt(result['fd_slope_per_min'], '/min')}; "
            f"sockets in CLOSE-WAIT max {result['close_wait_max']}; "
            f"threads max {result['threads_max']}",
            f"  finals {result['finals']:.0f}, reconnects {result['reconnects']:.0f}, "
            f"audio lost {result['audio_lost_s']:.3f} s",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    steno_logging.configure(json=False, level=logging.WARNING)  # the simulator's own logs
    if not pathlib.Path("/proc/self/status").exists():
        print("soak: needs Linux /proc", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            work = args.workdir
        else:
            work = pathlib.Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="steno-soak-"))
            )
        result = trio.run(soak, args, work)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"  samples: {args.out}")
    failed = result["exit_code"] != 0
    limit = args.max_rss_slope
    if limit is not None and (result["rss_slope_mb_per_min"] or 0.0) > limit:
        print(f"soak: RSS slope above {limit} MB/min", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
