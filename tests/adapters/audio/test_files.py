from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import trio
from conftest import deadline

from adapters.audio._batchread import current_read_batcher
from adapters.audio.files import AudioSource, ToolFinder, open_audio_source
from adapters.audio.resample import float_to_pcm16
from engine.errors import InputError

# Real-clock tests: ffmpeg-backed ones carry a 10 s trio deadline. (Never combine a
# deadline with autojump_clock around thread or subprocess I/O: the mock clock jumps
# straight to the deadline while the I/O is in flight.)
DEMO = Path(__file__).resolve().parents[3] / "scenarios" / "audio"
HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg/ffprobe not installed")


def no_tools(_name: str) -> str | None:
    """A tool finder for a machine without ffmpeg."""
    return None


def tone(rate: int, seconds: float, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """A sine per channel (channel c at amplitude 0.5 / (c + 1)), shape (frames, channels)."""
    t = np.arange(round(rate * seconds)) / rate
    cols = [0.5 / (c + 1) * np.sin(2 * np.pi * freq * t) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int, subtype: str | None = None) -> Path:
    sf.write(path, data, rate, subtype=subtype)
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def encode(src: Path, dst: Path, *extra: str) -> Path:
    ffmpeg("-i", str(src), *extra, str(dst))
    return dst


async def read_all(source: AudioSource) -> list[np.ndarray]:
    async with source:
        return [block async for block in source]


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


class TestSoundfileInputs:
    @pytest.mark.parametrize(
        ("name", "subtype", "rate", "channels"),
        [
            ("a.wav", "PCM_16", 16000, 1),
            ("b.wav", "FLOAT", 44100, 2),
            ("c.flac", "PCM_16", 22050, 2),
            ("d.wav", "PCM_16", 8000, 1),
            ("e.flac", "PCM_24", 48000, 1),
        ],
    )
    async def test_lossless_blocks_are_the_channel_average(
        self, tmp_path: Path, name: str, subtype: str, rate: int, channels: int
    ) -> None:
        """Lossless files come back as mono float32 blocks equal to the channel mean."""
        data = tone(rate, 0.55, channels)
        path = write(tmp_path / name, data, rate, subtype)
        source = await open_audio_source(path, block_frames=rate // 10)
        assert (source.rate, source.channels, source.info.decoder) == (rate, channels, "soundfile")
        assert source.duration_s == pytest.approx(0.55, abs=1 / rate)
        assert source.path == str(path)
        blocks = await read_all(source)
        assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
        assert [len(b) for b in blocks[:-1]] == [rate // 10] * (len(blocks) - 1)
        assert 0 < len(blocks[-1]) <= rate // 10
        expected, _ = sf.read(path, dtype="float32", always_2d=True)
        np.testing.assert_allclose(np.concatenate(blocks), expected.mean(axis=1), atol=1e-7)

    async def test_ogg_vorbis(self, tmp_path: Path) -> None:
        """OGG/Vorbis decodes to the right length and pitch."""
        path = write(tmp_path / "x.ogg", tone(48000, 1.0, 2), 48000)
        source = await open_audio_source(path, block_ms=100)
        assert (source.rate, source.channels) == (48000, 2)
        x = np.concatenate(await read_all(source))
        assert len(x) == 48000
        assert peak_hz(x, 48000) == pytest.approx(440, abs=2)

    async def test_int16_values_are_scaled_by_32768(self, tmp_path: Path) -> None:
        """int16 samples arrive as value / 32768, exactly."""
        ints = np.array([0, 1, -1, 16384, -32768, 32767] * 100, dtype=np.int16)
        path = write(tmp_path / "i.wav", ints, 16000, "PCM_16")
        x = np.concatenate(await read_all(await open_audio_source(path, block_frames=64)))
        np.testing.assert_array_equal(x, ints.astype(np.float32) / 32768)

    async def test_stereo_downmix_is_the_mean(self, tmp_path: Path) -> None:
        """A constant stereo pair (0.5, -0.25) downmixes to 0.125."""
        data = np.tile(np.array([[0.5, -0.25]], dtype=np.float32), (1000, 1))
        path = write(tmp_path / "s.wav", data, 16000, "FLOAT")
        x = np.concatenate(await read_all(await open_audio_source(path, block_frames=300)))
        np.testing.assert_array_equal(x, np.full(1000, 0.125, dtype=np.float32))

    async def test_blocks_are_read_only(self, tmp_path: Path) -> None:
        """Blocks cannot be modified in place (they travel in frozen events)."""
        path = write(tmp_path / "r.wav", tone(16000, 0.2), 16000)
        blocks = await read_all(await open_audio_source(path))
        assert not blocks[0].flags.writeable

    async def test_default_block_is_block_ms(self, tmp_path: Path) -> None:
        """Without block_frames, a block holds block_ms of audio."""
        path = write(tmp_path / "b.wav", tone(22050, 0.3), 22050)
        blocks = await read_all(await open_audio_source(path, block_ms=50))
        assert len(blocks[0]) == 1102

    @pytest.mark.parametrize(("frames", "ms"), [(0, 100), (-5, 100), (None, 0)])
    async def test_rejects_bad_block_size(
        self, tmp_path: Path, frames: int | None, ms: int
    ) -> None:
        """A non-positive block size is a programming error (ValueError), checked first."""
        with pytest.raises(ValueError, match="blocks must be positive"):
            await open_audio_source(tmp_path / "missing.wav", block_frames=frames, block_ms=ms)

    async def test_unknown_extension_detected_by_content(self, tmp_path: Path) -> None:
        """A WAV with an odd extension is still read by soundfile."""
        path = write(tmp_path / "x.wav", tone(16000, 0.2), 16000)
        odd = path.rename(tmp_path / "audio.dat")
        source = await open_audio_source(odd, find_tool=no_tools)
        assert source.info.decoder == "soundfile"
        await source.aclose()

    @pytest.mark.parametrize(
        ("name", "rate", "channels", "seconds"),
        [
            ("weather.wav", 16000, 1, None),
            ("meeting.wav", 48000, 2, 12.59),
            ("numbers.wav", 22050, 1, None),
        ],
    )
    async def test_demo_files(
        self, name: str, rate: int, channels: int, seconds: float | None
    ) -> None:
        """The bundled demo WAVs open with their rate, channels and full length."""
        source = await open_audio_source(DEMO / name)
        assert (source.rate, source.channels) == (rate, channels)
        if seconds is not None:
            assert source.duration_s == pytest.approx(seconds)
        total = sum(len(b) for b in await read_all(source))
        assert total == sf.info(str(DEMO / name)).frames


class TestOpening:
    async def test_files_opened_together_share_thread_hops(self, tmp_path: Path) -> None:
        """Twenty files opened at once: their stat, checks and libsndfile opens go in
        the run's read batcher, a hop or two for all of them, not five hops each."""
        paths = [write(tmp_path / f"{k}.wav", tone(16000, 0.2), 16000) for k in range(20)]
        sources: list[AudioSource] = []

        async def open_one(path: Path) -> None:
            sources.append(await open_audio_source(path))

        async with trio.open_nursery() as nursery:
            for path in paths:
                nursery.start_soon(open_one, path)
        batcher = current_read_batcher()
        assert (batcher.jobs, len(sources)) == (20, 20)
        assert batcher.batches <= 2
        for source in sources:
            assert source.info.rate == 16000
            await source.aclose()


@pytest.fixture(name="encoded", scope="module")
def _encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Compressed fixtures, encoded once per module with ffmpeg (skipped without it)."""
    if not HAVE_FFMPEG:
        pytest.skip("ffmpeg/ffprobe not installed")
    d = tmp_path_factory.mktemp("encoded")
    stereo = write(d / "stereo48k.wav", tone(48000, 1.0, 2), 48000, "PCM_16")
    mono = write(d / "mono22k.wav", tone(22050, 0.5), 22050, "PCM_16")
    files = {
        "mp3": encode(stereo, d / "x.mp3", "-c:a", "libmp3lame"),
        "m4a": encode(stereo, d / "x.m4a", "-c:a", "aac"),
        "webm": encode(stereo, d / "x.webm", "-c:a", "libopus"),
        "mp3-22k": encode(mono, d / "mono22k.mp3"),
    }
    files["bin"] = d / "m4a-content.bin"
    files["bin"].write_bytes(files["m4a"].read_bytes())
    return files


@needs_ffmpeg
class TestFfmpegInputs:
    @pytest.mark.parametrize("ext", ["mp3", "m4a", "webm"])
    @deadline(10)
    async def test_compressed_containers(self, encoded: dict[str, Path], ext: str) -> None:
        """mp3, m4a and webm decode through ffmpeg at their native rate, mono, right pitch."""
        source = await open_audio_source(encoded[ext], block_ms=100)
        assert (source.info.decoder, source.rate, source.channels) == ("ffmpeg", 48000, 2)
        assert source.duration_s == pytest.approx(1.0, abs=0.1)
        blocks = await read_all(source)
        assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
        assert all(len(b) == 4800 for b in blocks[:-1])
        x = np.concatenate(blocks)
        assert abs(len(x) - 48000) < 4800
        assert peak_hz(x, 48000) == pytest.approx(440, abs=3)
        # channels at 0.5 and 0.25 average to a 0.375 sine: RMS 0.375 / sqrt(2)
        rms = np.sqrt(np.mean(x[4800:-4800] ** 2))
        assert rms == pytest.approx(0.375 / np.sqrt(2), rel=0.05)

    @deadline(10)
    async def test_mp3_at_22050(self, encoded: dict[str, Path]) -> None:
        """A 22.05 kHz mono mp3 keeps its rate (no resampling in the decoder)."""
        source = await open_audio_source(encoded["mp3-22k"], block_frames=1000)
        assert (source.rate, source.channels) == (22050, 1)
        assert len(np.concatenate(await read_all(source))) == pytest.approx(11025, abs=1200)

    @deadline(10)
    async def test_fallback_when_libsndfile_cannot_read(self, encoded: dict[str, Path]) -> None:
        """An m4a with an odd extension falls back from soundfile to ffmpeg."""
        source = await open_audio_source(encoded["bin"])
        assert (source.info.decoder, source.rate) == ("ffmpeg", 48000)
        await source.aclose()

    @deadline(10)
    async def test_awkward_relative_name(
        self, encoded: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative name with a leading dash and a colon is a file, not an option or protocol."""
        (tmp_path / "-take 10:30.mp3").write_bytes(encoded["mp3"].read_bytes())
        monkeypatch.chdir(tmp_path)
        source = await open_audio_source("-take 10:30.mp3")
        assert (source.info.decoder, source.rate) == ("ffmpeg", 48000)
        assert sum(len(b) for b in await read_all(source)) > 40000

    @deadline(10)
    async def test_aclose_stops_ffmpeg(self, encoded: dict[str, Path]) -> None:
        """Closing a source part way kills its ffmpeg and ends iteration; closing twice is fine."""
        source = await open_audio_source(encoded["mp3"], block_frames=160)
        await source.__anext__()
        await source.aclose()
        await source.aclose()
        assert source._reader._proc.returncode is not None  # type: ignore[attr-defined]
        with pytest.raises(StopAsyncIteration):
            await source.__anext__()

    @deadline(10)
    async def test_aclose_before_reading(self, encoded: dict[str, Path]) -> None:
        """Closing before the first block (already decoded at open) yields nothing more."""
        source = await open_audio_source(encoded["m4a"], block_frames=160)
        await source.aclose()
        assert [b async for b in source] == []


async def expect(path: Path, *fragments: str, find_tool: ToolFinder = shutil.which) -> str:
    """Opening ``path`` raises a one-line InputError with a fix and all ``fragments``."""
    with pytest.raises(InputError) as info:
        await open_audio_source(path, find_tool=find_tool)
    message = str(info.value)
    assert "\n" not in message
    assert "fix:" in message
    for fragment in fragments:
        assert fragment in message
    return message


class TestBadInput:
    async def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file says so and names the path."""
        await expect(tmp_path / "nope.wav", "not found", "nope.wav")

    async def test_directory(self, tmp_path: Path) -> None:
        """A directory is refused."""
        await expect(tmp_path, "is a directory")

    async def test_fifo(self, tmp_path: Path) -> None:
        """A named pipe is refused up front instead of blocking the open."""
        os.mkfifo(tmp_path / "p.wav")
        await expect(tmp_path / "p.wav", "not a regular file")

    async def test_zero_bytes(self, tmp_path: Path) -> None:
        """A 0-byte file is reported as empty."""
        (tmp_path / "z.wav").write_bytes(b"")
        await expect(tmp_path / "z.wav", "is empty (0 bytes)")

    async def test_zero_frames(self, tmp_path: Path) -> None:
        """A WAV with a header and no samples is reported as having no audio."""
        path = write(tmp_path / "h.wav", np.zeros((0, 1), dtype=np.float32), 16000)
        await expect(path, "has no audio (0 frames)")

    async def test_text_file(self, tmp_path: Path) -> None:
        """A text file named .wav is not audio; the message gives libsndfile's reason."""
        (tmp_path / "t.wav").write_text("hello, I am not a sound\n")
        await expect(
            tmp_path / "t.wav", "not audio or its header is corrupt", "Format not recognised"
        )

    async def test_text_file_without_ffmpeg(self, tmp_path: Path) -> None:
        """With no ffmpeg to fall back to, a non-audio file gets the same clear error."""
        (tmp_path / "t.flac").write_bytes(b"\x00" * 1000)
        await expect(tmp_path / "t.flac", "not audio", find_tool=no_tools)

    async def test_corrupt_header(self, tmp_path: Path) -> None:
        """A WAV whose header is damaged is not audio."""
        path = write(tmp_path / "c.wav", tone(16000, 0.2), 16000, "PCM_16")
        raw = bytearray(path.read_bytes())
        raw[8:16] = b"JUNKJUNK"
        path.write_bytes(bytes(raw))
        await expect(path, "corrupt")

    @pytest.mark.parametrize("rate", [4000, 96000])
    async def test_rate_out_of_range(self, tmp_path: Path, rate: int) -> None:
        """Rates outside 8–48 kHz are refused with a resampling command."""
        path = write(tmp_path / "r.wav", tone(rate, 0.1), rate)
        message = await expect(path, f"is {rate} Hz", "Stenograph needs 8–48 kHz")
        assert f"`ffmpeg -i {path} -ar 16000 r-16k.wav`" in message

    @pytest.mark.parametrize("ext", ["mp3", "m4a", "webm"])
    async def test_container_without_ffmpeg(self, tmp_path: Path, ext: str) -> None:
        """A container that needs ffmpeg says so, with the install command."""
        (tmp_path / f"x.{ext}").write_bytes(b"\xff\xfb" + b"\x00" * 500)
        await expect(
            tmp_path / f"x.{ext}",
            f"needs ffmpeg to decode .{ext}",
            "fix: apt-get install ffmpeg",
            find_tool=no_tools,
        )

    @needs_ffmpeg
    @deadline(10)
    async def test_garbage_mp3(self, tmp_path: Path) -> None:
        """Random bytes named .mp3 are not audio (ffprobe's reason is given)."""
        (tmp_path / "g.mp3").write_bytes(np.random.default_rng(0).bytes(3000))
        await expect(tmp_path / "g.mp3", "not audio", "ffprobe")

    @needs_ffmpeg
    @deadline(10)
    async def test_ffmpeg_rate_out_of_range(self, tmp_path: Path) -> None:
        """A 4 kHz track in a container is refused like a 4 kHz WAV."""
        path = tmp_path / "low.mka"
        ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=0.5:r=4000", "-c:a", "pcm_s16le", str(path))
        await expect(path, "is 4000 Hz", "8–48 kHz")

    @needs_ffmpeg
    @deadline(10)
    async def test_video_without_audio(self, tmp_path: Path) -> None:
        """A video with no audio track is reported as such."""
        path = tmp_path / "v.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc=d=0.5:s=64x48", "-c:v", "mpeg4", str(path))
        await expect(path, "has no audio stream")


async def read_pcm16_all(source: AudioSource, frames: int) -> list[np.ndarray]:
    async with source:
        chunks = []
        while len(chunk := await source.read_pcm16(frames)):
            chunks.append(chunk)
        return chunks


class TestReadPcm16:
    async def test_int16_mono_is_read_as_it_is(self, tmp_path: Path) -> None:
        """16-bit mono comes back as the file's own samples, in chunks of the size asked."""
        ints = np.random.default_rng(7).integers(-32768, 32767, 40000, dtype=np.int16)
        path = write(tmp_path / "a.wav", ints, 16000, "PCM_16")
        chunks = await read_pcm16_all(await open_audio_source(path), 16000)
        assert [len(c) for c in chunks] == [16000, 16000, 8000]
        assert all(c.dtype == np.int16 for c in chunks)
        assert np.concatenate(chunks).tobytes() == ints.tobytes()

    async def test_float_and_stereo_quantize_like_float_to_pcm16(self, tmp_path: Path) -> None:
        """Float and multichannel files give what the float blocks would after float_to_pcm16."""
        data = tone(22050, 0.5, channels=2) * np.float32(1.9)  # clips: beyond full scale
        path = write(tmp_path / "f.wav", data, 22050, "FLOAT")
        chunks = await read_pcm16_all(await open_audio_source(path), 4000)
        floats = np.concatenate(await read_all(await open_audio_source(path)))
        assert np.concatenate(chunks).tobytes() == float_to_pcm16(floats)

    async def test_a_cut_short_wav_raises_once_after_its_audio(self, tmp_path: Path) -> None:
        """A WAV whose header promises more: its audio, then the InputError, then the end."""
        path = write(tmp_path / "cut.wav", np.zeros(16000, dtype=np.int16), 16000, "PCM_16")
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) - 8000])
        source = await open_audio_source(path)
        async with source:
            got = len(await source.read_pcm16(16000))
            assert got == 12000
            with pytest.raises(InputError, match="cut short"):
                await source.read_pcm16(16000)
            assert len(await source.read_pcm16(16000)) == 0

    @needs_ffmpeg
    async def test_ffmpeg_sources_too(self, encoded: dict[str, Path]) -> None:
        """An mp3 (its probe block first) reads to the same int16 as its float blocks give."""
        chunks = await read_pcm16_all(await open_audio_source(encoded["mp3"]), 8000)
        floats = np.concatenate(await read_all(await open_audio_source(encoded["mp3"])))
        assert np.concatenate(chunks).tobytes() == float_to_pcm16(floats)
