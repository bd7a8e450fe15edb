"""Simulator capacity: N paced sessions from a cheap client against ``steno simulate``.

Usage::

    python -m tools.bench.simulator --sessions 500 1000 2000 3000 --duration 15 --json out.json

Each step (one N) starts ``steno simulate --recognizer scripted`` (``--processes P``)
pinned to one core (``--sim-cpu``), and opens N ``/api-ws/v1/inference`` sessions from
this process, pinned to the other core (``--client-cpu``). The client is built to cost
little, so the simulator is what is measured:

* every audio frame is **prebuilt** once: tone-coded speech (the scripted recognizer's
  vocabulary), cut into ``--frame-ms`` frames, each framed and masked as a client
  WebSocket binary message; a session starts at its own point of that loop;
* **one pacer task** wakes every ``--tick-ms`` and writes each frame that came due
  with a plain non-blocking ``socket.send()`` (sessions' phases spread evenly over one
  frame period); a frame the kernel did not take whole keeps its tail, written first
  at the session's next due time (counted as ``stalls``);
* one reader task per session waits for its socket, splits server frames and decodes
  only the result events' JSON (msgspec), to count events and time the results.

Measured per step: the simulator's CPU (its process and children, ``/proc``) per
received frame, from the window's start until every task finished (a simulator that
falls behind does the window's work later; if some never finish within
``--finish-timeout`` the figure is a lower bound, shown with ``≥``), and its % of one
core over the window;
the client's CPU;
result lag — from the due time of the frame holding a result's last audio to the
result's arrival — for partials (end of the last word) and finals (``end_time``; it
includes the recognizer's 700 ms end-of-sentence silence); pacer lateness; events by
name. The machine is shared and noisy: compare steps of one run, not runs.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import trio

from adapters.recognizers.tonecode import synthesize
from tools.bench._report import machine_info, percentiles_ms

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000
MODEL = "paraformer-realtime-v2"
SENTENCES = ["good morning", "the weather today is sunny", "the train leaves at seven", "thank you"]
_BANNER = re.compile(rb"listening on ws://[^:]+:(\d+)/")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


# ------------------------------------------------------------------ wire helpers


def client_frame(payload: bytes, *, text: bool = False) -> bytes:
    """One masked client WebSocket message (FIN set), RFC 6455 §5.2."""
    head = bytearray([0x81 if text else 0x82])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 1 << 16:
        head += struct.pack("!BH", 0x80 | 126, n)
    else:
        head += struct.pack("!BQ", 0x80 | 127, n)
    key = os.urandom(4)
    pad = -n % 4
    data = np.frombuffer(payload + b"\0" * pad, dtype=np.uint32)
    masked: bytes = (data ^ np.frombuffer(key, dtype=np.uint32)[0]).tobytes()[:n]
    return bytes(head) + key + masked


def _command(action: str, task_id: str, payload: dict[str, Any]) -> bytes:
    header = {"action": action, "task_id": task_id, "streaming": "duplex"}
    return client_frame(msgspec.json.encode({"header": header, "payload": payload}), text=True)


def run_task(task_id: str) -> bytes:
    params = {"sample_rate": RATE, "format": "pcm", "heartbeat": True}
    return _command(
        "run-task",
        task_id,
        {
            "task_group": "audio",
            "task": "asr",
            "function": "recognition",
            "model": MODEL,
            "parameters": params,
            "input": {},
        },
    )


def finish_task(task_id: str) -> bytes:
    return _command("finish-task", task_id, {"input": {}})


class _Sentence(msgspec.Struct):
    end_time: int | None = None
    sentence_end: bool = False
    heartbeat: bool = False
    words: list[_Word] = []


class _Word(msgspec.Struct):
    end_time: int = 0


class _Output(msgspec.Struct):
    sentence: _Sentence | None = None


class _Payload(msgspec.Struct):
    output: _Output | None = None


class _Header(msgspec.Struct):
    event: str = ""


class _Event(msgspec.Struct):
    header: _Header
    payload: _Payload | None = None


_decode_event = msgspec.json.Decoder(_Event).decode


def audio_frames(frame_ms: int) -> list[bytes]:
    """The tone-coded sentences as prebuilt masked binary messages, one per frame."""
    spf = RATE * frame_ms // 1000
    samples = synthesize(SENTENCES, RATE)
    pcm = np.concatenate([samples, np.zeros(-len(samples) % spf, np.int16)]).astype("<i2")
    raw = pcm.tobytes()
    return [client_frame(raw[i : i + 2 * spf]) for i in range(0, len(raw), 2 * spf)]


# ------------------------------------------------------------------ a session


@dataclass(eq=False)
class Session:
    """One client connection: its socket, its place in the audio loop, its counters."""

    sock: socket.socket
    offset: int
    task_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    t0: float = 0.0  # due time of the task's first audio frame
    pending: bytes = b""  # the unsent tail of a frame the kernel took part of
    buf: bytearray = field(default_factory=bytearray)
    started: trio.Event = field(default_factory=trio.Event)
    finished: trio.Event = field(default_factory=trio.Event)
    failed: str | None = None


@dataclass
class Step:
    """A step's counters."""

    frame_s: float
    events: Counter[str] = field(default_factory=Counter)
    partial_lags: list[float] = field(default_factory=list)
    final_lags: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    frames: int = 0
    stalls: int = 0
    window: tuple[float, float] = (0.0, float("inf"))


