"""``steno simulate --processes N``: workers share the port, one banner, Ctrl-C ends all.

# real-time: real processes, real signals and TCP; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import uuid

import pytest
import trio
from trio_websocket import open_websocket_url

from tests.e2e.e2e_helpers import ROOT, cli_env, steno_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]

DEADLINE_S = 60
BANNER = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)/api-ws/v1/inference .*2 processes")


def start(*extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*steno_command(), "simulate", "--recognizer", "scripted", "--port", "0", *extra],
        cwd=ROOT,
        env=cli_env(None),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # never pytest's process group
    )


def banner_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stderr is not None
    line = proc.stderr.readline()  # real-time: the workers start (bounded by DEADLINE_S below)
    found = BANNER.search(line)
    assert found is not None, line
    return int(found.group(1))


def workers(pid: int) -> list[int]:
    """The child processes of ``pid``, of every thread (trio may spawn from a worker thread)."""
    tasks = pathlib.Path(f"/proc/{pid}/task").iterdir()
    return sorted(int(c) for task in tasks for c in (task / "children").read_text().split())


def alive(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


async def task_started(port: int) -> str:
    """One inference task's first answer from the simulator on ``port``."""
    url = f"ws://127.0.0.1:{port}/api-ws/v1/inference"
    headers = [("Authorization", "Bearer any")]
    async with open_websocket_url(url, extra_headers=headers) as ws:
        header = {"action": "run-task", "task_id": uuid.uuid4().hex, "streaming": "duplex"}
        payload = {
            "task_group": "audio",
            "task": "asr",
            "function": "recognition",
            "model": "paraformer-realtime-v2",
            "parameters": {"sample_rate": 16000, "format": "pcm"},
            "input": {},
        }
        await ws.send_message(json.dumps({"header": header, "payload": payload}))
        event: str = json.loads(await ws.get_message())["header"]["event"]
        return event


def test_workers_serve_and_ctrl_c_ends_them_all() -> None:
    """Both workers listen on the one port and answer; SIGINT ends the run with 130 and
    leaves no worker behind."""
    proc = start("--processes", "2")
    try:
        port = banner_port(proc)
        pids = workers(proc.pid)
        assert len(pids) == 2

        async def sessions() -> list[str]:
            with trio.fail_after(DEADLINE_S):
                return [await task_started(port) for _ in range(8)]

        assert trio.run(sessions) == ["task-started"] * 8
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE_S)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert not any(alive(pid) for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_dead_worker_ends_the_run() -> None:
    """A worker that dies is named, the other is stopped, and the exit code is 1."""
    proc = start("--processes", "2")
    try:
        banner_port(proc)
        first, second = workers(proc.pid)
        os.kill(second, signal.SIGKILL)
        _, err = proc.communicate(timeout=DEADLINE_S)
        assert proc.returncode == 1, err
        assert re.search(rf"simulator process [12] \(pid {second}\) exited with code -9", err)
        assert not alive(first)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("processes", ["0", "2000"])
def test_a_bad_process_count_is_one_line(processes: str) -> None:
    run = subprocess.run(
        [*steno_command(), "simulate", "--processes", processes],
        cwd=ROOT,
        env=cli_env(None),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert run.returncode == 2
    assert run.stderr.startswith(f"steno: error: --processes {processes}: fix: "), run.stderr
