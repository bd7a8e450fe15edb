"""TaskAudio (WAV headers, odd bytes, levels) and AudioQueue."""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing
from simclient import loud, silence, wav_bytes

from adapters.sim.audio import AudioFormatError, AudioQueue, TaskAudio


class TestTaskAudio:
    def test_pcm_passes_through(self) -> None:
        audio = TaskAudio("pcm", 16000)
        assert audio.push(b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04"
        assert audio.pcm_bytes == 4

    def test_odd_bytes_are_carried(self) -> None:
        """A sample split across frames is never cut in half."""
        audio = TaskAudio("pcm", 16000)
        assert audio.push(b"\x01\x02\x03") == b"\x01\x02"
        assert audio.push(b"\x04\x05") == b"\x03\x04"
        assert audio.push(b"\x06") == b"\x05\x06"

    @pytest.mark.parametrize("cut", [1, 4, 11, 20, 43, 44, 45])
    def test_wav_header_stripped_across_frames(self, cut: int) -> None:
        """The header may arrive in pieces; only the samples come out."""
        pcm = loud(50)
        data = wav_bytes(pcm)
        audio = TaskAudio("wav", 16000)
        out = audio.push(data[:cut]) + audio.push(data[cut:])
        assert out == pcm
        assert audio.duration_ms == 50
        assert audio.billed_seconds == 1

    def test_wav_with_extra_chunks(self) -> None:
        """LIST/fact chunks before data are skipped (odd sizes padded)."""
        pcm = loud(10)
        fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
        body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
        body += b"LIST" + struct.pack("<I", 3) + b"abc\x00"
        body += b"data" + struct.pack("<I", len(pcm)) + pcm
        data = b"RIFF" + struct.pack("<I", len(body)) + body
        assert TaskAudio("wav", 16000).push(data) == pcm

    def test_headerless_wav_is_pcm(self) -> None:
        """Clients streaming "wav" often send bare PCM: it passes unchanged."""
        pcm = loud(10)
        assert TaskAudio("wav", 16000).push(pcm) == pcm

    @pytest.mark.parametrize(
        ("rate", "channels", "message"),
        [(8000, 1, "8000 Hz"), (16000, 2, "mono")],
    )
    def test_wav_mismatch(self, rate: int, channels: int, message: str) -> None:
        with pytest.raises(AudioFormatError, match=message):
            TaskAudio("wav", 16000).push(wav_bytes(silence(10, rate) * channels, rate, channels))

    def test_wav_without_data_chunk(self) -> None:
        data = wav_bytes(b"")[:36] + b"junk" + struct.pack("<I", 1 << 20)
        audio = TaskAudio("wav", 16000)
        assert audio.push(data) == b""
        with pytest.raises(AudioFormatError, match="no data chunk"):
            audio.push(bytes(1 << 17))

    def test_rms(self) -> None:
        assert TaskAudio.rms(b"") == 0.0
        assert TaskAudio.rms(silence(10)) == 0.0
        assert TaskAudio.rms(loud(10)) == pytest.approx(8000 / 2**0.5, rel=0.05)


class TestAudioQueue:
    async def test_joins_chunks_up_to_the_limit(self) -> None:
        queue = AudioQueue(100)
        for chunk in (b"aa", b"bb", b"cc"):
            assert queue.put_nowait(chunk)
        assert await queue.get(4) == b"aabb"
        assert queue.queued_bytes == 2
        assert await queue.get(1) == b"cc"

    async def test_refuses_beyond_the_bound(self) -> None:
        queue = AudioQueue(4)
        assert queue.put_nowait(b"abc")
        assert not queue.put_nowait(b"de")
        assert queue.queued_bytes == 3

    async def test_close_drains_then_ends(self, autojump_clock: trio.testing.MockClock) -> None:
        queue = AudioQueue(10)
        got: list[bytes | None] = []

        async def consume() -> None:
            while (chunk := await queue.get(10)) is not None:
                got.append(chunk)
            got.append(None)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            queue.put_nowait(b"x")
            queue.close()
            queue.close()
        assert got == [b"x", None]

    async def test_min_bytes_holds_the_getter_until_a_batch(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A getter asking for a batch is not woken by smaller puts; close releases the rest."""
        queue = AudioQueue(100)
        got: list[bytes | None] = []

        async def consume() -> None:
            while (chunk := await queue.get(10, min_bytes=6)) is not None:
                got.append(chunk)
            got.append(None)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            for chunk in (b"ab", b"cd"):
                queue.put_nowait(chunk)
                await trio.testing.wait_all_tasks_blocked()
                assert got == []
            queue.put_nowait(b"ef")
            await trio.testing.wait_all_tasks_blocked()
            assert got == [b"abcdef"]
            queue.put_nowait(b"g")
            await trio.testing.wait_all_tasks_blocked()
            assert got == [b"abcdef"]
            queue.close()
        assert got == [b"abcdef", b"g", None]
        assert queue.closed
        with pytest.raises(trio.ClosedResourceError):
            queue.put_nowait(b"y")

    async def test_inline_consumer_takes_audio_without_waking_the_getter(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """While the getter waits, a put runs its inline consumer in the putter's task."""
        queue = AudioQueue(100)
        taken: list[bytes] = []
        got: list[bytes | None] = []

        def inline() -> bool:
            taken.append(queue.take_nowait(10))
            return True

        async def consume() -> None:
            while (chunk := await queue.get(10, min_bytes=4, inline=inline)) is not None:
                got.append(chunk)
            got.append(None)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            queue.put_nowait(b"ab")  # below min_bytes: nothing runs
            assert taken == []
            queue.put_nowait(b"cd")
            assert taken == [b"abcd"]
            assert queue.queued_bytes == 0
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # the getter was never woken
            queue.close()
        assert got == [None]

    async def test_inline_consumer_declining_wakes_the_getter(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An inline consumer returning False leaves the audio to the woken getter."""
        queue = AudioQueue(100)
        got: list[bytes | None] = []

        async def consume() -> None:
            got.append(await queue.get(10, inline=lambda: False))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            queue.put_nowait(b"xy")
        assert got == [b"xy"]

    async def test_kick_returns_empty_audio_to_the_getter(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """kick() wakes a waiting getter with b"" when nothing is queued; once."""
        queue = AudioQueue(100)
        got: list[bytes | None] = []

        async def consume() -> None:
            got.append(await queue.get(10))
            got.append(await queue.get(10))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            queue.kick()
            await trio.testing.wait_all_tasks_blocked()
            assert got == [b""]
            queue.put_nowait(b"z")
        assert got == [b"", b"z"]