async def _recv(sock: socket.socket) -> bytes:
    while True:
        try:
            return sock.recv(1 << 16)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)


async def connect(host: str, port: int, offset: int) -> Session:
    """TCP connect, HTTP upgrade; the session's socket is non-blocking from here on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.connect((host, port))
    except BlockingIOError:
        await trio.lowlevel.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            raise OSError(err, os.strerror(err)) from None
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = (
        f"GET /api-ws/v1/inference HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Authorization: Bearer bench\r\n\r\n"
    )
    await _send_all(sock, request.encode())
    session = Session(sock, offset)
    while b"\r\n\r\n" not in session.buf:
        data = await _recv(sock)
        if not data:
            sock.close()
            raise ConnectionError("the simulator closed during the upgrade")
        session.buf += data
    head, _, rest = bytes(session.buf).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(f"upgrade refused: {head.splitlines()[0]!r}")
    session.buf = bytearray(rest)
    return session


def _frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Split whole server messages (unmasked, unfragmented) off the front of ``buf``."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    end = len(buf)
    while end - pos >= 2:
        opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
        head = 2
        if n == 126:
            if end - pos < 4:
                break
            (n,) = struct.unpack_from("!H", buf, pos + 2)
            head = 4
        elif n == 127:
            if end - pos < 10:
                break
            (n,) = struct.unpack_from("!Q", buf, pos + 2)
            head = 10
        if end - pos < head + n:
            break
        out.append((opcode, bytes(buf[pos + head : pos + head + n])))
        pos += head + n
    del buf[:pos]
    return out


async def read_loop(session: Session, step: Step) -> None:
    """Count and time every event of one session until its task ends or the socket closes."""
    sock = session.sock
    spf_s = step.frame_s
    frame_ms = round(spf_s * 1000)
    while True:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            continue
        except OSError as exc:
            session.failed = f"socket error: {exc}"
            break
        if not data:
            session.failed = session.failed or "closed"
            break
        now = trio.current_time()
        session.buf += data
        for opcode, payload in _frames(session.buf):
            if opcode == 0x8:
                session.failed = session.failed or "close frame"
                session.finished.set()
                session.started.set()
                return
            if opcode != 0x1:
                continue
            event = _decode_event(payload)
            name = event.header.event
            if name == "result-generated":
                out = event.payload.output if event.payload else None
                sentence = out.sentence if out else None
                if sentence is None or sentence.heartbeat:
                    step.events["heartbeat"] += 1
                    continue
                in_window = step.window[0] <= now <= step.window[1]
                if sentence.sentence_end and sentence.end_time is not None:
                    step.events["final"] += 1
                    if in_window:
                        k = max(sentence.end_time - 1, 0) // frame_ms
                        step.final_lags.append(now - (session.t0 + k * spf_s))
                else:
                    step.events["partial"] += 1
                    if in_window and sentence.words:
                        k = max(sentence.words[-1].end_time - 1, 0) // frame_ms
                        step.partial_lags.append(now - (session.t0 + k * spf_s))
                continue
            step.events[name] += 1
            if name == "task-started":
                session.started.set()
            elif name in ("task-finished", "task-failed"):
                if name == "task-failed":
                    session.failed = "task-failed"
                session.started.set()
                session.finished.set()
    session.started.set()
    session.finished.set()


async def pace(
    sessions: list[Session], frames: list[bytes], step: Step, base: float, count: int, tick: float
) -> None:
    """Write every session's frames on their absolute schedules, from one task."""
    n = len(sessions)
    period = step.frame_s
    phase = [i * period / n for i in range(n)]
    for i, s in enumerate(sessions):
        s.t0 = base + phase[i]
    loop_len = len(frames)
    k = 0  # the round (frame index) of the next session due
    i = 0  # the next session due
    total = n * count
    sent = 0
    next_tick = base
    while sent < total:
        await trio.sleep_until(next_tick)
        now = trio.current_time()
        while sent < total:
            due = base + phase[i] + k * period
            if due > now:
                break
            step.lateness.append(now - due)
            s = sessions[i]
            if s.failed is None:
                frame = frames[(s.offset + k) % loop_len]
                if s.pending:
                    frame = s.pending + frame
                    s.pending = b""
                try:
                    taken = s.sock.send(frame)
                except BlockingIOError:
                    taken = 0
                except OSError as exc:
                    s.failed = f"send: {exc}"
                    taken = len(frame)
                if taken < len(frame):
                    s.pending = frame[taken:]
                    step.stalls += 1
                step.frames += 1
            sent += 1
            i += 1
            if i == n:
                i, k = 0, k + 1
        next_tick = max(next_tick + tick, now)


