"""``steno translate`` end to end: bilingual subtitles of the demo audio (issue #4).

The real console script in subprocesses, with no ``DASHSCOPE_API_KEY``: the embedded
simulator with the default pocketsphinx recognizer. Its translator looks each
recognized sentence up, fuzzily, in ``scenarios/audio/translations.toml`` and
answers a sentence it cannot match with a labelled ``[zh stand-in] …`` line. On the
demo speech every sentence matches (measured: 12 of 12 over four runs of each
model), so the tests ask for all but one of a file's sentences to carry the
fixture's translation, and any other to be a labelled stand-in.

The runs share one fixture, a run per core at a time (about 15–20 s on two cores),
all ``--fast`` but one:

* ``weather.wav`` with each of the three translating models (livetranslate with
  ``--audio-out`` for its translated voice);
* the three demo files in one run;
* ``--translation-only`` (the default model, gummy-realtime-v1);
* livetranslate with a 3-second video as ``--image`` (the real ffmpeg feed; the
  simulator counts the pictures it accepts) at ``--speed 2``: pictures go in step
  with the audio, at most two a second, so audio sent ``--fast`` (10 s in a few
  hundred ms) would leave them no time.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from typing import NamedTuple

import msgspec
import numpy as np
import pytest
import soundfile
from e2e_helpers import (
    DEMO,
    DEMO_NAMES,
    CliRun,
    cli_env,
    demo_duration_s,
    demo_sentences,
    demo_wav,
    parse_jsonl,
    parse_srt,
    parse_vtt,
    run_steno_concurrently,
)

from engine.events import Final, StreamEnded, StreamStarted, Translation

pytestmark = [pytest.mark.slow, pytest.mark.cpu_heavy]  # pocketsphinx, a run per core

MODELS = ("gummy-realtime-v1", "gummy-chat-v1", "qwen3.5-livetranslate-flash-realtime")
LIVE = MODELS[2]
NAME = "weather"
STAND_IN = "[zh stand-in] "

HAS_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


class Table(msgspec.Struct):
    sentence: list[dict[str, str]]


def fixture_zh() -> dict[str, str]:
    """The fixture table's Chinese for each English demo sentence."""
    table = msgspec.toml.decode((DEMO / "translations.toml").read_bytes(), type=Table)
    return {row["en"]: row["zh"] for row in table.sentence}


def expected_zh(name: str) -> list[str]:
    zh = fixture_zh()
    return [zh[sentence] for sentence in demo_sentences(name)]


def is_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def check_translations(lines: list[str], name: str) -> None:
    """``lines`` are the file's translations in order: the fixture's for all sentences
    but at most one, which may instead be a labelled stand-in (never anything else)."""
    expected = expected_zh(name)
    assert len(lines) == len(expected), (lines, expected)
    scripted = 0
    for line, want in zip(lines, expected, strict=True):
        if line == want:
            scripted += 1
        else:
            assert line.startswith(STAND_IN), (line, want)
    assert scripted >= len(expected) - 1, (lines, expected)


class TranslateRun(NamedTuple):
    run: CliRun
    out: pathlib.Path

    def text(self, name: str, ext: str) -> str:
        return (self.out / f"{name}.{ext}").read_text(encoding="utf-8")

    def printed(self, name: str, prefix: str) -> list[str]:
        """The console lines of ``name``.wav that start with ``prefix`` (prefix removed)."""
        lines = self.run.stream_lines(f"{name}.wav")
        return [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]


class Runs(NamedTuple):
    models: dict[str, TranslateRun]
    many: TranslateRun
    translation_only: TranslateRun
    image: TranslateRun | None


