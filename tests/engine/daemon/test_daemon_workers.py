"""``workers = 2`` as real processes: one /healthz and /metrics, a killed worker, the drain.

# real-time: real processes, real signals and the embedded TCP simulator; every
# wait is under ``trio.fail_after``.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import soundfile
import trio
from prometheus_client.parser import text_string_to_metric_families

from adapters.recognizers.tonecode import synthesize
from tests.engine.daemon.test_daemon_cli import get

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals, /proc")

ROOT = pathlib.Path(__file__).resolve().parents[3]

STREAM = """
[[stream]]
id = "{id}"
source = {{ kind = "file", path = "{wav}", loop = true, speed = 4.0 }}
outputs = {{ formats = ["jsonl", "txt"] }}
"""

Entry = dict[str, Any]


def write_config(tmp: pathlib.Path, *ids: str) -> tuple[pathlib.Path, pathlib.Path]:
    wav, out, path = tmp / "tones.wav", tmp / "out", tmp / "d.toml"
    if not wav.exists():  # (a looping stream may be reading it: never rewritten)
        speech = synthesize(["good morning", "thank you"], 16000)
        soundfile.write(wav, speech, 16000, subtype="PCM_16")
    head = (
        f'[daemon]\nlisten = "127.0.0.1:0"\nsimulator = "scripted"\noutput-dir = "{out}"\n'
        "drain-deadline-s = 15\nworkers = 2\n"
    )
    path.write_text(head + "".join(STREAM.format(id=i, wav=wav) for i in ids))
    return path, out


class Tail:
    """Every JSON line of the daemon's stdout, read as it comes (so the pipe never fills)."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.seen: list[Entry] = []
        self.raw: list[bytes] = []
        self._changed = trio.Event()

    async def pump(self) -> None:
        assert self.proc.stdout is not None
        buffer = b""
        while chunk := await self.proc.stdout.receive_some(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self.raw.append(line)
                self.seen.append(json.loads(line))  # every stdout line is one JSON record
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, event: str, where: Callable[[Entry], bool] = lambda e: True) -> Entry:
        while True:
            for entry in self.seen:
                if entry.get("event") == event and where(entry):
                    return entry
            await self._changed.wait()


async def poll(port: int, path: str, ok: Callable[[Entry], bool]) -> Entry:
    while True:
        body: Entry = json.loads(await get(port, path))
        if ok(body):
            return body
        await trio.sleep(0.1)  # real-time: another process's state


def all_running(health: Entry) -> bool:
    return health["status"] == "ok" and all(
        s["state"] == "running" for s in health["streams"].values()
    )


def families(text: str) -> dict[str, Any]:
    parsed = list(text_string_to_metric_families(text))
    names = [f.name for f in parsed]
    assert len(names) == len(set(names)), "a metric family appears twice"
    return {f.name: f for f in parsed}


async def start_daemon(cfg: pathlib.Path) -> trio.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DASHSCOPE_API_KEY", None)
    cmd = [sys.executable, "-m", "engine.cli", "daemon", str(cfg)]
    return await trio.lowlevel.open_process(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )


