"""Media preparation (adapters/audio/prepare.py): ffmpeg → 16 kHz mono Opus, with progress.

The parser tests are pure; the conversions run the real ffmpeg (real time, a
fraction of a second each) and are skipped where it is not installed (a failure on
CI, tests/skip_policy.py). The error tests run on every machine: the no-ffmpeg test
hides ffmpeg from PATH, the input checks get a stand-in ffmpeg path they never run.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest
import soundfile
import trio
from conftest import DEMO_AUDIO, deadline

from adapters.audio.prepare import PrepareProgress, ProgressParser, ffmpeg_command, prepare_file
from engine.errors import InputError

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg"
)
WEATHER = DEMO_AUDIO / "weather.wav"


def unused_ffmpeg(name: str) -> str:
    """A tool finder that always answers: for checks that must come before ffmpeg runs."""
    return f"/nonexistent/{name}"


async def make_media(path: pathlib.Path, *audio: str) -> None:
    """A 2 s test-pattern MPEG-4 video at ``path``, with the ``audio`` input options if any."""
    video = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=2", "-c:v", "mpeg4"]
    await trio.run_process(["ffmpeg", "-v", "error", *video, *audio, str(path)])


class TestProgressParser:
    def test_blocks(self) -> None:
        """One value per block, from out_time_us; N/A before the first packet; split lines."""
        parser = ProgressParser()
        assert parser.feed(b"bitrate=N/A\nout_time_us=N/A\nprogress=continue\nout_ti") == [0.0]
        assert parser.feed(b"me_us=2500000\nspeed=40x\nprogress=cont") == []
        assert parser.feed(b"inue\nout_time_ms=10213500\nprogress=end\n") == [2.5, 10.2135]
        assert parser.ended

    def test_fraction(self) -> None:
        assert PrepareProgress("a", 5.0, 10.0).fraction == 0.5
        assert PrepareProgress("a", 12.0, 10.0).fraction == 1.0
        assert PrepareProgress("a", 5.0, None).fraction is None
        assert PrepareProgress("a", 0.0, None, finished=True).fraction == 1.0

    def test_command(self) -> None:
        """16 kHz, mono, libopus in Ogg, progress on stdout, names never read as options."""
        cmd = ffmpeg_command("ffmpeg", "-odd name.mp4", "/out/x.opus")
        assert cmd[cmd.index("-ar") + 1] == "16000"
        assert cmd[cmd.index("-ac") + 1] == "1"
        assert cmd[cmd.index("-c:a") + 1] == "libopus"
        assert cmd[cmd.index("-f") + 1] == "ogg"
        assert cmd[cmd.index("-progress") + 1] == "pipe:1"
        assert "file:-odd name.mp4" in cmd
        assert cmd[-1] == "file:/out/x.opus"


@needs_ffmpeg
class TestPrepare:
    @deadline(30)
    async def test_wav(self, tmp_path: pathlib.Path) -> None:
        """A demo WAV becomes 16 kHz mono Opus of the same length; progress reaches 100%."""
        seen: list[PrepareProgress] = []
        done = await prepare_file(WEATHER, tmp_path / "out", on_progress=seen.append)
        output = pathlib.Path(done.output)
        assert output == tmp_path / "out" / "weather.opus"
        info = soundfile.info(str(output))
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "OGG")
        assert info.duration == pytest.approx(soundfile.info(str(WEATHER)).duration, abs=0.1)
        assert done.size_bytes == (await trio.Path(output).stat()).st_size
        assert done.size_bytes < (await trio.Path(WEATHER).stat()).st_size / 5
        assert seen[-1].finished
        assert seen[-1].fraction == 1.0
        fractions = [p.fraction for p in seen if p.fraction is not None]
        assert fractions == sorted(fractions)
        assert [p.name for p in await trio.Path(tmp_path / "out").iterdir()] == ["weather.opus"]

    @deadline(30)
    async def test_video(self, tmp_path: pathlib.Path) -> None:
        """The audio track of a video (stereo 44.1 kHz AAC in MP4) is extracted."""
        video = tmp_path / "clip.mp4"
        await make_media(
            video,
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=2",
            "-ac",
            "2",
            "-c:a",
            "aac",
            "-shortest",
        )
        done = await prepare_file(video, tmp_path, stem="talk")
        info = soundfile.info(done.output)
        assert pathlib.Path(done.output).name == "talk.opus"
        assert (info.samplerate, info.channels) == (16000, 1)
        assert info.duration == pytest.approx(2.0, abs=0.15)

    @deadline(30)
    async def test_no_audio_track(self, tmp_path: pathlib.Path) -> None:
        video = tmp_path / "silent.mp4"
        await make_media(video)
        with pytest.raises(InputError, match="no audio track"):
            await prepare_file(video, tmp_path / "out")
        assert list(await trio.Path(tmp_path / "out").iterdir()) == []

    @deadline(30)
    async def test_not_media(self, tmp_path: pathlib.Path) -> None:
        junk = tmp_path / "notes.mp4"
        junk.write_text("just some text, not a video\n" * 50)
        with pytest.raises(InputError, match=r"ffmpeg could not convert .*fix: "):
            await prepare_file(junk, tmp_path / "out")
        assert list(await trio.Path(tmp_path / "out").iterdir()) == []

    @deadline(30)
    async def test_cancel_leaves_nothing(self, tmp_path: pathlib.Path) -> None:
        """Cancelled mid-way: ffmpeg is killed and no partial file stays behind."""
        with trio.CancelScope() as scope:
            await prepare_file(
                DEMO_AUDIO / "meeting.wav", tmp_path, on_progress=lambda progress: scope.cancel()
            )
        assert scope.cancelled_caught
        assert list(await trio.Path(tmp_path).iterdir()) == []


class TestErrors:
    @deadline(10)
    async def test_without_ffmpeg(self, tmp_path: pathlib.Path, hide_ffmpeg: str) -> None:
        """No ffmpeg on PATH (hidden, so this runs where ffmpeg is installed): one line
        naming the fix, and nothing written."""
        assert shutil.which("ffmpeg") is None
        with pytest.raises(InputError, match=r"needs ffmpeg.*fix: apt-get install ffmpeg"):
            await prepare_file(WEATHER, tmp_path / "out")
        assert not (tmp_path / "out").exists()

    @deadline(10)
    async def test_missing_input(self, tmp_path: pathlib.Path) -> None:
        """A missing input is named (whether or not ffmpeg is installed)."""
        with pytest.raises(InputError, match="input not found"):
            await prepare_file(tmp_path / "nope.mkv", tmp_path, find_tool=unused_ffmpeg)

    @deadline(10)
    async def test_empty_input(self, tmp_path: pathlib.Path) -> None:
        """An empty input is refused before ffmpeg runs (whether or not it is installed)."""
        (tmp_path / "empty.wav").write_bytes(b"")
        with pytest.raises(InputError, match="not a non-empty regular file"):
            await prepare_file(tmp_path / "empty.wav", tmp_path, find_tool=unused_ffmpeg)
