"""``steno transcribe`` with bad input, a bad key or no server: one clear line, a
non-zero exit, and the other files of the run unaffected.

Each bad file runs together with a good demo file against a simulator this module
hosts on 127.0.0.1 (a scripted recognizer that "hears" the demo file's known
sentences, so the good file's transcript is exact and the run takes about a second).

``steno translate`` with options the model cannot honour or files that cannot be
used (``--image``, ``--phrases``): one ``steno: error:`` line naming the fix, exit 2,
before anything starts (no simulator, no output directory).

Usage errors decided before any I/O run the CLI's ``main`` in this process
(``run_steno_in_process``: same exit code, same lines, no interpreter start-up);
everything that starts a simulator or streams runs as a real process.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest
from e2e_helpers import (
    FORMATS,
    CliRun,
    SimulatorThread,
    cli_env,
    demo_sentences,
    demo_wav,
    parse_jsonl,
    parse_srt,
    refused_port,
    run_steno,
    run_steno_concurrently,
    run_steno_in_process,
    scripted_lines,
    write_garbled_header_wav,
    write_low_rate_wav,
    write_truncated_header_wav,
)

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim.config import SimConfig
from adapters.sim.server import INFERENCE_PATH
from engine.cli import EXIT_USAGE
from engine.events import StreamEnded

KEY = "right"
GOOD = "numbers"


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """A simulator that accepts only the key ``right``."""
    with SimulatorThread(
        SimConfig(api_keys=[KEY]),
        lambda: ScriptedRecognizer.transcript(demo_sentences(GOOD)),
    ) as url:
        yield url


def _no_traceback(run: CliRun) -> None:
    assert "Traceback" not in run.stdout + run.stderr, run.describe()


def _assert_good_file_unaffected(run: CliRun, out: pathlib.Path) -> None:
    lines = run.stream_lines(f"{GOOD}.wav")
    assert lines[:2] == scripted_lines(GOOD), run.describe()
    assert any(line.startswith("done: ok, 2 finals, 0 reconnects") for line in lines), lines
    assert not run.error_lines(f"{GOOD}.wav")
    assert (out / f"{GOOD}.txt").read_text().splitlines() == scripted_lines(GOOD)
    assert [c.text for c in parse_srt((out / f"{GOOD}.srt").read_text())] == scripted_lines(GOOD)
    assert (out / f"{GOOD}.vtt").read_text().startswith("WEBVTT\n")
    ended = parse_jsonl((out / f"{GOOD}.jsonl").read_text())[-1]
    assert isinstance(ended, StreamEnded)
    assert ended.status == "ok"


# ------------------------------------------------------------ bad files

Maker = Callable[[pathlib.Path], pathlib.Path]


def _missing(d: pathlib.Path) -> pathlib.Path:
    return d / "nope.wav"


def _empty(d: pathlib.Path) -> pathlib.Path:
    (d / "empty.wav").write_bytes(b"")
    return d / "empty.wav"


def _not_audio(d: pathlib.Path) -> pathlib.Path:
    (d / "notes.wav").write_text("These are meeting notes, not a recording.\n")
    return d / "notes.wav"


def _low_rate(d: pathlib.Path) -> pathlib.Path:
    write_low_rate_wav(d / "low-4k.wav", rate=4000)
    return d / "low-4k.wav"


def _truncated_header(d: pathlib.Path) -> pathlib.Path:
    write_truncated_header_wav(d / "truncated.wav", demo_wav(GOOD))
    return d / "truncated.wav"


def _garbled_header(d: pathlib.Path) -> pathlib.Path:
    write_garbled_header_wav(d / "garbled.wav", demo_wav(GOOD))
    return d / "garbled.wav"


def _cut_short(d: pathlib.Path) -> pathlib.Path:
    """A WAV whose header is whole but whose data stops at a third (a broken copy)."""
    data = demo_wav(GOOD).read_bytes()
    (d / "cut.wav").write_bytes(data[: len(data) // 3])
    return d / "cut.wav"


NOT_AUDIO = r"is not audio or its header is corrupt \(libsndfile: .+\); fix: check that it plays, or convert it"

# id -> (make the bad file in a directory, the error message it must give)
BAD_FILES: dict[str, tuple[Maker, str]] = {
    "missing": (_missing, r"^audio file not found: .*nope\.wav; fix: check the path$"),
    "empty": (_empty, r"^.*empty\.wav is empty \(0 bytes\); fix: pass a file that contains audio$"),
    "not-audio": (_not_audio, rf"^.*notes\.wav {NOT_AUDIO}"),
    "rate-4khz": (
        _low_rate,
        r"^.*low-4k\.wav is 4000 Hz; Stenograph needs 8–48 kHz; fix: resample it, e\.g\. `ffmpeg .*-ar 16000",
    ),
    "truncated-header": (_truncated_header, rf"^.*truncated\.wav {NOT_AUDIO}"),
    "garbled-header": (_garbled_header, rf"^.*garbled\.wav {NOT_AUDIO}"),
}


class BadFileRun(NamedTuple):
    run: CliRun
    bad: pathlib.Path
    out: pathlib.Path


@pytest.fixture(scope="module")
def bad_file_runs(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, BadFileRun]:
    """Each bad file with the good demo file, one run per bad file, all at once."""
    makers = {case: make for case, (make, _) in BAD_FILES.items()} | {"cut-short": _cut_short}
    cases = []
    for case, make in makers.items():
        base = tmp_path_factory.mktemp(case)
        cases.append((case, make(base), base / "out"))
    runs = run_steno_concurrently(
        [
            (
                ["transcribe", bad, demo_wav(GOOD), "--fast", "--url", sim_url, "--out", out],
                cli_env(api_key=KEY),
            )
            for _, bad, out in cases
        ],
        timeout=60,
    )
    return {
        case: BadFileRun(run, bad, out) for (case, bad, out), run in zip(cases, runs, strict=True)
    }


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_gives_one_line_and_spares_the_good_file(
    bad_file_runs: dict[str, BadFileRun], case: str
) -> None:
    run, bad, out = bad_file_runs[case]
    message = BAD_FILES[case][1]
    assert run.returncode == 1, run.describe()
    _no_traceback(run)
    stream = bad.name
    errors = run.error_lines(stream)
    assert len(errors) == 1, run.describe()
    assert re.search(message, errors[0].removeprefix("error: ")), errors[0]
    assert run.stream_lines(stream) == [
        errors[0],
        "done: failed, 0 finals, 0 reconnects, audio lost 0 ms",
    ]
    # The bad file wrote nothing (it failed before any output was opened); the good
    # one is whole.
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{GOOD}.{f}" for f in FORMATS)
    _assert_good_file_unaffected(run, out)


def test_file_cut_short_is_transcribed_and_reported(
    bad_file_runs: dict[str, BadFileRun],
) -> None:
    """A WAV whose data stops before its header says: what is there is transcribed,
    one line says the file is cut short, and the exit code is 3 (audio lost)."""
    run, bad, out = bad_file_runs["cut-short"]
    assert run.returncode == 3, run.describe()
    _no_traceback(run)
    (error,) = run.error_lines(bad.name)
    assert re.fullmatch(
        r"error: .*cut\.wav is cut short: its header promises 6\.855 s of audio but the file"
        r" ends after 2\.\d{3} s \(only that much was sent\); fix: copy or export the file again",
        error,
    ), error
    assert run.stream_lines(bad.name)[-1].startswith("done: partial, ")
    assert (out / "cut.txt").exists()
    assert isinstance(ended := parse_jsonl((out / "cut.jsonl").read_text())[-1], StreamEnded)
    assert ended.status == "partial"
    _assert_good_file_unaffected(run, out)


# ------------------------------------------------------ usage errors

# id -> (flags, the start of the one ``steno: error:`` line)
BAD_OPTIONS: dict[str, tuple[list[str], str]] = {
    "speed-0": (["--speed", "0"], "steno: error: --speed must be a positive number, got 0; fix: "),
    "speed-nan": (
        ["--speed", "nan"],
        "steno: error: --speed must be a positive number, got nan; fix: ",
    ),
    "finish-timeout-negative": (
        ["--finish-timeout", "-1"],
        "steno: error: --finish-timeout must be a positive number, got -1",
    ),
    "format-unknown": (
        ["--format", "txt,doc"],
        "steno: error: unknown output format 'doc'; fix: use txt",
    ),
    "model-unknown": (["--model", "nope"], ""),  # argparse's own message, checked below
}


def bad_option_run(case: str, capfd: pytest.CaptureFixture[str]) -> CliRun:
    """``steno transcribe GOOD.wav FLAGS``, refused before any I/O: run in this process."""
    return run_steno_in_process("transcribe", demo_wav(GOOD), *BAD_OPTIONS[case][0], capfd=capfd)


def test_unknown_model_is_a_usage_error(capfd: pytest.CaptureFixture[str]) -> None:
    run = bad_option_run("model-unknown", capfd)
    assert run.returncode == 2, run.describe()
    _no_traceback(run)
    assert run.stdout == ""
    (line,) = [line for line in run.stderr_lines if "error" in line]
    assert "argument --model: invalid choice: 'nope'" in line
    assert "paraformer-realtime-v2" in line  # the valid choices are the fix
    assert "embedded simulator" not in run.stderr  # nothing was started


@pytest.mark.parametrize("case", [c for c in BAD_OPTIONS if c != "model-unknown"])
def test_bad_option_value_is_a_usage_error(case: str, capfd: pytest.CaptureFixture[str]) -> None:
    run = bad_option_run(case, capfd)
    message = BAD_OPTIONS[case][1]
    assert run.returncode == 2, run.describe()
    _no_traceback(run)
    assert run.stdout == ""
    (line,) = [line for line in run.stderr_lines if line.startswith("steno: ")]
    assert line.startswith(message), run.describe()
    assert "embedded simulator" not in run.stderr  # rejected before anything started


# ------------------------------------------- translate: usage errors

LIVE = "qwen3.5-livetranslate-flash-realtime"
FIX_LIVE = f"fix: --model {LIVE}"

# id -> (flags after ``translate GOOD.wav``; {d} is a directory of bad files), and a
# regular expression the one ``steno: error:`` line must match in full
BAD_TRANSLATE: dict[str, tuple[list[str], str]] = {
    "to-unknown": (
        ["--to", "xx"],
        r"gummy-realtime-v1 cannot translate into 'xx' from any source; "
        r"fix: use one of ar, da, de, en, .*, zh",
    ),
    "audio-out-gummy": (
        ["--to", "zh", "--audio-out", "{d}/voice"],
        rf"--audio-out needs a livetranslate model, not gummy-realtime-v1; {FIX_LIVE}",
    ),
    "image-gummy": (
        ["--to", "zh", "--image", "{d}/slide.jpg"],
        rf"--image needs a livetranslate model, not gummy-realtime-v1; {FIX_LIVE}",
    ),
    "image-missing": (
        ["--to", "zh", "--model", LIVE, "--image", "{d}/missing.jpg"],
        r"bad --image: image file not found: .*/missing\.jpg; fix: check the path",
    ),
    "image-not-a-picture": (
        ["--to", "zh", "--model", LIVE, "--image", "{d}/notes.jpg"],
        r"bad --image: .*notes\.jpg.*; fix: .+",  # the words depend on ffmpeg (or its absence)
    ),
    "phrases-missing": (
        ["--to", "zh", "--model", LIVE, "--phrases", "{d}/missing.toml"],
        r"cannot read --phrases .*/missing\.toml: No such file or directory; fix: check the path",
    ),
    "phrases-malformed": (
        ["--to", "zh", "--model", LIVE, "--phrases", "{d}/phrases.toml"],
        r"bad --phrases file .*/phrases\.toml: .+; fix: one 'source = \"target\"' pair a line",
    ),
}


@pytest.fixture(name="bad_inputs", scope="module")
def _bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A directory of files ``translate`` must refuse."""
    d = tmp_path_factory.mktemp("bad-translate")
    (d / "slide.jpg").write_bytes(b"\xff\xd8\xff\xe0 a picture \xff\xd9")
    (d / "notes.jpg").write_text("These are notes, not a picture.\n")
    (d / "phrases.toml").write_text("hello world\n")
    return d


