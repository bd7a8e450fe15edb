"""``steno batch …`` and ``steno prepare`` (engine/cli/batch.py, prepare.py), run in-process.

The commands are parsed by ``steno``'s own parser (:func:`engine.cli.build_parser`)
and awaited directly. They serve and poll over loopback TCP
in real time (the CLI's own 1 s polling), so each run takes a few seconds.
"""

from __future__ import annotations

import itertools
import logging
import pathlib
import re
import shutil
import socket
from collections.abc import AsyncIterator

import numpy as np
import pytest
import soundfile
import structlog
import trio
import trio.testing
from conftest import DEMO_AUDIO, deadline

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.recognizers.wer import word_error_rate
from adapters.sim import SimConfig, SimulatorHandle, open_simulator
from engine.cli import build_parser, prepare
from engine.cli.batch_files import output_stems
from engine.cli.batch_target import file_urls
from engine.errors import ConfigError
from engine.events import Final, StreamEnded, StreamStarted, decode_jsonl_line

DEMO = ("meeting", "numbers", "weather")
TONE_TEXT = ["hello world", "the weather today is sunny and warm"]
FORMATS = ("txt", "srt", "vtt", "jsonl", "result.json")


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    """Only warnings from the library's structlog loggers (stdout is the CLI's)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)


@pytest.fixture(name="tone_wav")
def _tone_wav(tmp_path: pathlib.Path) -> pathlib.Path:
    """Tone-coded speech the scripted recognizer reads back word for word."""
    path = tmp_path / "tones.wav"
    soundfile.write(str(path), synthesize(TONE_TEXT, 16000), 16000, subtype="PCM_16")
    return path


@pytest.fixture(name="clock")
def _clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.05)


@pytest.fixture(name="sim")
async def _sim() -> AsyncIterator[SimulatorHandle]:
    async with open_simulator(SimConfig(), ScriptedRecognizer.tone()) as sim:
        yield sim


async def steno(*argv: object) -> int:
    args = build_parser().parse_args([str(a) for a in argv])
    code: int = await args.func(args)
    return code


def task_id_of(out: str) -> str:
    match = re.search(r"^task_id=(\S+) status=PENDING$", out, re.MULTILINE)
    assert match, out
    return match.group(1)


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestDemo:
    @pytest.mark.slow
    @pytest.mark.cpu_heavy  # pocketsphinx decodes the demo
    @deadline(180)
    async def test_demo_files_on_the_embedded_simulator(
        self, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No key: the embedded simulator (pocketsphinx) transcribes the demo; files on disk."""
        out = tmp_path / "out"
        wavs = [DEMO_AUDIO / f"{name}.wav" for name in DEMO]
        code = await steno("batch", "submit", *wavs, "--wait", "--out", out)
        printed = capsys.readouterr()
        assert code == 0, printed
        assert "using the embedded simulator at http://127.0.0.1:" in printed.err
        assert re.search(r"task \S+: SUCCEEDED", printed.err)
        for name in DEMO:
            for fmt in FORMATS:
                assert (out / f"{name}.{fmt}").stat().st_size > 0, (name, fmt)
            assert f"[{name}] " in printed.out
            reference = (DEMO_AUDIO / f"{name}.txt").read_text(encoding="utf-8")
            text = (out / f"{name}.txt").read_text(encoding="utf-8")
            assert word_error_rate(reference.lower(), text.lower().replace(".", "")) < 0.5, text
            assert (out / f"{name}.srt").read_text().startswith("1\n00:00:")
            assert (out / f"{name}.vtt").read_text().startswith("WEBVTT\n\n1\n00:00:")
            events = [
                decode_jsonl_line(line) for line in (out / f"{name}.jsonl").read_text().splitlines()
            ]
            assert isinstance(events[0], StreamStarted)
            assert events[0].source.endswith(f"/scenarios/audio/{name}.wav")
            assert isinstance(events[-1], StreamEnded)
            finals = [e for e in events if isinstance(e, Final)]
            assert [f.text for f in finals] == text.splitlines()
            assert all(a.end <= b.start for a, b in itertools.pairwise(finals))