def make_video(path: pathlib.Path) -> pathlib.Path:
    lavfi = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-t", "3"]
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *lavfi, "-pix_fmt", "yuv420p", str(path)],
        check=True,
        timeout=60,  # real time: encoding a 3 s clip
    )
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    base = tmp_path_factory.mktemp("translate")
    video = make_video(base / "slides.mp4") if HAS_FFMPEG else None
    jobs: list[tuple[list[str | pathlib.Path], pathlib.Path]] = []
    if video is not None:  # first: paced, it takes longest but needs little CPU
        image = base / "image"
        args = ["translate", demo_wav(NAME), "--to", "zh", "--speed", "2", "--model", LIVE]
        jobs.append((["-v", *args, "--image", video, "--out", image], image))
    for model in MODELS:
        out = base / model
        args: list[str | pathlib.Path] = ["translate", demo_wav(NAME), "--to", "zh", "--fast"]
        args += ["--model", model, "--out", out]
        if model == LIVE:
            args += ["--audio-out", out / "voice"]
        jobs.append((args, out))
    many = base / "many"
    wavs = sorted(DEMO.glob("*.wav"))  # what the shell makes of scenarios/audio/*.wav
    jobs.append((["translate", *wavs, "--to", "zh", "--fast", "--out", many], many))
    only = base / "only"
    args = ["translate", demo_wav(NAME), "--to", "zh", "--fast", "--translation-only"]
    jobs.append(([*args, "--out", only], only))
    # A generous finish deadline: on a loaded machine the simulator's pocketsphinx can
    # stay silent past the default 10 s; the deadline is not what these runs test.
    done = run_steno_concurrently(
        [([*args, "--finish-timeout", "60"], cli_env(api_key=None)) for args, _ in jobs],
        timeout=180,
        # pocketsphinx is CPU-bound: a run per core, plus the paced one (mostly waiting)
        jobs=(os.cpu_count() or 2) + 1,
    )
    results = [TranslateRun(run, out) for run, (_, out) in zip(done, jobs, strict=True)]
    for result in results:
        assert result.run.returncode == 0, result.run.describe()
    image_run = results.pop(0) if video is not None else None
    return Runs(
        models=dict(zip(MODELS, results[:3], strict=True)),
        many=results[3],
        translation_only=results[4],
        image=image_run,
    )


def check_bilingual(result: TranslateRun, name: str) -> None:
    """SRT and VTT: each cue is the English sentence, then its Chinese; the console,
    TXT, ``<name>.zh.txt`` and JSONL say the same."""
    run = result.run
    srt = parse_srt(result.text(name, "srt"))
    vtt = parse_vtt(result.text(name, "vtt"))
    assert srt, run.describe()
    assert [(c.start_ms, c.end_ms, c.text) for c in vtt] == [
        (c.start_ms, c.end_ms, c.text) for c in srt
    ]
    assert srt[-1].end_ms <= demo_duration_s(name) * 1000 + 1
    pairs = [tuple(c.text.split("\n")) for c in srt]
    assert all(len(pair) == 2 for pair in pairs), pairs
    english = [en for en, _ in pairs]
    chinese = [zh for _, zh in pairs]
    for en in english:
        assert en.isascii() and any(ch.isalpha() for ch in en), en
    for zh in chinese:
        assert is_chinese(zh) or zh.startswith(STAND_IN), zh
    check_translations(chinese, name)

    assert result.text(name, "txt").splitlines() == english
    assert result.text(name, "zh.txt").splitlines() == chinese
    assert result.printed(name, "Transcript ==> ") == english
    assert result.printed(name, "Translate ==> [zh] ") == chinese

    events = parse_jsonl(result.text(name, "jsonl"))
    assert isinstance(events[0], StreamStarted)
    finals = [e for e in events if isinstance(e, Final)]
    translations = [e for e in events if isinstance(e, Translation) and e.final]
    assert [e.text for e in finals] == english
    assert [(e.lang, e.text) for e in translations] == [("zh", zh) for zh in chinese]
    assert [e.sentence_id for e in translations] == [e.sentence_id for e in finals]
    ended = events[-1]
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.reconnects, ended.audio_lost_ms) == ("ok", 0, 0), run.describe()


@pytest.mark.parametrize("model", MODELS)
def test_bilingual_subtitles_of_the_demo(runs: Runs, model: str) -> None:
    result = runs.models[model]
    check_bilingual(result, NAME)
    assert sorted(p.name for p in result.out.glob(f"{NAME}.*")) == sorted(
        f"{NAME}.{ext}" for ext in ("txt", "zh.txt", "srt", "vtt", "jsonl")
    )
    (started,) = [
        e for e in parse_jsonl(result.text(NAME, "jsonl")) if isinstance(e, StreamStarted)
    ]
    assert started.model == model
    lines = result.run.stream_lines(f"{NAME}.wav")
    assert lines[-1].startswith(f"done: ok, {len(expected_zh(NAME))} finals, 0 reconnects")