async def test_two_workers_three_streams(tmp_path: pathlib.Path) -> None:
    """One /healthz and /metrics over both workers; a killed worker degrades its stream
    and comes back; SIGTERM drains every stream of every worker."""
    cfg, out = write_config(tmp_path, "a", "b", "c")
    proc = await start_daemon(cfg)
    tail = Tail(proc)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tail.pump)
            with trio.fail_after(120):
                port = (await tail.wait_for("daemon.http.listening"))["port"]
                pids = {}
                for worker in (0, 1):
                    started = await tail.wait_for(
                        "daemon.worker.started", lambda e, w=worker: e["worker"] == w
                    )
                    pids[worker] = started["pid"]
                    assert started["streams"] == (["a", "c"] if worker == 0 else ["b"])
                # Seam 4: each worker's task-start budget is half of the daemon's.
                for pid in pids.values():
                    assert b"STENO_RATE_SHARE=0.5" in await _environ(pid)
                health = await poll(port, "/healthz", all_running)
                assert set(health["streams"]) == {"a", "b", "c"}
                await poll(port, "/readyz", lambda r: r["status"] == "ready")

                metrics = families((await get(port, "/metrics")).decode())
                finals = metrics["steno_finals"].samples
                assert sorted(s.labels["stream"] for s in finals) == ["a", "b", "c"]
                rss = metrics["process_resident_memory_bytes"].samples
                assert sorted(s.labels["worker"] for s in rss) == ["0", "1", "main"]
                assert all(s.value > 0 for s in rss)
                state = metrics["steno_stream_state"].samples
                assert {s.labels["stream"] for s in state if s.value == 1} == {"a", "b", "c"}

                # A worker dies: its stream is degraded with the reason, then it is restarted.
                counted = (await poll(port, "/healthz", lambda h: True))["streams"]["b"]
                os.kill(pids[1], signal.SIGKILL)
                degraded = await poll(port, "/healthz", lambda h: "b" in h["degraded"])
                assert degraded["status"] == "degraded"
                assert degraded["streams"]["b"]["state"] == "restarting"
                assert "killed by SIGKILL" in degraded["degraded"]["b"][0]
                assert set(degraded["degraded"]) == {"b"}  # worker 0 is untouched
                assert degraded["streams"]["b"]["finals"] >= counted["finals"]  # carried on
                again = await tail.wait_for(
                    "daemon.worker.started", lambda e: e["worker"] == 1 and e["pid"] != pids[1]
                )
                health = await poll(port, "/healthz", all_running)
                assert health["streams"]["b"]["restarts"] >= 1
                assert health["streams"]["a"]["restarts"] == 0

                proc.send_signal(signal.SIGTERM)
                stopped = await tail.wait_for("daemon.stopped", lambda e: "worker" not in e)
                assert stopped["clean"] is True
                assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The worker's own lines came through the parent, whole, each with its worker.
    worker_starts = [e for e in tail.seen if e.get("event") == "daemon.stream.start"]
    assert sorted((e["worker"], e["stream"]) for e in worker_starts) == [
        (0, "a"),
        (0, "c"),
        (1, "b"),
        (1, "b"),
    ]
    died = [e for e in tail.seen if e.get("event") == "daemon.worker.died"]
    assert [(e["worker"], e["pid"], e["code"]) for e in died] == [(1, pids[1], -signal.SIGKILL)]
    ends = [e for e in tail.seen if e.get("event") == "daemon.stream.end"]
    assert sorted((e["stream"], e["source"], e["status"]) for e in ends) == [
        (name, "drained", "ok") for name in ("a", "b", "c")
    ]  # the killed worker's first run of b wrote no end line: it was killed
    drained = {e.get("worker") for e in tail.seen if e.get("event") == "daemon.stopped"}
    assert drained == {None, 0, again["worker"]} == {None, 0, 1}
    assert not any(b"Traceback" in line for line in tail.raw)
    assert not any(e.get("event") == "daemon.worker.output" for e in tail.seen)
    for name in ("a", "b", "c"):
        # A restarted worker's stream writes a new part ({stem}.1.jsonl): the newest.
        files = sorted(out.glob(f"{name}-*.jsonl"), key=lambda p: p.stat().st_mtime_ns)
        last = json.loads(files[-1].read_bytes().splitlines()[-1])
        assert last["type"] == "StreamEnded" and last["status"] == "ok", (name, files)


async def test_reload_then_a_second_signal(tmp_path: pathlib.Path) -> None:
    """SIGHUP adds a stream to the emptiest worker and touches no other; then SIGTERM
    and SIGINT: every worker is cancelled, exit 1, and no traceback."""
    cfg, _out = write_config(tmp_path, "a", "b")
    proc = await start_daemon(cfg)
    tail = Tail(proc)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tail.pump)
            with trio.fail_after(120):
                port = (await tail.wait_for("daemon.http.listening"))["port"]
                await poll(port, "/healthz", all_running)

                write_config(tmp_path, "a", "b", "c")  # (and a workers change: not applied)
                cfg.write_text(cfg.read_text().replace("workers = 2", "workers = 3"))
                proc.send_signal(signal.SIGHUP)
                sent = await tail.wait_for("daemon.reload.sent")
                assert sent["placement"] == {"a": 0, "b": 1, "c": 0}
                restart = await tail.wait_for("daemon.reload.needs_restart")
                assert restart["fields"] == ["workers"]
                health = await poll(port, "/healthz", lambda h: "c" in h["streams"])
                health = await poll(port, "/healthz", all_running)
                assert set(health["streams"]) == {"a", "b", "c"}
                reloaded = await tail.wait_for("daemon.reloaded", lambda e: e["worker"] == 0)
                assert (reloaded["added"], reloaded["unchanged"]) == (["c"], 1)

                proc.send_signal(signal.SIGTERM)
                await tail.wait_for("daemon.draining")
                proc.send_signal(signal.SIGINT)
                stopped = await tail.wait_for("daemon.stopped", lambda e: "worker" not in e)
                assert stopped["clean"] is False
                assert await proc.wait() == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert not any(b"Traceback" in line for line in tail.raw)
    cancels = [e for e in tail.seen if e.get("event") == "daemon.signal"]
    assert [e["action"] for e in cancels] == ["reload", "drain", "cancel"]
    starts = [e["stream"] for e in tail.seen if e.get("event") == "daemon.stream.start"]
    assert sorted(starts) == ["a", "b", "c"]  # a and b were not restarted


async def _environ(pid: int) -> list[bytes]:
    """A child's environment; read again while it is empty (the worker may be inside its
    exec shim's ``execv`` at the first read, when the kernel shows no environment)."""
    path = trio.Path(f"/proc/{pid}/environ")
    with trio.fail_after(10):
        for _ in range(200):
            if data := await path.read_bytes():
                return data.split(b"\0")
            await trio.sleep(0.05)  # real-time: a real process's exec
    raise AssertionError(f"process {pid} showed no environment for 10 s")
