"""``steno transcribe --processes N``: files over worker processes, one console (issue #11).

Real processes on the real clock, each bounded by a timeout, against the embedded
simulator with its scripted recognizer (tone-coded speech decodes word for word),
or a simulator this module hosts. What a user sees must not depend on N: the same
lines per file, the same files, the same exit code; signals, a killed worker and
the task-start budget behave as the README says.

# real-time: real processes, real signals, sockets and pipes on the real clock.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import soundfile
from e2e_helpers import (
    CliRun,
    SimulatorThread,
    cli_env,
    parse_jsonl,
    run_steno_concurrently,
    steno_command,
)

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from engine.events import Final, StreamEnded

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]

RATE = 16000
SCRIPTS = {
    "alpha": ["good morning", "the weather is sunny today", "thank you"],
    "beta": ["hello world", "the train leaves at seven", "please stop"],
    "gamma": ["yes", "the meeting is in the new room", "good evening"],
    "delta": ["how are you today", "we will have the budget", "they are there tomorrow"],
}
WORKER = "engine.shard.worker"
METRICS = re.compile(r"^request_id=\S+ first_package_delay=.*$")


@pytest.fixture(name="clips", scope="module")
def _clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    folder = tmp_path_factory.mktemp("processes")
    paths = {}
    for name, sentences in SCRIPTS.items():
        paths[name] = folder / f"{name}.wav"
        soundfile.write(paths[name], synthesize(sentences, RATE), RATE, subtype="PCM_16")
    return paths


def line_of(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:] + "."


def comparable(run: CliRun, stream: str) -> list[str]:
    """A stream's console lines with the per-run parts (request id, delays) masked."""
    return [
        "request_id=… (metrics)" if METRICS.match(line) else line
        for line in run.stream_lines(stream)
    ]


def workers_of(pid: int) -> dict[int, str]:
    """The live worker processes whose parent is ``pid``: pid -> command line."""
    found = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and WORKER in cmdline and fields[0] != "Z":
            found[int(stat.parent.name)] = cmdline
    return found


