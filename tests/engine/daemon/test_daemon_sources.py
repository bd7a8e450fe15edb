"""Daemon sources: stdin PCM, a looping file, a network stream through ffmpeg, a microphone."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pathlib
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import soundfile
import trio
import trio.testing
from daemon_helpers import _inline_threads  # noqa: F401 - the inline_threads fixture

from adapters.audio.fakeportaudio import FakeBackend
from adapters.recognizers.tonecode import synthesize
from engine.actors.mic import MicConfig
from engine.daemon.config_sources import FileSource, MicSource, StdinSource, UrlSource
from engine.daemon.sources import SourceContext, SourceLost, describe_source, open_source
from engine.errors import ConfigError
from engine.events import DeviceLost, DeviceRestored
from engine.messages import RawBlock, Skip

RATE = 16000


async def inline(fn: Callable[[], Any]) -> Any:
    """Blocking PortAudio calls run inline (no worker thread moves the virtual clock)."""
    await trio.lowlevel.checkpoint()
    return fn()


async def collect(spec: object, ctx: SourceContext, limit: int = 10_000) -> list[RawBlock]:
    blocks: list[RawBlock] = []
    async with open_source(spec, ctx) as source:  # type: ignore[arg-type]
        async for block in source:
            blocks.append(block)
            if len(blocks) >= limit:
                break
    return blocks


class TestStdin:
    async def test_interleaved_pcm_is_downmixed_in_blocks(self) -> None:
        """Stereo s16le from a pipe: 100 ms mono blocks, a short last one, a torn frame dropped."""
        left = np.arange(8100, dtype=np.int16)
        pcm = np.stack([left, -left], axis=1).astype("<i2").tobytes() + b"\x01\x02\x03"
        read, write = os.pipe()
        os.write(write, pcm)
        os.close(write)
        try:
            blocks = await collect(StdinSource(rate=RATE, channels=2), SourceContext(stdin_fd=read))
        finally:
            os.close(read)
        assert [len(b.samples) for b in blocks] == [1600] * 5 + [100]
        assert all(b.rate == RATE for b in blocks)
        assert not np.any(np.concatenate([b.samples for b in blocks]))  # L and -L cancel


class TestFile:
    async def test_a_looping_file_is_paced_in_real_time(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path, inline_threads: None
    ) -> None:
        """loop = true replays the file; block k arrives when its audio would have ended."""
        path = tmp_path / "a.wav"
        soundfile.write(path, np.zeros(RATE // 2, dtype=np.int16), RATE, subtype="PCM_16")
        t0 = trio.current_time()
        times: list[float] = []
        async with open_source(FileSource(path=str(path), loop=True), SourceContext()) as source:
            async for block in source:
                assert len(block.samples) == 1600
                times.append(trio.current_time() - t0)
                if len(times) == 12:  # two and a half loops
                    break
        assert times == pytest.approx([0.1 * (k + 1) for k in range(12)])


class TestUrlWithoutFfmpeg:
    """Runs everywhere: ffmpeg is hidden from PATH (not skipped where it is missing)."""

    async def test_no_ffmpeg_is_a_config_error(self, hide_ffmpeg: str) -> None:
        assert shutil.which("ffmpeg") is None
        with pytest.raises(ConfigError, match="need ffmpeg"):
            await collect(UrlSource(url="http://127.0.0.1:9/x"), SourceContext())


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
class TestUrl:
    # real-time: ffmpeg is a real process reading a real loopback socket.

    @contextlib.asynccontextmanager
    async def serve(self, body: bytes | None) -> AsyncIterator[int]:
        """A one-file HTTP server on loopback; body None accepts and never answers."""

        async def handler(stream: trio.SocketStream) -> None:
            with contextlib.suppress(trio.BrokenResourceError):
                head = b""
                while b"\r\n\r\n" not in head:
                    head += await stream.receive_some(4096)
                if body is None:
                    await trio.sleep_forever()
                await stream.send_all(
                    b"HTTP/1.0 200 OK\r\nContent-Type: audio/wav\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
            )
            yield listeners[0].socket.getsockname()[1]
            nursery.cancel_scope.cancel()

    async def test_an_http_stream_is_decoded_then_reported_ended(self) -> None:
        """ffmpeg resamples 8 kHz to 16 kHz mono; the end is a SourceLost without the password."""
        buf = io.BytesIO()
        soundfile.write(
            buf, synthesize(["good morning"], 8000), 8000, format="WAV", subtype="PCM_16"
        )
        with trio.fail_after(20):
            async with self.serve(buf.getvalue()) as port:
                spec = UrlSource(url=f"http://user:hunter2@127.0.0.1:{port}/a.wav", timeout_s=10)
                blocks: list[RawBlock] = []

                async def read_all() -> None:
                    async with open_source(spec, SourceContext()) as source:
                        async for block in source:
                            blocks.append(block)

                with pytest.raises(SourceLost) as info:
                    await read_all()
        audio = np.concatenate([b.samples for b in blocks])
        assert {b.rate for b in blocks} == {RATE}
        assert abs(len(audio) - 2 * len(synthesize(["good morning"], 8000))) <= 1600
        assert float(np.max(np.abs(audio))) > 0.3
        assert "hunter2" not in str(info.value) and "***@127.0.0.1" in str(info.value)

    async def test_a_silent_server_trips_the_watchdog(self) -> None:
        with trio.fail_after(20):
            async with self.serve(None) as port:
                spec = UrlSource(url=f"http://127.0.0.1:{port}/live", timeout_s=0.5)
                with pytest.raises(SourceLost, match=r"no audio for 0\.5 s"):
                    await collect(spec, SourceContext())


class TestMic:
    """A ``mic`` source is the capture actor on a (fake) PortAudio, in virtual time."""

    @staticmethod
    def context(backend: FakeBackend) -> SourceContext:
        return SourceContext(
            audio_backend=backend,
            run_blocking=inline,
            mic=MicConfig(stall_timeout_s=None),
            timeline_rate=RATE,
        )

    async def test_blocks_a_device_gap_as_a_skip_and_device_events(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Audio at the device's rate; an outage is one lost Skip (not silence) between
        DeviceLost and DeviceRestored, whose positions count from the opening."""
        backend = FakeBackend()
        items: list[object] = []
        async with open_source(MicSource(device="fake", channels=2), self.context(backend)) as src:
            stream = backend.stream
            assert (stream.samplerate, stream.channels) == (48000, 2)

            async def play() -> None:
                for _ in range(5):
                    await trio.sleep(0.1)
                    backend.stream.feed(np.full((4800, 2), 0.25, np.float32))
                await trio.sleep(0.05)  # the last block is delivered before the loss
                backend.unplug()
                await trio.sleep(2)
                backend.replug()
                await trio.sleep(1)
                for _ in range(2):
                    backend.stream.feed(np.full((4800, 2), 0.5, np.float32))
                    await trio.sleep(0.1)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(play)
                async for item in src:
                    items.append(item)
                    if isinstance(item, RawBlock) and item.samples[0] == 0.5:
                        break
        # Audio and skips keep timeline order; the device events may come between them.
        audio = [type(i).__name__ for i in items if isinstance(i, RawBlock | Skip)]
        assert audio == ["RawBlock"] * 5 + ["Skip", "RawBlock"]
        (skip,) = [i for i in items if isinstance(i, Skip)]
        (lost,) = [i for i in items if isinstance(i, DeviceLost)]
        (restored,) = [i for i in items if isinstance(i, DeviceRestored)]
        assert (skip.rate, skip.reason, skip.lost) == (48000, "device", True)
        assert lost.at == 8000 and restored.at == 8000 + skip.samples // 3
        assert all(b.rate == 48000 for b in items if isinstance(b, RawBlock))
        assert stream.closed

    async def test_a_missing_device_is_transient(self) -> None:
        """Not plugged in (yet): SourceLost naming the devices, so the stream waits for it."""
        with pytest.raises(SourceLost, match=r"mic:USB.*fake mic"):
            await collect(MicSource(device="USB"), self.context(FakeBackend()))
        backend = FakeBackend()
        backend.fail_opens = 5
        with pytest.raises(SourceLost, match="PaErrorCode"):
            await collect(MicSource(), self.context(backend))

    async def test_an_opener_override_still_wins(self) -> None:
        @contextlib.asynccontextmanager
        async def fake_mic(
            spec: object, ctx: SourceContext
        ) -> AsyncIterator[AsyncIterator[RawBlock]]:
            async def blocks() -> AsyncIterator[RawBlock]:
                yield RawBlock(np.zeros(480, dtype=np.float32), 48000)

            yield blocks()

        blocks = await collect(MicSource(device="USB"), SourceContext(openers={"mic": fake_mic}))
        assert [b.rate for b in blocks] == [48000]

    def test_descriptions_hide_credentials(self) -> None:
        assert describe_source(UrlSource(url="rtsp://a:b@cam/1")) == "rtsp://***@cam/1"
        assert describe_source(MicSource()) == "mic:default"
        assert describe_source(StdinSource()) == "stdin:s16le/16000/1ch"
