"""Transport benchmark: CPU per frame of each WebSocket client transport, behind the seam.

Usage::

    python -m tools.bench.transport --streams 300 --duration 10 --json out/transport.json

One minimal WebSocket server runs in another process (this file with ``--serve``,
pinned to core 1 with ``taskset``): it answers the upgrade, reads and unmasks
every frame, and sends each connection a ~200-byte JSON result three times a
second. This process is pinned to core 0 and, for each transport in turn
(``null``, ``trio-websocket``, ``fast``), opens ``--streams`` connections with
that transport's real dialer (``adapters.dashscope.ws.real_dialer``) and runs
the shape the engine aims at (issue #11): ONE pacer task ticks every 10 ms and
wakes, through one ``trio.Event``, the senders whose 100 ms frame is due
(phases spread over the period); each sender tries ``send_nowait`` and awaits
``send`` only when that says no. One reader task per connection receives and
decodes the results (msgspec).

Measured in the window after a warm-up: this process's CPU time
(``time.process_time``) per frame sent, frames sent, frames that took the
awaited path, results received, and the pacer's tick lateness (p50/p99/max).
``null`` is the harness with a transport that takes every frame and sends
nothing: its CPU per frame is the floor (the wake and the loop), to subtract.
Under a loaded machine the absolute numbers are noisy: compare the ratios of
one run. Writes JSON (``--json``) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from adapters.dashscope.transport import Transport

FRAME_BYTES = 3200  # 100 ms of 16 kHz int16
PERIOD_S = 0.1
TICK_S = 0.01
RESULTS_PER_S = 3.0
RESULT = msgspec.json.encode(
    {
        "header": {"event": "result-generated", "task_id": "t" * 32},
        "payload": {"output": {"sentence": {"begin_time": 0, "text": "good morning " * 6}}},
    }
)

# ------------------------------------------------------------ the server (core 1)


async def _serve_one(stream: trio.SocketStream, counts: list[int]) -> None:
    from adapters.websocket import SERVER, Message, ServerHandshake, WebSocketCore

    handshake = ServerHandshake()
    request = None
    with contextlib.suppress(Exception):
        while request is None:
            data = await stream.receive_some(65536)
            if not data:
                return
            request = handshake.receive_data(data)
    if request is None:
        await stream.aclose()
        return
    await stream.send_all(handshake.accept())
    core = WebSocketCore(SERVER)
    core.receive_data(handshake.trailing)
    result = core.send_message(RESULT.decode())

    async def results() -> None:
        # Spread over the period, like live streams.
        await trio.sleep(np.random.default_rng().uniform(0, 1 / RESULTS_PER_S))
        while True:
            await stream.send_all(result)
            await trio.sleep(1 / RESULTS_PER_S)

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(results)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            while True:
                data = await stream.receive_some(65536)
                core.receive_data(data or None)
                while (event := core.next_event()) is not None:
                    if isinstance(event, Message):
                        counts[0] += 1
                    elif core.state.value != "open":
                        nursery.cancel_scope.cancel()
                if not data:
                    break
        nursery.cancel_scope.cancel()


async def serve(port_file: Path) -> None:
    counts = [0]
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=4096)
    partial = trio.Path(f"{port_file}.part")
    await partial.write_text(str(listeners[0].socket.getsockname()[1]))
    await partial.rename(port_file)  # the parent sees the whole number or nothing
    await trio.serve_listeners(lambda s: _serve_one(s, counts), listeners)  # type: ignore[arg-type]


# ------------------------------------------------------------ the client (core 0)


class NullTransport:
    """Takes every frame and sends nothing: the harness's own cost."""

    def send_nowait(self, frame: bytes | str) -> bool:
        return True

    async def send(self, frame: bytes | str) -> None:
        await trio.lowlevel.checkpoint()

    async def receive(self) -> bytes | str:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@contextlib.asynccontextmanager
async def _open(name: str, url: str) -> AsyncIterator[Any]:
    if name == "null":
        yield NullTransport()
        return
    from adapters.dashscope.ws import real_dialer

    async with real_dialer(name)(url, [("user-agent", "bench")], connect_timeout=30) as t:
        yield t


class Pacer:
    """One tick every 10 ms; wakes the senders of the slot that is due (one Event each)."""

    def __init__(self, slots: int) -> None:
        self.events = [trio.Event() for _ in range(slots)]
        self.lateness: list[float] = []
        self.measuring = False

    async def run(self) -> None:
        start = trio.current_time()
        tick = 0
        while True:
            due = start + tick * TICK_S
            await trio.sleep_until(due)
            if self.measuring:
                self.lateness.append(trio.current_time() - due)
            slot = tick % len(self.events)
            event, self.events[slot] = self.events[slot], trio.Event()
            event.set()
            tick += 1


class Counters:
    def __init__(self) -> None:
        self.sent = 0
        self.awaited = 0
        self.results = 0
        self.errors = 0


async def _sender(t: Transport, pacer: Pacer, slot: int, c: Counters) -> None:
    frame = bytes(FRAME_BYTES)
    nowait = getattr(t, "send_nowait", None)
    while True:
        await pacer.events[slot].wait()
        if nowait is None or not nowait(frame):
            c.awaited += 1
            await t.send(frame)
        c.sent += 1


async def _reader(t: Transport, c: Counters) -> None:
    decode = msgspec.json.Decoder().decode
    while True:
        decode(await t.receive())
        c.results += 1