class Running:
    """A ``steno`` process in a session of its own, its output read in the background."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [*steno_command(), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # never signal pytest's group
        )
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.started = time.monotonic()

    @staticmethod
    def _read(pipe: object, into: bytearray) -> None:
        while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
            into.extend(chunk)

    def text(self) -> str:
        return bytes(self.stdout).decode(errors="replace") + bytes(self.stderr).decode(
            errors="replace"
        )

    def wait_for(self, what: str, holds: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout  # real-time: another process's progress
        while not holds():
            assert self.proc.poll() is None, f"exited before {what}\n{self.text()}"
            assert time.monotonic() < deadline, f"no {what} within {timeout} s\n{self.text()}"
            time.sleep(0.05)  # real-time: polling another process

    def finish(self, timeout: float) -> CliRun:
        try:
            self.proc.wait(timeout=timeout)  # real-time: bounds the run
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"steno did not end within {timeout} s\n{self.text()}")
        for reader in self._readers:
            reader.join(timeout=10)  # real-time: the pipes' last bytes
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return CliRun(
            args=self.args,
            returncode=self.proc.returncode,
            stdout=bytes(self.stdout).decode(errors="replace"),
            stderr=bytes(self.stderr).decode(errors="replace"),
            elapsed_s=time.monotonic() - self.started,
        )


def transcribe_args(clips: dict[str, pathlib.Path], out: pathlib.Path, *extra: str) -> list[str]:
    return [
        "transcribe", *map(os.fspath, clips.values()), "--recognizer", "scripted",
        "--out", os.fspath(out), "--format", "txt,jsonl", *extra,
    ]  # fmt: skip


def assert_no_worker_left(pids: Iterator[int] | list[int]) -> None:
    for pid in pids:
        assert not pathlib.Path(f"/proc/{pid}").exists() or "Z" in _state(pid), pid


def _state(pid: int) -> str:
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return text[text.rindex(")") + 2 :].split()[0]


# ------------------------------------------------ the same output for any N


def test_two_workers_print_and_write_what_one_process_does(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """4 files, --fast: ``--processes 2`` and ``--processes 1`` print the same lines per
    file, write the same transcripts and exit 0; the two workers share the files."""
    runs = run_steno_concurrently(
        [
            (
                ["-v", *transcribe_args(clips, tmp_path / f"p{n}", "--fast", "--processes", n)],
                cli_env(None),
            )
            for n in ("1", "2")
        ],
        timeout=120,
    )
    one, two = runs
    for run in runs:
        assert run.returncode == 0, run.describe()
        assert "Traceback" not in run.stdout + run.stderr, run.describe()
    for name, sentences in SCRIPTS.items():
        stream = f"{name}.wav"
        assert comparable(two, stream) == comparable(one, stream), two.describe()
        assert two.transcript_lines(stream) == [line_of(s) for s in sentences]
        for fmt in ("txt", "jsonl"):
            path = f"{name}.{fmt}"
            assert (tmp_path / "p2" / path).is_file(), path
        txt = (tmp_path / "p2" / f"{name}.txt").read_text()
        assert txt == (tmp_path / "p1" / f"{name}.txt").read_text()
        events = parse_jsonl((tmp_path / "p2" / f"{name}.jsonl").read_text())
        assert [e.text for e in events if isinstance(e, Final)] == [line_of(s) for s in sentences]
    assert not one.log_events("shard.workers.started"), "one process started workers"
    exited = two.log_events("shard.worker.exited")
    assert sorted(r["files"] for r in exited) == [2, 2], two.describe()
    assert {r["status"] for r in exited} == {0}


# ------------------------------------------------------------ exit codes


def test_a_bad_file_fails_alone_and_the_exit_code_is_1(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """A file that is not audio fails with its one line in its worker; the rest are
    transcribed; exit 1, as in one process."""
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    files = {**clips, "bad": bad}
    runs = run_steno_concurrently(
        [
            (transcribe_args(files, tmp_path / f"p{n}", "--fast", "--processes", n), cli_env(None))
            for n in ("1", "2")
        ],
        timeout=120,
    )
    for run in runs:
        assert run.returncode == 1, run.describe()
        assert "Traceback" not in run.stdout + run.stderr
        assert len(run.error_lines("bad.wav")) == 1, run.describe()
        assert run.status_lines("bad.wav")[-1].startswith("done: failed")
        for name in SCRIPTS:
            assert run.status_lines(f"{name}.wav")[-1].startswith("done: ok"), run.describe()
    assert runs[0].error_lines("bad.wav") == runs[1].error_lines("bad.wav")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "--processes must be at least 1"),
        ("-1", "--processes must be at least 1"),
        ("abc", "invalid int value"),
        ("99999999999999999999999", None),
    ],
)
def test_hostile_process_counts(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path, value: str, expected: str | None
) -> None:
    """0, -1 and abc are usage errors of one line (exit 2); a huge count is capped by
    the files (two here) and runs."""
    files = {k: clips[k] for k in ("alpha", "beta")}
    (run,) = run_steno_concurrently(
        [(["-v", *transcribe_args(files, tmp_path, "--fast", f"--processes={value}")],
          cli_env(None))],
        timeout=90,
    )  # fmt: skip
    assert "Traceback" not in run.stdout + run.stderr, run.describe()
    if expected is None:
        assert run.returncode == 0, run.describe()
        (started,) = run.log_events("shard.workers.started")
        assert len(started["pids"]) == 2
        return
    assert run.returncode == 2, run.describe()
    assert expected in run.stderr
    assert not (tmp_path / "alpha.txt").exists()


# ------------------------------------------------------------------ signals


def test_one_ctrl_c_drains_every_worker(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """Ctrl-C in the terminal (SIGINT to the whole group) while 4 files stream in 2
    workers: the workers ignore it, the parent drains them, every file ends with its
    JSONL ``StreamEnded`` (interrupted, or ok if it was over) and the TXT holds its
    finals; exit 130, no traceback, no worker left."""
    out = tmp_path / "out"
    running = Running(transcribe_args(clips, out, "--processes", "2"), cli_env(None))
    running.wait_for("two workers", lambda: len(workers_of(running.proc.pid)) == 2)
    pids = list(workers_of(running.proc.pid))
    running.wait_for("a final of every file", lambda: all(
        f"[{name}.wav] " in bytes(running.stdout).decode() for name in SCRIPTS))  # fmt: skip
    os.killpg(running.proc.pid, signal.SIGINT)
    run = running.finish(timeout=45)
    assert run.returncode == 130, run.describe()
    assert "Traceback" not in run.stdout + run.stderr, run.describe()
    assert run.stderr.count("finishing every stream") == 1, run.describe()
    interrupted = 0
    for name in SCRIPTS:
        events = parse_jsonl((out / f"{name}.jsonl").read_text())
        ended = events[-1]
        assert isinstance(ended, StreamEnded), name
        assert ended.status in ("interrupted", "ok"), (name, ended)
        interrupted += ended.status == "interrupted"
        finals = [e.text for e in events if isinstance(e, Final)]
        assert finals, name
        assert (out / f"{name}.txt").read_text().splitlines() == finals
        assert run.status_lines(f"{name}.wav")[-1].startswith(f"done: {ended.status}")
    assert interrupted, "the Ctrl-C came after every file had ended"
    assert_no_worker_left(pids)


def test_a_second_sigterm_stops_at_once(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """SIGTERM, then SIGTERM again, to the parent alone (a service manager), with every
    server event 8 s late: the first drains (which would wait the 8 s for each
    ``task-finished``), the second stops the workers at once: exit 130, no traceback,
    no worker left, within a few seconds."""
    running = Running(
        ["-v", *transcribe_args(clips, tmp_path, "--processes", "2", "--sim-fault", "delay:8")],
        cli_env(None),
    )
    running.wait_for("two workers", lambda: len(workers_of(running.proc.pid)) == 2)
    pids = list(workers_of(running.proc.pid))
    running.wait_for("4 streams", lambda: running.stderr.count(b'"stream.started"') == 4)
    running.proc.send_signal(signal.SIGTERM)
    running.wait_for("the drain notice", lambda: b"finishing every stream" in running.stderr)
    stopped = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    run = running.finish(timeout=30)
    assert run.returncode == 130, run.describe()
    assert "Traceback" not in run.stdout + run.stderr, run.describe()
    assert time.monotonic() - stopped < 7, run.describe()
    assert_no_worker_left(pids)


def test_a_killed_worker_fails_its_files_and_the_others_go_on(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """kill -9 of one of two workers mid-stream: each of its files gets one line naming
    the worker and ``done: failed``; the other worker's files end ok; exit 1."""
    running = Running(transcribe_args(clips, tmp_path, "--processes", "2"), cli_env(None))
    running.wait_for("two workers", lambda: len(workers_of(running.proc.pid)) == 2)
    running.wait_for("a final", lambda: b"] " in running.stdout)
    victim = min(workers_of(running.proc.pid))
    os.kill(victim, signal.SIGKILL)
    run = running.finish(timeout=60)
    assert run.returncode == 1, run.describe()
    assert "Traceback" not in run.stdout + run.stderr, run.describe()
    failed, ok = [], []
    for name in SCRIPTS:
        status = run.status_lines(f"{name}.wav")
        (failed if status[-1].startswith("done: failed") else ok).append(name)
        if name in failed:
            errors = run.error_lines(f"{name}.wav")
            assert errors == [
                f"error: its worker process ({victim}) was killed by SIGKILL: "
                "the file did not finish"
            ], run.describe()
        else:
            assert status[-1].startswith("done: ok"), run.describe()
    assert len(failed) == 2 and len(ok) == 2, run.describe()