def translate_error_run(
    flags: list[str], out: pathlib.Path, capfd: pytest.CaptureFixture[str]
) -> CliRun:
    """``steno translate GOOD.wav FLAGS --out OUT``: each exits in well under a second,
    before any I/O, so it runs in this process."""
    return run_steno_in_process("translate", demo_wav(GOOD), *flags, "--out", out, capfd=capfd)


@pytest.mark.parametrize("case", BAD_TRANSLATE)
def test_bad_translate_option_is_one_line_with_the_fix(
    bad_inputs: pathlib.Path, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    out = bad_inputs / f"out-{case}"
    flags = [a.format(d=bad_inputs) for a in BAD_TRANSLATE[case][0]]
    run = translate_error_run(flags, out, capfd)
    assert run.returncode == EXIT_USAGE, run.describe()
    _no_traceback(run)
    assert run.stdout == ""
    (line,) = run.stderr_lines  # nothing else: no simulator notice, no log lines
    assert re.fullmatch(f"steno: error: {BAD_TRANSLATE[case][1]}", line), line
    assert not out.exists()  # refused before any output was opened


def test_a_recognition_model_is_not_a_translate_choice(
    tmp_path: pathlib.Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    run = translate_error_run(["--to", "zh", "--model", "paraformer-realtime-v2"], out, capfd)
    assert run.returncode == EXIT_USAGE, run.describe()
    _no_traceback(run)
    assert run.stdout == ""
    (line,) = [line for line in run.stderr_lines if "error" in line]
    assert "argument --model: invalid choice: 'paraformer-realtime-v2'" in line
    for model in ("gummy-chat-v1", "gummy-realtime-v1", LIVE):  # the choices are the fix
        assert model in line
    assert "embedded simulator" not in run.stderr
    assert not out.exists()


# ------------------------------------------------------ the service


def test_wrong_key_is_rejected_with_a_fix(sim_url: str, tmp_path: pathlib.Path) -> None:
    run = run_steno(
        "transcribe",
        demo_wav(GOOD),
        "--fast",
        "--url",
        sim_url,
        "--out",
        tmp_path,
        env=cli_env(api_key="wrong"),
        timeout=30,
    )
    assert run.returncode == 1, run.describe()
    _no_traceback(run)
    stream = f"{GOOD}.wav"
    (error,) = run.error_lines(stream)
    assert re.fullmatch(
        r"error: the service rejected the API key \(HTTP 401\); fix: set DASHSCOPE_API_KEY .+",
        error,
    ), error
    # Permanent: no retries.
    assert not [line for line in run.stream_lines(stream) if line.startswith("reconnecting")]
    assert run.stream_lines(stream)[-1].startswith("done: failed, 0 finals, 0 reconnects")
    # Ended at once, not after a backoff or a timeout: the process waited (blocked, not
    # queued for a CPU on a loaded machine) for a few seconds at most.
    assert run.waiting_s < 5, (run.waiting_s, run.describe())


@pytest.mark.slow
def test_unreachable_server_gives_a_connect_error_and_ends(tmp_path: pathlib.Path) -> None:
    """A refused connection is retried a few times with backoff, then fails the stream."""
    with refused_port() as port:
        url = f"ws://127.0.0.1:{port}{INFERENCE_PATH}"
        run = run_steno(
            "transcribe",
            demo_wav(GOOD),
            "--fast",
            "--url",
            url,
            "--out",
            tmp_path,
            env=cli_env(api_key=KEY),
            timeout=45,
        )
    assert run.returncode == 1, run.describe()
    _no_traceback(run)
    assert run.elapsed_s < 30, run.describe()
    stream = f"{GOOD}.wav"
    (error,) = run.error_lines(stream)
    assert error.startswith(f"error: cannot connect to {url}: "), error
    assert "; fix: check that the service (or `steno simulate`) is running and the --url" in error
    retries = [line for line in run.stream_lines(stream) if line.startswith("reconnecting")]
    assert 1 <= len(retries) <= 5, run.describe()
    assert run.stream_lines(stream)[-1].startswith("done: failed, 0 finals, ")


def test_version_names_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    """``steno --version`` prints the package's version from its metadata and exits 0."""
    from importlib import metadata

    from engine.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"steno {metadata.version('stenograph')}\n"


# ------------------------------------------------ the SDK's environment

SDK_KEY = "sk-5dc0ffee1e55c0de"  # distinctive: no transcript or log line holds it by chance


def test_sdk_environment_reaches_the_service_and_never_shows_the_key(
    tmp_path: pathlib.Path,
) -> None:
    """``DASHSCOPE_API_KEY_FILE_PATH`` and ``DASHSCOPE_WEBSOCKET_BASE_URL``, as the
    dashscope SDK reads them: the key (stripped) reaches the service, and neither the
    info logs nor the outputs show it."""
    key_file = tmp_path / "api_key"
    key_file.write_text(f"  {SDK_KEY}\n", encoding="utf-8")
    out = tmp_path / "out"
    with SimulatorThread(
        SimConfig(api_keys=[SDK_KEY]),
        lambda: ScriptedRecognizer.transcript(demo_sentences(GOOD)),
    ) as url:
        env = cli_env(api_key=None)
        env |= {"DASHSCOPE_API_KEY_FILE_PATH": str(key_file), "DASHSCOPE_WEBSOCKET_BASE_URL": url}
        run = run_steno(
            "-v", "--log-format", "json", "transcribe", demo_wav(GOOD), "--fast", "--out", out,
            env=env,
            timeout=60,
        )  # fmt: skip
    assert run.returncode == 0, run.describe()
    _no_traceback(run)
    assert "embedded simulator" not in run.stderr
    assert run.log_events("capture.finished"), run.describe()  # info logs were on
    assert run.transcript_lines(f"{GOOD}.wav") == scripted_lines(GOOD), run.describe()
    written = "".join(p.read_text(encoding="utf-8") for p in out.iterdir())
    assert SDK_KEY not in run.stdout + run.stderr + written


@pytest.mark.parametrize("case", ["missing", "empty", "directory"])
def test_unreadable_key_file_is_one_line_and_exit_2(
    tmp_path: pathlib.Path, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "api_key"
    if case == "empty":
        path.write_text("\n", encoding="utf-8")
    elif case == "directory":
        path.mkdir()
    env: dict[str, str | None] = {"DASHSCOPE_API_KEY_FILE_PATH": str(path)}
    run = run_steno_in_process("transcribe", demo_wav(GOOD), "--fast", capfd=capfd, env=env)
    assert run.returncode == EXIT_USAGE, run.describe()
    assert run.stdout == ""
    (line,) = run.stderr_lines  # nothing else: no simulator was started, no log lines
    start = "" if case == "empty" else "cannot read "
    assert line.startswith(f"steno: error: {start}DASHSCOPE_API_KEY_FILE_PATH={path}"), line
    assert "; fix: " in line