# ------------------------------------------------------------------ the simulator


class Simulator:
    """``steno simulate --recognizer scripted`` in a child process pinned to ``cpus``."""

    def __init__(
        self,
        processes: int,
        cpus: set[int] | None,
        tree: Path = ROOT,
        extra: list[str] | None = None,
    ) -> None:
        cmd = [sys.executable, "-m", "engine.cli", "simulate", "--recognizer", "scripted"]
        cmd += ["--port", "0"]
        if processes != 1:
            cmd += ["--processes", str(processes)]
        cmd += extra or []

        def pin() -> None:
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # never outlive us
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.proc = subprocess.Popen(
            cmd, cwd=tree, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pin
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        found = _BANNER.search(line)
        if found is None:
            self.close()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.port = int(found.group(1))

    def cpu(self) -> float:
        """CPU seconds of the simulator and its children (the live ones)."""
        return sum(_cpu(pid) for pid in [self.proc.pid, *_children(self.proc.pid)])

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode


def _cpu(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found + [g for c in found for g in _children(c)]


# ------------------------------------------------------------------ a step


async def run_step(n: int, sim: Simulator, args: argparse.Namespace) -> dict[str, Any]:
    frame_s = args.frame_ms / 1000
    frames = audio_frames(args.frame_ms)
    count = round(args.duration / frame_s)
    step = Step(frame_s)
    sessions: list[Session] = []
    phases: dict[str, float] = {}
    t_begin = trio.current_time()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(args.connect_timeout):
            for i in range(n):
                s = await connect("127.0.0.1", sim.port, (i * 7) % len(frames))
                sessions.append(s)
                nursery.start_soon(read_loop, s, step)
                await _send_all(s.sock, run_task(s.task_id))
            for s in sessions:
                await s.started.wait()
        failed_start = sum(s.failed is not None for s in sessions)
        phases["connect_s"] = trio.current_time() - t_begin
        base = trio.current_time() + 0.5
        step.window = (base, base + args.duration + 1.0)
        await trio.sleep_until(base)
        cpu0, client0, wall0 = sim.cpu(), time.process_time(), time.monotonic()
        await pace(sessions, frames, step, base, count, args.tick_ms / 1000)
        cpu1, client1, wall1 = sim.cpu(), time.process_time(), time.monotonic()
        phases["stream_s"] = trio.current_time() - base
        t_fin = trio.current_time()
        with trio.move_on_after(args.finish_timeout) as fin:
            for s in sessions:
                if s.failed is None:
                    if s.pending:
                        await _send_all(s.sock, s.pending)
                    await _send_all(s.sock, finish_task(s.task_id))
            for s in sessions:
                await s.finished.wait()
        # A simulator that fell behind does the window's work after it: count it too.
        cpu2 = sim.cpu()
        phases["finish_s"] = trio.current_time() - t_fin
        nursery.cancel_scope.cancel()
    for s in sessions:
        s.sock.close()
    sim_cpu, sim_all, wall = cpu1 - cpu0, cpu2 - cpu0, wall1 - wall0
    frames_sent = max(step.frames, 1)
    record = {
        "sessions": n,
        "frames": step.frames,
        "sim_cpu_s": round(sim_cpu, 3),
        "sim_cpu_with_finish_s": round(sim_all, 3),
        "sim_us_per_frame": round(sim_all / frames_sent * 1e6, 1),
        "sim_cpu_pct": round(100 * sim_cpu / wall, 1),
        "client_us_per_frame": round((client1 - client0) / frames_sent * 1e6, 1),
        "client_cpu_pct": round(100 * (client1 - client0) / wall, 1),
        "partial_lag_ms": percentiles_ms(step.partial_lags),
        "final_lag_ms": percentiles_ms(step.final_lags),
        "pacer_lateness_ms": percentiles_ms(step.lateness),
        "stalls": step.stalls,
        "events": dict(step.events),
        "failed_start": failed_start,
        "failed": Counter(s.failed for s in sessions if s.failed),
        "unfinished": sum(not s.finished.is_set() for s in sessions) if fin.cancelled_caught else 0,
        "phases_s": {k: round(v, 2) for k, v in phases.items()},
        "load": os.getloadavg(),
    }
    return record


def _row(r: dict[str, Any]) -> str:
    pl, fl = r["partial_lag_ms"], r["final_lag_ms"]
    # Tasks still unfinished at the finish deadline: the simulator had work left, so
    # the CPU per frame is a lower bound.
    per_frame = f"≥{r['sim_us_per_frame']}" if r["unfinished"] else f"{r['sim_us_per_frame']}"
    return (
        f"| {r['sessions']:>6} | {per_frame:>8} | {r['sim_cpu_pct']:>6} | "
        f"{pl['p50']} / {pl['p99']} | {fl['p50']} / {fl['p99']} | "
        f"{r['client_cpu_pct']:>6} | {r['stalls']} | {sum(r['failed'].values())} |"
    )


_HEAD = (
    "| sessions | sim µs/frame | sim CPU % | partial lag p50/p99 ms | final lag p50/p99 ms "
    "| client CPU % | stalls | failed |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.simulator", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sessions", type=int, nargs="+", default=[500, 1000, 2000, 3000], metavar="N",
        help="sessions per step (a ramp; default 500 1000 2000 3000)",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of paced audio")
    parser.add_argument("--frame-ms", type=int, default=100)
    parser.add_argument("--tick-ms", type=float, default=5.0, help="the pacer's period")
    parser.add_argument("--processes", type=int, default=1, help="steno simulate --processes")
    parser.add_argument(
        "--feed-batch-ms", type=int, help="steno simulate --feed-batch-ms (default: its default)"
    )
    parser.add_argument(
        "--baseline-feed-batch-ms", type=int, metavar="MS",
        help="steno simulate --feed-batch-ms for the baseline (default: its own default)",
    )  # fmt: skip
    parser.add_argument("--sim-cpu", type=int, nargs="*", default=[1], help="cores for the sim")
    parser.add_argument("--client-cpu", type=int, nargs="*", default=[0], help="client cores")
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--finish-timeout", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=2.0, help="rest between steps (s)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--baseline", type=Path, metavar="CHECKOUT",
        help="also run each step against the simulator of this checkout (e.g. the main "
        "branch), right after this one's: compare within one run on a noisy machine",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.frame_ms <= 0 or min(args.sessions) <= 0:
        parser.error("--duration, --frame-ms and --sessions must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.client_cpu:
        os.sched_setaffinity(0, set(args.client_cpu))
    result: dict[str, Any] = {
        "tool": "tools/bench/simulator.py",
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "model": MODEL,
            "recognizer": "scripted (tone)",
            "frame_ms": args.frame_ms,
            "duration_s": args.duration,
            "processes": args.processes,
            "feed_batch_ms": args.feed_batch_ms,
            "baseline_feed_batch_ms": args.baseline_feed_batch_ms,
            "sim_cpus": args.sim_cpu,
            "client_cpus": args.client_cpu,
        },
        "steps": [],
    }
    trees = [("this", ROOT)]
    if args.baseline is not None:
        trees.append(("baseline", args.baseline.resolve()))
        result["settings"]["baseline"] = str(args.baseline.resolve())
    print(_HEAD, flush=True)
    for k, n in enumerate(args.sessions):
        for label, tree in trees:
            if k or label != "this":
                time.sleep(args.settle)
            processes = args.processes if label == "this" else 1
            batch = args.feed_batch_ms if label == "this" else args.baseline_feed_batch_ms
            extra = ["--feed-batch-ms", str(batch)] if batch is not None else []
            sim = Simulator(processes, set(args.sim_cpu) or None, tree, extra)
            try:
                record = trio.run(run_step, n, sim, args)
            finally:
                code = sim.close()
            record["sim_exit"] = code
            record["simulator"] = label
            result["steps"].append(record)
            print(_row(record) + (f" {label}" if len(trees) > 1 else ""), flush=True)
            if args.json is not None:
                args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