# ------------------------------------------------------- the key, the budget


SECRET = "sk-e2e-SECRET-4b1c9e7d2a6f"


def test_the_key_reaches_the_workers_but_never_their_argv(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """With a key set, the workers authenticate (the simulator accepts only that key)
    and no process's command line holds it."""
    files = {k: clips[k] for k in ("alpha", "beta")}
    with SimulatorThread(
        SimConfig(api_keys=[SECRET]),
        ScriptedRecognizer.tone,
    ) as url:
        running = Running(
            transcribe_args(files, tmp_path, "--speed", "2", "--url", url, "--processes", "2"),
            cli_env(api_key=SECRET),
        )
        running.wait_for("two workers", lambda: len(workers_of(running.proc.pid)) == 2)
        lines = [*workers_of(running.proc.pid).values()]
        lines.append((pathlib.Path(f"/proc/{running.proc.pid}/cmdline")).read_bytes().decode())
        run = running.finish(timeout=60)
    assert run.returncode == 0, run.describe()
    for line in lines:
        assert SECRET not in line and "4b1c9e7d2a6f" not in line, line
    assert SECRET not in run.stdout + run.stderr


class Door:
    """A TCP relay in front of a server that notes when each connection arrives."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.arrivals: list[float] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.open = 0
        self.most_open = 0  # connections open at once, at most
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.arrivals.append(time.monotonic())
            with self._lock:
                self.open += 1
                self.most_open = max(self.most_open, self.open)
            self._sockets.append(client)
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
            self._sockets.append(server)
            for a, b, last in ((client, server, True), (server, client, False)):
                thread = threading.Thread(target=self._pump, args=(a, b, last), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, client: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        if client:  # the client hung up: the connection is over
            with self._lock:
                self.open -= 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (Linux)
        self.listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=10)  # real-time: the relay's threads see their sockets end
        for sock in self._sockets:
            sock.close()


def test_workers_share_the_task_start_budget(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """The parent's budget cut to a tenth (``STENO_RATE_SHARE=0.1``: paraformer 2 starts
    a second, burst 2) and split over 2 workers: 10 files' task starts, counted at the
    server's door, never come faster than that one budget allows (k-th start no earlier
    than (k - 2) / 2 s after the first). Two workers each with the whole tenth would
    have started all 10 in about 1.5 s."""
    files = {f"{name}{n}": path for n in range(3) for name, path in clips.items()}
    files = dict(list(files.items())[:10])
    # --start-rate 20: the service's paraformer budget, which a local simulator would
    # otherwise replace with its own declaration (none)
    args = ["-v", "transcribe", *map(os.fspath, files.values()), "--fast", "--processes", "2",
            "--start-rate", "20", "--format", "txt", "--out", os.fspath(tmp_path)]  # fmt: skip
    env = cli_env(api_key="k")
    env["STENO_RATE_SHARE"] = "0.1"
    with SimulatorThread(SimConfig(), ScriptedRecognizer.tone) as url:
        port = int(url.split(":")[2].split("/")[0])
        door = Door(port)
        try:
            running = Running([*args, "--url", url.replace(str(port), str(door.port))], env)
            run = running.finish(timeout=90)
        finally:
            door.close()
    assert run.returncode == 0, run.describe()
    exited = run.log_events("shard.worker.exited")
    assert sorted(r["files"] for r in exited) == [5, 5], run.describe()
    starts = sorted(door.arrivals)
    assert len(starts) == 10, run.describe()
    for k, t in enumerate(starts, start=1):
        assert t - starts[0] >= (k - 2) / 2 - 0.25, (k, [round(s - starts[0], 2) for s in starts])


def test_workers_never_outlive_a_killed_parent(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """kill -9 of the parent mid-stream: its workers see their stdin end and exit."""
    files = {k: clips[k] for k in ("alpha", "beta")}
    running = Running(transcribe_args(files, tmp_path, "--processes", "2"), cli_env(None))
    running.wait_for("two workers", lambda: len(workers_of(running.proc.pid)) == 2)
    pids = list(workers_of(running.proc.pid))
    running.wait_for("a final", lambda: b"] " in running.stdout)
    os.kill(running.proc.pid, signal.SIGKILL)
    running.finish(timeout=30)
    deadline = time.monotonic() + 15  # real-time: orphans notice their parent is gone
    while any(_state(pid) != "Z" for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)  # real-time: polling other processes
    assert all(_state(pid) == "Z" for pid in pids), {pid: _state(pid) for pid in pids}


@pytest.mark.parametrize(("jobs", "processes"), [(1, 1), (3, 2)])
def test_jobs_is_the_files_at_once_in_all(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path, jobs: int, processes: int
) -> None:
    """``--jobs`` bounds the connections open at once however many processes there are
    (each worker gets its part); ``--jobs 1`` streams one file at a time, in this
    process, even with ``--processes 2``."""
    # an explicit --start-rate: no probe of the simulator's budget through the door
    # (it would be one more connection than the files)
    args = ["-v", "transcribe", *map(os.fspath, clips.values()), "--speed", "4",
            "--jobs", str(jobs), "--processes", "2", "--start-rate", "20",
            "--format", "txt", "--out", os.fspath(tmp_path)]  # fmt: skip
    with SimulatorThread(SimConfig(), ScriptedRecognizer.tone) as url:
        port = int(url.split(":")[2].split("/")[0])
        door = Door(port)
        try:
            running = Running([*args, "--url", url.replace(str(port), str(door.port))],
                              cli_env(api_key="k"))  # fmt: skip
            run = running.finish(timeout=90)
        finally:
            door.close()
    assert run.returncode == 0, run.describe()
    assert len(door.arrivals) == len(clips)
    assert door.most_open <= jobs, door.most_open
    started = run.log_events("shard.workers.started")
    assert [len(s["pids"]) for s in started] == ([] if processes == 1 else [processes])


def test_translate_shares_the_files_too(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """``steno translate`` runs the same file path: with two workers it prints the same
    lines per file (transcripts and translations) and writes the same files."""
    files = [os.fspath(clips[k]) for k in ("alpha", "beta")]
    runs = run_steno_concurrently(
        [
            (["-v", "translate", *files, "--to", "zh", "--recognizer", "scripted", "--fast",
              "--format", "txt", "--out", os.fspath(tmp_path / f"p{n}"), "--processes", n],
             cli_env(None))
            for n in ("1", "2")
        ],
        timeout=120,
    )  # fmt: skip
    one, two = runs
    for run in runs:
        assert run.returncode == 0, run.describe()
    for name in ("alpha", "beta"):
        assert comparable(two, f"{name}.wav") == comparable(one, f"{name}.wav"), two.describe()
        assert any("Translate ==> [zh]" in line for line in two.stream_lines(f"{name}.wav"))
    assert sorted(p.name for p in (tmp_path / "p2").iterdir()) == sorted(
        p.name for p in (tmp_path / "p1").iterdir()
    )
    for path in (tmp_path / "p1").iterdir():
        assert (tmp_path / "p2" / path.name).read_text() == path.read_text(), path.name
    assert len(two.log_events("shard.worker.exited")) == 2
