"""Every ``steno`` verb with hostile arguments: never a traceback.

An exception that escapes a verb is a bug. Each case runs ``steno`` to completion
and must end with its documented exit code (2: bad usage, one ``steno: error:``
line naming the fix; 1: the work failed) and no traceback on either stream.

Cases refused before any I/O (argparse, option checks, config files) run the CLI's
``main`` in this process, as the console script does: same code, same lines, no
interpreter start-up per case. Those that start a server, open a device or run the
work, and the bare ``steno`` of the console script itself, run as real processes.
"""

from __future__ import annotations

import pathlib
import socket
from collections.abc import Iterator

import pytest
from e2e_helpers import (
    CliRun,
    cli_env,
    demo_wav,
    run_steno_concurrently,
    run_steno_in_process,
)

pytestmark = pytest.mark.slow

WAV = str(demo_wav("weather"))
SCRIPTED = ("--recognizer", "scripted")


@pytest.fixture(name="busy_port", scope="module")
def _busy_port() -> Iterator[int]:
    """A 127.0.0.1 port something is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def cases(tmp: pathlib.Path, busy_port: int) -> dict[str, tuple[list[str], int]]:
    """name → (arguments, exit code): refused before any I/O (run in this process)."""
    a_file = tmp / "a-file"
    a_file.write_text("not a directory")
    empty = tmp / "empty.toml"
    empty.write_text('[daemon]\nsimulator = "scripted"\n')
    garbage = tmp / "garbage.toml"
    garbage.write_text("[daemon\nthis is not toml")
    return {
        "transcribe http url": (["transcribe", WAV, "--url", "http://127.0.0.1:9/x"], 2),
        "transcribe garbage url": (["transcribe", WAV, "--url", "garbage"], 2),
        "transcribe bad port url": (["transcribe", WAV, "--url", "ws://127.0.0.1:99999/x"], 2),
        "transcribe nan speed": (["transcribe", WAV, "--speed", "nan"], 2),
        "transcribe no jobs": (["transcribe", WAV, "--jobs", "0"], 2),
        "transcribe bad format": (["transcribe", WAV, "--format", "docx"], 2),
        "transcribe bad fault": (["transcribe", WAV, "--sim-fault", "nonsense"], 2),
        "transcribe unknown model": (["transcribe", WAV, "--model", "nope"], 2),
        "translate no language": (["translate", WAV, "--to", ","], 2),
        "translate ftp url": (["translate", WAV, "--to", "zh", "--url", "ftp://x/y"], 2),
        "simulate port out of range": (["simulate", "--port", "70000", *SCRIPTED], 2),
        "simulate busy port": (["simulate", "--port", str(busy_port), *SCRIPTED], 2),
        "simulate missing key file": (["simulate", "--api-key-file", "/nonexistent"], 2),
        "simulate bad fault": (["simulate", "--fault", "nonsense", *SCRIPTED], 2),
        "batch websocket url": (["batch", "submit", WAV, "--url", "ws://x/y"], 2),
        "batch unwritable out": (["batch", "submit", WAV, "--out", f"{a_file}/x", *SCRIPTED], 2),
        "batch status without key": (["batch", "status", "t1"], 2),
        "batch list page zero": (
            ["batch", "list", "--url", "http://127.0.0.1:9/api/v1", "--page", "0"],
            2,
        ),
        "prepare missing input": (["prepare", "/nonexistent.mp4", "-o", str(tmp / "p")], 1),
        "prepare bad bitrate": (["prepare", WAV, "-o", str(tmp / "p"), "--bitrate", "0"], 2),
        "listen negative duration": (["listen", "--duration", "-1"], 2),
        "daemon missing config": (["daemon", "/nonexistent.toml"], 2),
        "daemon no stream": (["daemon", str(empty), "--check"], 2),
        "daemon garbage config": (["daemon", str(garbage), "--check"], 2),
        "scenario missing file": (["scenario", "check", "/nonexistent.toml"], 2),
        "scenario garbage file": (["scenario", "run", str(garbage)], 2),
    }


PROCESS_CASES: dict[str, tuple[list[str], int]] = {
    "no verb": ([], 2),  # the console script's own argv, parsed in a process of its own
    "transcribe missing file": (["transcribe", "/nonexistent.wav", *SCRIPTED, "--fast"], 1),
    # PortAudio lists devices once per process: never initialise it in the test's.
    "listen no such device": (["listen", "--device", "nosuch", *SCRIPTED], 2),
}
"""name → (arguments, exit code): needs a process of its own (a server, a device, argv)."""


def test_no_refused_case_ends_in_a_traceback(
    tmp_path: pathlib.Path, busy_port: int, capfd: pytest.CaptureFixture[str]
) -> None:
    failures = [
        _why(name, run_steno_in_process(*args, capfd=capfd), code)
        for name, (args, code) in cases(tmp_path, busy_port).items()
    ]
    assert not [f for f in failures if f], "\n\n".join(f for f in failures if f)


def test_no_process_ends_in_a_traceback() -> None:
    runs = run_steno_concurrently(
        [(args, cli_env(None)) for args, _ in PROCESS_CASES.values()], timeout=90
    )
    failures = [
        _why(name, run, code)
        for (name, (_, code)), run in zip(PROCESS_CASES.items(), runs, strict=True)
        if _why(name, run, code)
    ]
    assert not failures, "\n\n".join(failures)


def _why(name: str, run: CliRun, code: int) -> str:
    """What is wrong with one run ('' when nothing)."""
    if "Traceback" in run.stdout + run.stderr:
        return f"{name}: a traceback\n{run.describe()}"
    if run.returncode != code:
        return f"{name}: exit {run.returncode}, not {code}\n{run.describe()}"
    if code == 2 and not any(
        line.startswith(("steno: error: ", "steno scenario: error: ", "usage: steno"))
        for line in run.stderr_lines
    ):
        return f"{name}: no one-line error\n{run.describe()}"
    return ""


@pytest.mark.parametrize(
    ("variable", "value"), [("STENO_TRANSPORT", "bogus"), ("STENO_RATE_SHARE", "2")]
)
def test_a_bad_environment_variable_is_one_line_before_any_stream(
    tmp_path: pathlib.Path, capfd: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    """A wrong transport or rate share is exit 2 with one line naming it, at start-up."""
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")  # never opened: the variable is refused first
    run = run_steno_in_process(
        "transcribe", wav, *SCRIPTED, "--fast", capfd=capfd, env={variable: value}
    )
    assert run.returncode == 2, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and "Traceback" not in run.stderr, run
