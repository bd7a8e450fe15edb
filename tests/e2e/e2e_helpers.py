"""Helpers of the end-to-end CLI tests: run ``steno`` as a real process, host a
simulator for it on 127.0.0.1, make broken audio, and check the output formats.

Every CLI run is a subprocess with ``CI=true``, no stdin and a hard timeout, so a
hang fails the test instead of the suite. A simulator the test needs runs in a
thread with its own ``trio.run`` (the CLI is another process, so the test's own
event loop, if any, is not involved).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import os
import pathlib
import re
import select
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import msgspec
import numpy as np
import pytest
import soundfile
import trio

from adapters.recognizers.base import Recognizer
from adapters.sim.config import SimConfig
from adapters.sim.server import open_simulator
from engine.cli import main as steno_main
from engine.events import EventUnion, decode_jsonl_line

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "audio"
DEMO_NAMES = ("meeting", "numbers", "weather")
FORMATS = ("txt", "srt", "vtt", "jsonl")

SIM_NOTICE = "steno: no DASHSCOPE_API_KEY set: using the embedded simulator at ws://127.0.0.1:"


def demo_wav(name: str) -> pathlib.Path:
    return DEMO / f"{name}.wav"


def demo_text(name: str) -> str:
    return (DEMO / f"{name}.txt").read_text(encoding="utf-8")


def demo_sentences(name: str) -> list[str]:
    return [line.strip() for line in demo_text(name).splitlines() if line.strip()]


def scripted_lines(name: str) -> list[str]:
    """The demo file's sentences as the scripted transcript recognizer finals them:
    capitalized, with a full stop."""
    return [s[:1].upper() + s[1:] + "." for s in demo_sentences(name)]


def demo_duration_s(name: str) -> float:
    return float(soundfile.info(str(demo_wav(name))).duration)


# --------------------------------------------------------------------- the CLI


def steno_command() -> list[str]:
    """The installed ``steno`` console script next to this interpreter, else ``-m``."""
    script = pathlib.Path(sys.executable).with_name("steno")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "engine.cli"]


def cli_env(api_key: str | None = None) -> dict[str, str]:
    """The test's environment with ``CI=true`` and ``DASHSCOPE_API_KEY`` exactly ``api_key``.

    ``None`` removes the key, so ``steno transcribe`` starts the embedded simulator.
    """
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    env["CI"] = "true"
    env.pop("COLUMNS", None)
    if api_key is not None:
        env["DASHSCOPE_API_KEY"] = api_key
    return env


class CliRun(msgspec.Struct, frozen=True, kw_only=True):
    """What one ``steno`` process did."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    on_cpu_s: float | None = None
    """The process's main thread on a CPU (Linux ``/proc/PID/schedstat``; else None)."""
    queued_s: float | None = None
    """The main thread runnable but waiting for a CPU: a loaded machine's share."""

    @property
    def waiting_s(self) -> float:
        """The wall time the main thread spent blocked: on timers, peers, other threads.

        ``elapsed_s`` less the time on a CPU and in the run queue, so it does not grow
        with the machine's load the way ``elapsed_s`` does: a bound on it holds on a
        loaded machine and still catches a sleep or a hang. Without the scheduler's
        figures (not Linux), it is ``elapsed_s``.
        """
        if self.on_cpu_s is None or self.queued_s is None:
            return self.elapsed_s
        return max(0.0, self.elapsed_s - self.on_cpu_s - self.queued_s)

    @property
    def stdout_lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def stream_lines(self, stream: str) -> list[str]:
        """The console lines of one stream, without the ``[stream] `` prefix.

        Its transcript (stdout) first, then its status lines (stderr: errors,
        reconnects, metrics, ``done:``), each in the order printed.
        """
        return self.transcript_lines(stream) + self.status_lines(stream)

    def transcript_lines(self, stream: str) -> list[str]:
        """The transcript lines (stdout) of one stream, without the prefix."""
        prefix = f"[{stream}] "
        return [line[len(prefix) :] for line in self.stdout_lines if line.startswith(prefix)]

    def status_lines(self, stream: str) -> list[str]:
        """The status lines (stderr) of one stream, without the prefix."""
        prefix = f"[{stream}] "
        return [line[len(prefix) :] for line in self.stderr_lines if line.startswith(prefix)]

    def error_lines(self, stream: str) -> list[str]:
        return [line for line in self.stream_lines(stream) if line.startswith("error: ")]

    def log_events(self, name: str) -> list[dict[str, Any]]:
        """The structured log records on stderr named ``name`` (JSON: run with ``-v`` off a terminal)."""
        records = []
        for line in self.stderr_lines:
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                records.append(record)
        return records

    def describe(self) -> str:
        """Everything the process printed, for assertion messages."""
        return (
            f"$ steno {' '.join(self.args)}\nexit {self.returncode} after {self.elapsed_s:.1f} s\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def run_steno(
    *args: str | os.PathLike[str],
    env: dict[str, str],
    timeout: float,
    cwd: pathlib.Path = ROOT,
) -> CliRun:
    """Run ``steno ARGS`` to completion with no stdin; fail the test after ``timeout`` s.

    Like ``subprocess.run(..., capture_output=True, timeout=timeout)`` (it also waits
    for the end of both outputs), and on Linux the result also says how the main
    thread spent its time (on a CPU, queued for one, blocked): read from
    ``/proc/PID/schedstat`` once the process has exited, before it is reaped.
    """
    argv = [os.fspath(a) for a in args]
    started = time.monotonic()
    proc = subprocess.Popen(
        [*steno_command(), *argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    outputs = [_Drain(proc.stdout), _Drain(proc.stderr)]
    try:
        # real-time: a real process; killed at the deadline
        exited = _wait_unreaped(proc, timeout)
        sched = _schedstat(proc.pid) if exited else None
        ended = exited and all(o.join(started + timeout) for o in outputs)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for output in outputs:
            output.join(time.monotonic() + 5)
    stdout, stderr = (o.text() for o in outputs)
    if not ended:
        raise AssertionError(
            f"steno {' '.join(argv)} did not end within {timeout} s (killed)\n"
            f"--- stdout\n{stdout}--- stderr\n{stderr}"
        )
    return CliRun(
        args=argv,
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        elapsed_s=elapsed,
        on_cpu_s=None if sched is None else sched[0],
        queued_s=None if sched is None else sched[1],
    )


class _Drain:
    """Reads a pipe to its end in a thread (as ``Popen.communicate`` does)."""

    def __init__(self, pipe: IO[bytes] | None) -> None:
        assert pipe is not None
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        with pipe:
            while chunk := os.read(pipe.fileno(), 65536):
                self._chunks.append(chunk)

    def join(self, deadline: float) -> bool:
        """Wait for the end of the output until ``deadline`` (monotonic); True if it came."""
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")


def _wait_unreaped(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``proc`` to exit, leaving it unreaped where the OS can
    (Linux: a pidfd and ``waitid(WNOWAIT)``), so its ``/proc`` entry is still there."""
    if not hasattr(os, "pidfd_open"):
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    pidfd = os.pidfd_open(proc.pid)
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        if not readable:
            return False
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
        return True
    finally:
        os.close(pidfd)


def _schedstat(pid: int) -> tuple[float, float] | None:
    """``(on CPU, queued)`` seconds of ``pid``'s main thread, or None where unknown."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/schedstat").read_text().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def run_steno_concurrently(
    runs: Sequence[tuple[Sequence[str | os.PathLike[str]], dict[str, str]]],
    *,
    timeout: float,
    jobs: int | None = None,
) -> list[CliRun]:
    """``run_steno`` for each ``(args, env)`` at the same time; results in order.

    Independent runs overlap their start-up (imports) instead of queueing it.
    ``jobs`` caps how many run at once (default: all), for CPU-bound runs such as
    the pocketsphinx ones, which only slow each other down past the core count.
    """
    workers = max(min(len(runs), jobs or len(runs)), 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_steno, *args, env=env, timeout=timeout) for args, env in runs]
        return [future.result() for future in futures]


def run_steno_in_process(
    *args: str | os.PathLike[str],
    capfd: pytest.CaptureFixture[str],
    env: dict[str, str | None] | None = None,
) -> CliRun:
    """``steno ARGS`` as the console script runs it (``sys.exit(main())``), in this process.

    For usage errors that end before any I/O (argparse, option checks, config files):
    the same ``main`` decides the same exit code and prints the same lines, without
    the second of CPU a new interpreter spends importing. Its environment is this
    process's as ``cli_env(None)`` makes it (``CI=true``, no ``DASHSCOPE_API_KEY``),
    with ``env``'s entries set (``None``: removed) for the call only. An exception
    that escapes ``main`` becomes a traceback on stderr and exit 1, as in a process.
    Anything that starts a server, a device or a signal handler needs ``run_steno``.
    """
    argv = [os.fspath(a) for a in args]
    overrides: dict[str, str | None] = {"CI": "true", "DASHSCOPE_API_KEY": None, "COLUMNS": None}
    overrides |= env or {}
    capfd.readouterr()  # what the test printed before is not this run's
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in overrides.items():
            if value is None:
                patch.delenv(key, raising=False)
            else:
                patch.setenv(key, value)
        try:
            code = _exit_code(steno_main(argv))
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:  # what a process would print before it died
            sys.stderr.write(traceback.format_exc())
            code = 1
    out, err = capfd.readouterr()
    return CliRun(
        args=argv, returncode=code, stdout=out, stderr=err, elapsed_s=time.monotonic() - started
    )


def _exit_code(code: object) -> int:
    """The status ``sys.exit(code)`` gives a process (a message is printed, and is 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# ------------------------------------------------------------------ simulator


class SimulatorThread:
    """A TCP simulator on 127.0.0.1 (any free port) in a thread with its own ``trio.run``.

    Use as a context manager; it yields the inference URL, and stops the server
    and closes the recognizer on the way out.

    Args:
        config: the simulator's settings (keep ``host`` 127.0.0.1 and ``port`` 0).
        recognizer: builds the recognizer inside the simulator's thread.
    """

    def __init__(self, config: SimConfig, recognizer: Callable[[], Recognizer]) -> None:
        self._config = config
        self._make_recognizer = recognizer
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="simulator", daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self.url = ""

    def __enter__(self) -> str:
        self._thread.start()
        # real-time: the simulator binds a real socket in a real thread; bounded wait.
        if not self._ready.wait(timeout=30) or self._error is not None or not self.url:
            self._stop()
            raise RuntimeError(f"the simulator did not start: {self._error!r}")
        return self.url

    def __exit__(self, *exc_info: object) -> None:
        self._stop()
        if self._error is not None:
            raise RuntimeError("the simulator thread failed") from self._error

    def _stop(self) -> None:
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._scope.cancel)
        self._thread.join(timeout=30)  # real-time: the thread's trio.run winds down
        if self._thread.is_alive():
            raise RuntimeError("the simulator thread did not stop within 30 s")

    def _thread_main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        recognizer = self._make_recognizer()
        try:
            with trio.CancelScope() as scope:
                async with open_simulator(self._config, recognizer) as handle:
                    self._scope = scope
                    self._token = trio.lowlevel.current_trio_token()
                    self.url = handle.inference_url
                    self._ready.set()
                    await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await recognizer.aclose()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port that refuses connections: bound (so nobody else takes it) but
    not listening, for as long as the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# -------------------------------------------------------------- broken input


def write_low_rate_wav(path: pathlib.Path, rate: int = 4000, seconds: float = 1.0) -> None:
    """A valid 16-bit PCM WAV of a 440 Hz tone at ``rate`` Hz."""
    t = np.arange(int(rate * seconds)) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    soundfile.write(str(path), tone, rate, subtype="PCM_16")


def write_truncated_header_wav(path: pathlib.Path, source: pathlib.Path) -> None:
    """The first 30 bytes of ``source``: the RIFF header cut off inside the fmt chunk."""
    path.write_bytes(source.read_bytes()[:30])


def write_garbled_header_wav(path: pathlib.Path, source: pathlib.Path) -> None:
    """``source`` with its ``WAVEfmt `` magic overwritten (the rest intact)."""
    data = bytearray(source.read_bytes()[:64_000])
    data[8:16] = b"GARBLED!"
    path.write_bytes(bytes(data))


# ---------------------------------------------------------- output formats

_SRT_TIME = re.compile(r"^(\d{2,}):(\d{2}):(\d{2}),(\d{3}) --> (\d{2,}):(\d{2}):(\d{2}),(\d{3})$")
_VTT_TIME = re.compile(r"^(\d{2,}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2,}):(\d{2}):(\d{2})\.(\d{3})$")


class Cue(msgspec.Struct, frozen=True):
    index: int
    start_ms: int
    end_ms: int
    text: str


def _ms(h: str, m: str, s: str, ms: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)


def _parse_cues(blocks: Sequence[str], timing: re.Pattern[str], what: str) -> list[Cue]:
    cues = []
    for block in blocks:
        lines = block.split("\n")
        assert len(lines) >= 3, f"{what}: a cue needs number, timing and text: {block!r}"
        assert lines[0].isdigit(), f"{what}: bad cue number {lines[0]!r}"
        match = timing.match(lines[1])
        assert match, f"{what}: bad timing line {lines[1]!r}"
        g = match.groups()
        text = "\n".join(lines[2:])
        assert text.strip(), f"{what}: empty cue text in {block!r}"
        cues.append(Cue(int(lines[0]), _ms(*g[:4]), _ms(*g[4:]), text))
    return cues


def _check_cue_order(cues: Sequence[Cue], what: str) -> None:
    assert [c.index for c in cues] == list(range(1, len(cues) + 1)), (
        f"{what}: cue numbers are not 1..n: {[c.index for c in cues]}"
    )
    for cue in cues:
        assert cue.start_ms < cue.end_ms, f"{what}: cue {cue.index} does not move forward"
    for before, after in itertools.pairwise(cues):
        assert before.start_ms < after.start_ms, f"{what}: cue {after.index} starts too early"
        assert before.end_ms <= after.start_ms, f"{what}: cue {after.index} overlaps"


def parse_srt(text: str) -> list[Cue]:
    """Parse and check a SubRip file: numbered 1..n, times increasing, no overlap."""
    assert "\r" not in text
    body = text.strip("\n")
    cues = _parse_cues(body.split("\n\n") if body else [], _SRT_TIME, "srt")
    _check_cue_order(cues, "srt")
    return cues


def parse_vtt(text: str) -> list[Cue]:
    """Parse and check a WebVTT file: ``WEBVTT`` header, then cues like SRT's."""
    assert text.startswith("WEBVTT\n"), f"vtt: no WEBVTT header: {text[:40]!r}"
    header, _, body = text.partition("\n\n")
    assert header == "WEBVTT", f"vtt: unexpected header block {header!r}"
    body = body.strip("\n")
    cues = _parse_cues(body.split("\n\n") if body else [], _VTT_TIME, "vtt")
    _check_cue_order(cues, "vtt")
    return cues


def parse_jsonl(text: str) -> list[EventUnion]:
    """Decode every line with ``engine.events.decode_jsonl_line`` (which must not fail)."""
    assert text.endswith("\n"), "jsonl: the last line is not terminated"
    return [decode_jsonl_line(line) for line in text.splitlines()]