class TestSubmit:
    @deadline(60)
    async def test_failed_file_is_reported_the_rest_complete(
        self,
        tmp_path: pathlib.Path,
        tone_wav: pathlib.Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """An unreachable URL fails that file only; exit code 1."""
        bad = f"http://127.0.0.1:{refused_port()}/lost.wav"
        code = await steno(
            "batch", "submit", tone_wav, bad, "--recognizer", "scripted", "--out", tmp_path
        )
        printed = capsys.readouterr().out
        assert code == 1
        assert "[tones] 2 sentences" in printed
        assert "[lost] failed: InvalidFile.DownloadFailed: cannot download" in printed
        assert (tmp_path / "tones.txt").read_text() == (
            "Hello world.\nThe weather today is sunny and warm.\n"
        )
        assert not (tmp_path / "lost.txt").exists()

    @deadline(60)
    async def test_print_without_out(
        self, tone_wav: pathlib.Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without --out the sentences are printed; sensevoice tags never reach the text."""
        code = await steno(
            "batch", "submit", tone_wav, "--model", "sensevoice-v1", "--recognizer", "scripted"
        )
        printed = capsys.readouterr().out
        assert code == 0
        assert "[tones] Hello world.\n[tones] The weather today is sunny and warm.\n" in printed
        assert "<|" not in printed

    async def test_local_path_needs_a_simulator(
        self, monkeypatch: pytest.MonkeyPatch, tone_wav: pathlib.Path
    ) -> None:
        """With a real key a local path is an error naming the fix (nothing is sent)."""
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-real")
        with pytest.raises(ConfigError, match="only fetches URLs; fix: upload it"):
            await steno("batch", "submit", tone_wav)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--speakers", "3"], "speaker_count needs diarization_enabled"),
            (["--format", "txt,docx"], "unknown output format 'docx'"),
            (["--timeout", "0"], "--timeout must be positive"),
            (["--url", "ftp://x/api/v1"], "bad --url"),
        ],
    )
    async def test_bad_usage(self, tone_wav: pathlib.Path, args: list[str], message: str) -> None:
        with pytest.raises(ConfigError, match=re.escape(message)):
            await steno("batch", "submit", tone_wav, *args)


@pytest.mark.slow  # a simulator on the real clock: the cancelled task must still be PENDING
class TestAgainstARunningSimulator:
    @deadline(60)
    async def test_submit_status_list_cancel(
        self,
        sim: SimulatorHandle,
        tmp_path: pathlib.Path,
        tone_wav: pathlib.Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """submit (no wait) → status --wait --out → list; cancel a PENDING task."""
        url = ("--url", sim.http_url)
        assert await steno("batch", "submit", tone_wav, *url) == 0
        task_id = task_id_of(capsys.readouterr().out)

        assert await steno("batch", "status", task_id, *url, "--wait", "--out", tmp_path) == 0
        printed = capsys.readouterr()
        assert "[tones] 2 sentences" in printed.out
        assert (tmp_path / "tones.result.json").exists()

        assert await steno("batch", "status", task_id, *url) == 0
        status = capsys.readouterr().out
        assert f"task_id={task_id} status=SUCCEEDED" in status
        assert f"[0] SUCCEEDED {tone_wav.as_uri()}" in status

        assert await steno("batch", "submit", tone_wav, *url) == 0
        pending = task_id_of(capsys.readouterr().out)
        assert await steno("batch", "cancel", pending, *url) == 0
        assert f"task_id={pending} status=CANCELED" in capsys.readouterr().out
        assert await steno("batch", "cancel", pending, *url) == 1
        assert "only PENDING tasks can be canceled" in capsys.readouterr().err

        assert await steno("batch", "list", *url) == 0
        rows = capsys.readouterr().out.splitlines()
        assert [row.split()[:2] for row in rows] == [[pending, "CANCELED"], [task_id, "SUCCEEDED"]]

    @deadline(60)
    async def test_unreachable(
        self, clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Nothing listening at --url: exit 1 with one line naming the fix (after 3 retries).

        Virtual time skips the retry delays; it jumps only after 50 ms of real
        idleness, so the (instant) refused connects on loopback are never overtaken.
        """
        url = f"http://127.0.0.1:{refused_port()}/api/v1"
        assert await steno("batch", "status", "t1", "--url", url) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("steno: error: status of task t1: cannot reach 127.0.0.1:")
        assert "fix: check the network" in err
        assert "\n" not in err

    @deadline(60)
    async def test_unwritable_out_is_refused_before_submitting(
        self,
        sim: SimulatorHandle,
        tmp_path: pathlib.Path,
        tone_wav: pathlib.Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """An --out that cannot take files is a usage error before the task is submitted
        (and billed): the service has no task afterwards."""
        url = ("--url", sim.http_url)
        blocker = tmp_path / "a-file"
        blocker.write_text("not a directory")
        with pytest.raises(ConfigError, match=r"cannot write to --out .*; fix: pass a directory"):
            await steno("batch", "submit", tone_wav, *url, "--wait", "--out", blocker / "out")
        assert await steno("batch", "list", *url) == 0
        assert capsys.readouterr().out == ""

    @pytest.mark.parametrize("command", ["status", "cancel"])
    async def test_existing_task_without_key(self, command: str) -> None:
        """status/cancel need a service that remembers tasks: an error naming the fix."""
        with pytest.raises(ConfigError, match="fix: set DASHSCOPE_API_KEY, or pass --url"):
            await steno("batch", command, "t1")


class TestPrepare:
    @pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
    @deadline(60)
    async def test_prepare(
        self, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Two inputs with one stem: x.opus and x-2.opus, 16 kHz mono; progress on stderr."""
        other = tmp_path / "in" / "weather.wav"
        other.parent.mkdir()
        samples = (np.sin(np.arange(16000) / 5) * 8000).astype(np.int16)
        soundfile.write(str(other), np.stack([samples, samples], axis=1), 44100)
        code = await steno("prepare", DEMO_AUDIO / "weather.wav", other, "-o", tmp_path / "out")
        printed = capsys.readouterr()
        assert code == 0, printed
        assert "weather.opus (10.2 s" in printed.out
        assert "weather-2.opus" in printed.out
        assert "[weather] preparing 0%" in printed.err
        for name in ("weather", "weather-2"):
            info = soundfile.info(str(tmp_path / "out" / f"{name}.opus"))
            assert (info.samplerate, info.channels) == (16000, 1)

    async def test_without_ffmpeg(
        self,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: pathlib.Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setattr(prepare.shutil, "which", lambda name: None)
        assert await steno("prepare", DEMO_AUDIO / "weather.wav", "-o", tmp_path) == 1
        assert "needs ffmpeg; fix: apt-get install ffmpeg" in capsys.readouterr().err


class TestHelpers:
    def test_file_urls(self, tone_wav: pathlib.Path) -> None:
        urls = ["https://x/a.wav", "oss://b/c.wav", str(tone_wav)]
        assert file_urls(urls, local_files=True) == [*urls[:2], tone_wav.as_uri()]
        with pytest.raises(ConfigError, match="no such file"):
            file_urls(["/nope/a.wav"], local_files=True)
        with pytest.raises(ConfigError, match="only fetches URLs"):
            file_urls([tone_wav.as_uri()], local_files=False)

    def test_output_stems(self) -> None:
        urls = [
            "https://x/a/talk.wav?Signature=1",
            "https://y/b/talk.mp3",
            "file:///tmp/My%20Talk.opus",
            "https://x/",
        ]
        assert output_stems(urls) == ["talk", "talk-2", "My Talk", "file"]