def test_stdout_is_the_streams_lines_and_the_simulator_is_announced(runs: Runs) -> None:
    for result in runs.models.values():
        assert result.run.stdout_lines
        assert all(line.startswith(f"[{NAME}.wav] ") for line in result.run.stdout_lines)
        notices = [line for line in result.run.stderr_lines if "embedded simulator" in line]
        assert len(notices) == 1 and "pocketsphinx" in notices[0], result.run.describe()


def test_without_verbose_stderr_is_for_people(runs: Runs) -> None:
    """No ``-v``: stderr holds the notice and each stream's status lines, no log lines;
    stdout holds only the transcript and translations."""
    for result in [*runs.models.values(), runs.many, runs.translation_only]:
        run = result.run
        for line in run.stderr_lines:
            assert not line.startswith("{"), run.describe()
            assert line.startswith(("steno: ", "[")), run.describe()
        for line in run.stdout_lines:
            text = line.split("] ", 1)[1]
            assert text.startswith(("Transcript ==> ", "Translate ==> ")), run.describe()


def test_livetranslate_writes_the_translated_voice(runs: Runs) -> None:
    """``--audio-out``: one 24 kHz mono 16-bit WAV of the translated speech, not silent."""
    result = runs.models[LIVE]
    voice = result.out / "voice" / f"{NAME}.voice.wav"
    assert [p.name for p in voice.parent.iterdir()] == [voice.name]
    info = soundfile.info(str(voice))
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert info.duration > 1.0, info
    samples, _ = soundfile.read(str(voice), dtype="int16")
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 100  # speech, not silence


def test_many_files_at_once(runs: Runs) -> None:
    """``scenarios/audio/*.wav``: every file gets its own bilingual outputs."""
    result = runs.many
    for name in DEMO_NAMES:
        check_bilingual(result, name)
    assert sorted(p.name for p in result.out.iterdir()) == sorted(
        f"{name}.{ext}" for name in DEMO_NAMES for ext in ("txt", "zh.txt", "srt", "vtt", "jsonl")
    )
    streams = {line.split("] ", 1)[0] + "]" for line in result.run.stdout_lines}
    assert streams == {f"[{name}.wav]" for name in DEMO_NAMES}


def test_translation_only_has_no_source_text(runs: Runs) -> None:
    """``--translation-only``: each cue is the Chinese line alone; no transcript is
    printed or written, and the translations are the fixture's."""
    result = runs.translation_only
    srt = parse_srt(result.text(NAME, "srt"))
    vtt = parse_vtt(result.text(NAME, "vtt"))
    assert [(c.start_ms, c.end_ms, c.text) for c in vtt] == [
        (c.start_ms, c.end_ms, c.text) for c in srt
    ]
    lines = [c.text for c in srt]
    assert all("\n" not in line for line in lines), lines
    check_translations(lines, NAME)
    assert result.text(NAME, "zh.txt").splitlines() == lines
    assert not result.text(NAME, "txt").strip()
    assert result.printed(NAME, "Transcript ==> ") == []
    assert result.printed(NAME, "Translate ==> [zh] ") == lines
    events = parse_jsonl(result.text(NAME, "jsonl"))
    assert not [e for e in events if isinstance(e, Final)]
    assert [e.text for e in events if isinstance(e, Translation) and e.final] == lines
    ended = events[-1]
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.reconnects, ended.finals) == ("ok", 0, len(lines))


@pytest.mark.skipif(not HAS_FFMPEG, reason="ffmpeg not installed; fix: apt-get install ffmpeg")
def test_a_video_as_image_context_reaches_the_simulator(runs: Runs) -> None:
    """``--image`` with a 3 s video: its pictures (one a second) all reach the
    simulator, none refused, and the subtitles are as bilingual as without them."""
    assert runs.image is not None
    run = runs.image.run
    (session,) = run.log_events("realtime session ended")
    assert session["outcome"] == "finished", run.describe()
    assert 3 <= session["images"] <= 4, session  # ffmpeg's fps filter may add the last
    assert not run.log_events("session.server_error"), run.describe()
    assert not run.log_events("session.images_stopped"), run.describe()
    check_bilingual(runs.image, NAME)
