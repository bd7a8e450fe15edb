"""README promises of ``steno transcribe`` that only a real process can show (issue #15).

Real processes on the real clock, each bounded by a timeout, against the embedded
simulator with its scripted recognizer (tone-coded speech decodes word for word).
Each test's docstring names the bug it exists to catch.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import time

import pytest
import soundfile
from e2e_helpers import cli_env, parse_jsonl, steno_command

from adapters.recognizers.tonecode import (
    GAP_MS,
    LEAD_IN_MS,
    SENTENCE_GAP_MS,
    WORD_MS,
    split_words,
    synthesize,
)
from engine.events import AudioGap, Final, Reconnecting, StreamEnded

pytestmark = pytest.mark.slow

RATE = 16000
SCRIPTS = {
    "alpha": ["good morning", "the weather is sunny today", "we will have the budget", "thank you"],
    "beta": ["hello world", "the train leaves at seven", "please stop", "they are there tomorrow"],
    "gamma": ["yes", "the meeting is in the new room", "how are you today", "good evening"],
}


def sentence_ends_s(sentences: list[str]) -> list[float]:
    """Where each sentence's last word ends in :func:`synthesize`'s timeline, in seconds."""
    ends, t = [], LEAD_IN_MS
    for n, sentence in enumerate(sentences):
        if n:
            t += SENTENCE_GAP_MS
        words = len(split_words(sentence))
        t += words * WORD_MS + (words - 1) * GAP_MS
        ends.append(t / 1000)
    return ends


def line_of(sentence: str) -> str:
    """A sentence as the scripted recognizer finals it."""
    return sentence[:1].upper() + sentence[1:] + "."


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*steno_command(), *args],
        env=cli_env(None),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_streaming(proc: subprocess.Popen[str]) -> list[str]:
    """Block until the process reports the embedded simulator; the stderr lines so far."""
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 30  # real-time: a real process starting up
    for line in proc.stderr:
        seen.append(line)
        if "embedded simulator" in line:
            return seen
        assert time.monotonic() < deadline, "steno did not start streaming"
    raise AssertionError("steno exited before streaming:\n" + "".join(seen))


@pytest.fixture(name="clips", scope="module")
def _clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    folder = tmp_path_factory.mktemp("promises")
    paths = {}
    for name, sentences in SCRIPTS.items():
        paths[name] = folder / f"{name}.wav"
        soundfile.write(paths[name], synthesize(sentences, RATE), RATE, subtype="PCM_16")
    return paths


def test_the_first_ctrl_c_finishes_every_stream(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """Three files streaming, results 1.5 s behind the audio, one Ctrl-C: every file's
    task is finished, not dropped, so each TXT holds every sentence sent before the
    Ctrl-C (and no more than the one it cut), equal to its JSONL finals; exit 130.

    Planted bug (none was needed to pass before: only one file against a server that
    never finishes was tested): a drain that abandons the tasks instead of
    finishing them loses the finals still in flight, and with them the sentences the
    service had already heard.
    """
    out = tmp_path / "out"
    args = [
        "transcribe", *map(os.fspath, clips.values()), "--recognizer", "scripted",
        "--speed", "2", "--out", os.fspath(out), "--format", "txt,jsonl",
        "--sim-fault", "delay:1.5",
    ]  # fmt: skip
    proc = start(args)
    early = wait_for_streaming(proc)
    time.sleep(3.0)  # real-time: every file streams a while (6 s of audio at --speed 2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=30)  # real-time: bounds the drain
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"no exit 30 s after Ctrl-C\n{stdout}\n{stderr}")
    drained_s = time.monotonic() - sent
    report = f"--- stdout\n{stdout}--- stderr\n{''.join(early)}{stderr}"
    assert proc.returncode == 130, report
    assert "Traceback" not in stdout + stderr, report
    assert "finishing every stream" in stderr, report
    assert drained_s < 10.0, f"the drain took {drained_s:.1f} s: a finish deadline ran out"
    for name, sentences in SCRIPTS.items():
        status = ("".join(early) + stderr).splitlines()  # error lines are status (stderr)
        lines = [x for x in status if x.startswith(f"[{name}.wav] error: interrupted at")]
        assert len(lines) == 1, f"{name}: not one 'interrupted at' line\n{report}"
        line = lines[0]
        sent_s = float(re.search(r"interrupted at ([\d.]+) s", line).group(1))  # type: ignore[union-attr]
        events = parse_jsonl((out / f"{name}.jsonl").read_text())
        ended = events[-1]
        assert isinstance(ended, StreamEnded) and ended.status == "interrupted", report
        finals = [e.text for e in events if isinstance(e, Final)]
        txt = (out / f"{name}.txt").read_text().splitlines()
        assert txt == finals, f"{name}: the TXT is not its finals"
        heard = [
            s
            for s, end in zip(sentences, sentence_ends_s(sentences), strict=True)
            if end <= sent_s - 0.1
        ]
        assert heard, f"{name}: interrupted at {sent_s} s, before its first sentence ended"
        assert txt[: len(heard)] == [line_of(s) for s in heard], f"{name} at {sent_s} s: {txt}"
        assert len(txt) <= len(heard) + 1, f"{name}: more than was sent: {txt}"


def test_audio_lost_in_an_outage_is_exit_3(
    clips: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """The connection drops 1.5 s in, with a 0.2 s replay buffer (the sentence in
    progress alone is longer): the stream reconnects, the overflow is reported as an
    ``AudioGap(replay-overflow)`` and counted, the file ends ``partial``, exit 3.

    Planted bugs: ``exit_code`` not mapping ``partial`` to 3, or the session never
    reporting its overflow (``report_overflow`` a no-op: the stream ends ``ok``).
    Before, only a truncated WAV reached exit 3, never a network gap.
    """
    args = [
        "transcribe", os.fspath(clips["alpha"]), "--recognizer", "scripted", "--speed", "4",
        "--out", os.fspath(tmp_path), "--format", "jsonl",
        "--replay-buffer", "0.2", "--sim-fault", "drop:at=1.5;first=1",
    ]  # fmt: skip
    done = subprocess.run(
        [*steno_command(), *args],
        env=cli_env(None),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,  # real-time: a real process
        check=False,
    )
    report = f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
    assert done.returncode == 3, report
    assert "Traceback" not in done.stdout + done.stderr, report
    events = parse_jsonl((tmp_path / "alpha.jsonl").read_text())
    assert any(isinstance(e, Reconnecting) for e in events), "no outage happened"
    gaps = [e for e in events if isinstance(e, AudioGap)]
    assert gaps, report
    assert {g.reason for g in gaps} == {"replay-overflow"}, gaps
    ended = events[-1]
    assert isinstance(ended, StreamEnded) and ended.status == "partial", ended
    lost_ms = sum(round((g.end - g.start) * 1000 / g.rate) for g in gaps)
    assert ended.audio_lost_ms == pytest.approx(lost_ms, abs=len(gaps)), (ended, gaps)
    assert any("lost" in line for line in done.stderr.splitlines()), report  # status: stderr
