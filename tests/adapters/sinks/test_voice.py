"""The translated-voice WAV sink: round trip, crash safety, resampling, roll-over."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import trio

from adapters.audio.files import _declared_wav_frames
from adapters.sinks.voice import HEADER_BYTES, MAX_DATA_BYTES, VoiceWavSink, wav_header
from engine.actors import renderer
from engine.events import Event, Final, StreamEnded, TranslatedAudio

ROOT = Path(__file__).resolve().parents[3]


def tone(seconds: float, rate: int = 24000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12000).astype("<i2")


def chunks(pcm: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    for size in sizes:
        out.append(pcm[at : at + size])
        at += size
    out.append(pcm[at:])
    return [c for c in out if c]


def voice(pcm: bytes, response: str = "r1", rate: int = 24000) -> TranslatedAudio:
    return TranslatedAudio(response, pcm, rate, stream="s")


def read(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(path, dtype="int16")
    return data, rate


def declared(path: Path) -> tuple[int, int]:
    """(RIFF size, data size) from the header."""
    head = path.read_bytes()[:HEADER_BYTES]
    riff, data = struct.unpack_from("<I", head, 4)[0], struct.unpack_from("<I", head, 40)[0]
    return riff, data


class TestRoundTrip:
    def test_many_chunks_come_back_exactly(self, tmp_path: Path) -> None:
        """Chunks of every size, odd ones included, make one gapless 24 kHz mono WAV."""
        pcm = tone(3.0).tobytes()
        rng = np.random.default_rng(7)
        parts = chunks(pcm, [int(n) for n in rng.integers(1, 4801, 200)])
        sink = VoiceWavSink(tmp_path / "voice.wav")
        for i, part in enumerate(parts):
            sink.write(voice(part, response=f"r{i // 50}"))
        sink.close()
        data, rate = read(tmp_path / "voice.wav")
        info = sf.info(tmp_path / "voice.wav")
        assert (rate, info.channels, info.subtype) == (24000, 1, "PCM_16")
        # An odd byte at the end of a response has no partner: that sample is dropped.
        assert len(pcm) // 2 - 4 <= len(data) <= len(pcm) // 2
        assert sink.frames == len(data) == round(sink.seconds * 24000)

    def test_whole_sample_chunks_are_bit_exact(self, tmp_path: Path) -> None:
        """Chunks of whole samples, across responses, are written unchanged."""
        pcm = tone(2.0).tobytes()
        sink = VoiceWavSink(tmp_path / "v.wav")
        for i, part in enumerate(chunks(pcm, [960] * 99)):
            sink.write(voice(part, response=f"r{i // 10}"))
        sink.close()
        data, _ = read(tmp_path / "v.wav")
        assert data.tobytes() == pcm

    def test_other_events_are_ignored(self, tmp_path: Path) -> None:
        """Text and lifecycle events leave a valid empty WAV."""
        sink = VoiceWavSink(tmp_path / "v.wav")
        sink.write(Final(0, 0, 10, "hi"))
        sink.write(StreamEnded("ok"))
        sink.close()
        assert len(read(tmp_path / "v.wav")[0]) == 0
        assert (tmp_path / "v.wav").stat().st_size == HEADER_BYTES

    def test_header_is_canonical(self) -> None:
        """44 bytes: RIFF/WAVE, PCM mono 16-bit, byte rate and block align."""
        head = wav_header(4800, 24000)
        assert len(head) == HEADER_BYTES
        assert head[:4] == b"RIFF" and head[8:16] == b"WAVEfmt " and head[36:40] == b"data"
        assert struct.unpack("<IHHIIHH", head[16:36]) == (16, 1, 1, 24000, 48000, 2, 16)


class TestCrashSafety:
    def test_header_is_valid_after_every_write(self, tmp_path: Path) -> None:
        """Before close, the file on disk is a complete WAV of everything written."""
        path = tmp_path / "v.wav"
        sink = VoiceWavSink(path)
        assert len(read(path)[0]) == 0  # valid from the start
        pcm = tone(1.0).tobytes()
        written = b""
        for part in chunks(pcm, [2400] * 9):
            sink.write(voice(part))
            written += part
            data, rate = read(path)
            assert rate == 24000 and data.tobytes() == written
            assert declared(path) == (36 + len(written), len(written))
            assert _declared_wav_frames(str(path), 1) == len(written) // 2
        sink.close()

    def test_killed_process_leaves_a_valid_wav(self, tmp_path: Path) -> None:
        """A process that dies without close leaves every written chunk readable."""
        path = tmp_path / "v.wav"
        script = (
            "import os, sys\n"
            "from pathlib import Path\n"
            "from adapters.sinks.voice import VoiceWavSink\n"
            "from engine.events import TranslatedAudio\n"
            "sink = VoiceWavSink(Path(sys.argv[1]))\n"
            "for i in range(50):\n"
            "    sink.write(TranslatedAudio('r', bytes([i]) * 4800))\n"
            "os._exit(3)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            cwd=ROOT,
            capture_output=True,
            timeout=60,  # real time: a child interpreter
            check=False,
        )
        assert done.returncode == 3, done.stderr
        data, _ = read(path)
        assert len(data) == 50 * 2400
        assert data.view(np.uint8).reshape(50, -1)[:, 0].tolist() == list(range(50))

    def test_trailing_unannounced_audio_is_ignored_by_readers(self, tmp_path: Path) -> None:
        """A crash between the audio and the header update: the declared part reads back."""
        path = tmp_path / "v.wav"
        pcm = tone(0.5).tobytes()
        path.write_bytes(wav_header(4800, 24000) + pcm)
        data, _ = read(path)
        assert data.tobytes() == pcm[:4800]

    def test_failed_write_is_truncated_away(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that fails half way (disk full) leaves the file as before it."""
        path = tmp_path / "v.wav"
        sink = VoiceWavSink(path)
        first = tone(0.2).tobytes()
        sink.write(voice(first))
        real_pwrite = os.pwrite
        calls: list[int] = []

        def half_then_fail(fd: int, data: bytes, offset: int) -> int:
            calls.append(offset)
            if len(calls) == 1:
                return real_pwrite(fd, bytes(data[:100]), offset)
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "pwrite", half_then_fail)
        with pytest.raises(OSError, match="No space"):
            sink.write(voice(tone(0.2, hz=880).tobytes()))
        monkeypatch.setattr(os, "pwrite", real_pwrite)
        assert path.stat().st_size == HEADER_BYTES + len(first)
        assert read(path)[0].tobytes() == first
        sink.close()