async def run_transport(
    name: str, url: str, streams: int, warmup: float, duration: float
) -> dict[str, Any]:
    slots = round(PERIOD_S / TICK_S)
    pacer = Pacer(slots)
    c = Counters()
    async with contextlib.AsyncExitStack() as stack:
        transports = []
        for _ in range(streams):
            transports.append(await stack.enter_async_context(_open(name, url)))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pacer.run)
            for i, t in enumerate(transports):
                nursery.start_soon(_sender, t, pacer, i % slots, c)
                nursery.start_soon(_reader, t, c)
            await trio.sleep(warmup)
            sent0, awaited0, results0 = c.sent, c.awaited, c.results
            pacer.measuring = True
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await trio.sleep(duration)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            pacer.measuring = False
            nursery.cancel_scope.cancel()
    sent = c.sent - sent0
    results = c.results - results0
    late = np.array(pacer.lateness or [0.0]) * 1000
    due = streams * wall / PERIOD_S
    return {
        "transport": name,
        "streams": streams,
        "window_s": round(wall, 3),
        "cpu_s": round(cpu, 4),
        "cpu_share": round(cpu / wall, 4),
        "frames": sent,
        "frames_per_s": round(sent / wall, 1),
        "awaited_frames": c.awaited - awaited0,
        "results": results,
        "results_per_frame": round(results / sent, 3) if sent else None,
        # CPU per frame compares transports only when every one kept its pace (the
        # results arrive at the server's rate whatever the client sends).
        "kept_pace": sent >= 0.95 * due,
        "us_cpu_per_frame": round(cpu / sent * 1e6, 2) if sent else None,
        "tick_lateness_ms": {
            "p50": round(float(np.percentile(late, 50)), 2),
            "p99": round(float(np.percentile(late, 99)), 2),
            "max": round(float(late.max()), 2),
        },
    }


def masking(n: int = 20000) -> dict[str, float]:
    """µs CPU to mask one frame: websockets' C routine, numpy XOR, the pure-Python XOR."""
    from adapters.websocket import apply_mask_python

    data, mask = os.urandom(FRAME_BYTES), os.urandom(4)
    key = np.frombuffer(mask * (FRAME_BYTES // 4), dtype=np.uint8)

    def numpy_xor(payload: bytes, _mask: bytes) -> bytes:
        return (np.frombuffer(payload, dtype=np.uint8) ^ key).tobytes()

    candidates: dict[str, Any] = {"numpy": numpy_xor, "python": apply_mask_python}
    with contextlib.suppress(ImportError):
        from websockets.speedups import apply_mask as c_mask

        candidates["websockets.speedups"] = c_mask
    out = {}
    for name, fn in candidates.items():
        start = time.process_time()
        for _ in range(n):
            fn(data, mask)
        out[name] = round((time.process_time() - start) / n * 1e6, 2)
    return out


def _pin(core: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)]
    return []


@contextlib.contextmanager
def _server(tmp: Path) -> Any:
    port_file = tmp / "transport-bench.port"
    port_file.unlink(missing_ok=True)
    cmd = [*_pin(1), sys.executable, "-m", "tools.bench.transport", "--serve", str(port_file)]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the bench server did not start")
            time.sleep(0.05)
        yield int(port_file.read_text())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per transport"
    )
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--transport",
        action="append",
        choices=["null", "trio-websocket", "fast"],
        help="repeatable; default: all three",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate the transports this many times"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(serve, args.serve)
        return 0
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    names = args.transport or ["null", "trio-websocket", "fast"]
    from adapters.websocket import MASK_IMPLEMENTATION

    masks = masking()
    print("masking a 3,200-byte frame, µs CPU:", masks, flush=True)
    rows = []
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    with _server(tmp) as port:
        url = f"ws://127.0.0.1:{port}/bench"
        for _ in range(args.rounds):
            for name in names:
                row = trio.run(run_transport, name, url, args.streams, args.warmup, args.duration)
                rows.append(row)
                print(
                    f"{name:>15}  N={row['streams']:<5} {row['us_cpu_per_frame']!s:>8} µs CPU/frame  "
                    f"CPU {row['cpu_share'] * 100:5.1f} %  frames/s {row['frames_per_s']:8.0f}  "
                    f"awaited {row['awaited_frames']:6d}  results {row['results']:6d}  "
                    f"tick p99 {row['tick_lateness_ms']['p99']:.1f} ms"
                    + ("" if row["kept_pace"] else "  (fell behind: not comparable)"),
                    flush=True,
                )
    by: dict[str, list[float]] = {}
    for row in rows:
        if row["us_cpu_per_frame"] is not None and row["kept_pace"]:
            by.setdefault(row["transport"], []).append(row["us_cpu_per_frame"])
    summary = {name: round(float(np.median(v)), 2) for name, v in by.items()}
    floor = summary.get("null", 0.0)
    net = {n: round(v - floor, 2) for n, v in summary.items() if n != "null"}
    if "fast" in net and "trio-websocket" in net and net["fast"] > 0:
        print(
            f"transport cost above the harness floor: {net}; trio-websocket / fast = "
            f"{net['trio-websocket'] / net['fast']:.2f}"
        )
    report = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "trio": trio.__version__,
            "masking": MASK_IMPLEMENTATION,
        },
        "frame_bytes": FRAME_BYTES,
        "results_per_stream_s": RESULTS_PER_S,
        "masking_us_per_frame": masks,
        "rows": rows,
        "median_us_cpu_per_frame": summary,
        "above_floor_us": net,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