class TestLifecycle:
    def test_close_is_idempotent_and_write_after_close_fails(self, tmp_path: Path) -> None:
        """close twice is fine; a later write is a ValueError, not a silent no-op."""
        sink = VoiceWavSink(tmp_path / "deep" / "dir" / "v.wav")
        sink.write(voice(b"\x01\x00" * 10))
        sink.close()
        sink.close()
        assert sink.closed
        with pytest.raises(ValueError, match="closed sink"):
            sink.write(voice(b"\x01\x00"))
        assert len(read(tmp_path / "deep" / "dir" / "v.wav")[0]) == 10

    def test_reopen_truncates(self, tmp_path: Path) -> None:
        """A new sink on an existing file starts it afresh."""
        path = tmp_path / "v.wav"
        path.write_bytes(b"x" * 10_000)
        VoiceWavSink(path).close()
        assert path.stat().st_size == HEADER_BYTES

    def test_bad_limit_is_refused(self, tmp_path: Path) -> None:
        """The per-file limit must fit a WAV header."""
        with pytest.raises(ValueError, match="max_data_bytes"):
            VoiceWavSink(tmp_path / "v.wav", max_data_bytes=MAX_DATA_BYTES + 2)


class TestRates:
    def test_other_rate_is_resampled_continuously(self, tmp_path: Path) -> None:
        """16 kHz chunks become 24 kHz audio of the same length and pitch."""
        pcm = tone(2.0, rate=16000, hz=500.0).tobytes()
        sink = VoiceWavSink(tmp_path / "v.wav")
        for part in chunks(pcm, [640] * 99):
            sink.write(voice(part, rate=16000))
        sink.close()
        data, rate = read(tmp_path / "v.wav")
        assert rate == 24000 and len(data) == 48000
        spectrum = np.abs(np.fft.rfft(data.astype(np.float64)))
        assert np.fft.rfftfreq(len(data), 1 / rate)[int(np.argmax(spectrum))] == pytest.approx(
            500.0, abs=1.0
        )

    def test_mixed_rates_keep_every_response(self, tmp_path: Path) -> None:
        """A 16 kHz response between 24 kHz ones is converted; the others pass unchanged."""
        a, b, c = tone(0.5).tobytes(), tone(0.5, rate=16000).tobytes(), tone(0.25).tobytes()
        sink = VoiceWavSink(tmp_path / "v.wav")
        sink.write(voice(a, "r1"))
        sink.write(voice(b, "r2", rate=16000))
        sink.write(voice(c, "r3"))
        sink.close()
        data, _ = read(tmp_path / "v.wav")
        assert len(data) == 12000 + 12000 + 6000
        assert data[:12000].tobytes() == a and data[-6000:].tobytes() == c

    def test_bad_rate_is_an_error(self, tmp_path: Path) -> None:
        """A chunk claiming 0 Hz cannot be converted."""
        sink = VoiceWavSink(tmp_path / "v.wav")
        with pytest.raises(ValueError, match="positive"):
            sink.write(voice(b"\x00\x00", rate=0))
        sink.close()


class TestRollOver:
    def test_parts_are_valid_wavs_that_add_up(self, tmp_path: Path) -> None:
        """Past the per-file limit, numbered parts follow; each is a WAV, none loses audio."""
        pcm = tone(1.0).tobytes()
        sink = VoiceWavSink(tmp_path / "v.wav", max_data_bytes=20_001)
        for part in chunks(pcm, [4800] * 9):
            sink.write(voice(part))
        sink.close()
        assert [p.name for p in sink.paths] == ["v.wav", "v-002.wav", "v-003.wav"]
        datas = [read(p)[0] for p in sink.paths]
        assert [len(d) for d in datas] == [10000, 10000, 4000]
        assert np.concatenate(datas).tobytes() == pcm


class TestWithRenderer:
    async def test_renderer_writes_the_voice(self, tmp_path: Path) -> None:
        """The renderer drives the sink from its worker thread and closes it."""
        send, receive = trio.open_memory_channel[Event](8)
        pcm = tone(0.5).tobytes()
        sink = VoiceWavSink(tmp_path / "v.wav")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: renderer.run(inbox=receive, sinks=[sink]))
            async with send:
                for part in chunks(pcm, [2400] * 4):
                    await send.send(voice(part))
                await send.send(StreamEnded("ok"))
        assert sink.closed and read(tmp_path / "v.wav")[0].tobytes() == pcm
