"""The playback actor on a fake PortAudio, in virtual time: ring, overflow, underruns, loss.

The fake output's ``pull`` plays PortAudio asking the callback for the next block; it
is called from the test's own task, except in the one test that pulls from a real
foreign thread. Blocking PortAudio calls run inline (``inline``), so no worker
thread lets autojump move the clock mid-call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import structlog
import trio
import trio.testing
from conftest import deadline

from adapters.audio.backend import DeviceFailed, DeviceNotFound
from adapters.audio.fakeportaudio import FAKE_MIC, FAKE_SPEAKER, FakeBackend, FakeStatus
from engine.actors import playback
from engine.actors._handoff import in_thread
from engine.actors.playback import PcmRing, PlaybackConfig, PlaybackStats
from engine.errors import ConfigError
from engine.events import Event, Final, StreamEnded, TranslatedAudio

RATE = 24000


async def inline(fn: Callable[[], Any]) -> Any:
    await trio.lowlevel.checkpoint()
    return fn()


def pcm(frames: int, start: int = 0) -> bytes:
    """Distinct int16 samples (a ramp), so order and loss are visible."""
    return (np.arange(start, start + frames) % 30000).astype("<i2").tobytes()


def samples(data: bytes) -> list[int]:
    return np.frombuffer(data, "<i2").tolist()


def speaker_machine() -> FakeBackend:
    return FakeBackend([FAKE_MIC, FAKE_SPEAKER], default_output=1)


def voice(frames: int, start: int = 0, response: str = "r1") -> TranslatedAudio:
    return TranslatedAudio(response, pcm(frames, start), stream="s")


# ------------------------------------------------------------------ the ring


class TestPcmRing:
    def test_fifo_across_the_wrap(self) -> None:
        """Audio comes out in order, whatever the block sizes and the wrap-around."""
        ring = PcmRing(100, PlaybackStats())
        out = bytearray()
        for i in range(10):
            ring.push(pcm(37, 37 * i), 0)
            block = bytearray(2 * 37)
            ring.fill(memoryview(block))
            out += block
        assert samples(bytes(out)) == list(range(370))
        assert ring.stats.played_frames == 370 and ring.stats.silence_frames == 0

    def test_overflow_drops_the_oldest_and_counts(self) -> None:
        """A full ring keeps the newest audio; drops are counted once per push."""
        stats = PlaybackStats()
        ring = PcmRing(100, stats)
        assert ring.push(pcm(80), 0) == 0
        assert ring.push(pcm(50, 80), 0) == 30
        block = bytearray(2 * 120)
        ring.fill(memoryview(block))
        assert samples(bytes(block)) == list(range(30, 130)) + [0] * 20
        assert (stats.overflows, stats.dropped_frames, stats.frames_in) == (1, 30, 130)

    def test_chunk_larger_than_the_ring_keeps_its_end(self) -> None:
        """One oversized chunk leaves exactly its newest ``capacity`` frames."""
        ring = PcmRing(10, PlaybackStats())
        assert ring.push(pcm(25), 0) == 15
        block = bytearray(20)
        ring.fill(memoryview(block))
        assert samples(bytes(block)) == list(range(15, 25))

    def test_underrun_is_a_gap_inside_one_response(self) -> None:
        """Running dry mid-response and getting more of it later is an underrun; idle
        silence before any audio, or before a new response, is not."""
        stats = PlaybackStats()
        ring = PcmRing(1000, stats)
        ring.fill(memoryview(bytearray(200)))  # idle: nothing was ever queued
        ring.push(pcm(100), 0)
        ring.fill(memoryview(bytearray(2 * 150)))  # 50 frames of silence after audio
        ring.fill(memoryview(bytearray(2 * 30)))  # 30 more
        ring.push(pcm(10), 0)
        assert (stats.underruns, stats.underrun_frames) == (1, 80)
        ring.fill(memoryview(bytearray(2 * 40)))
        ring.push(pcm(10), 1)  # a new response after the gap
        assert (stats.underruns, stats.silence_frames) == (1, 100 + 50 + 30 + 30)

    def test_on_empty_fires_when_the_last_frame_plays(self) -> None:
        """The hook runs once per emptying, not for idle silence."""
        calls: list[int] = []
        ring = PcmRing(100, PlaybackStats(), on_empty=lambda: calls.append(1))
        ring.push(pcm(30), 0)
        ring.fill(memoryview(bytearray(40)))
        assert calls == []
        ring.fill(memoryview(bytearray(40)))
        ring.fill(memoryview(bytearray(40)))
        assert calls == [1] and ring.queued_frames == 0

    def test_clear_and_odd_bytes(self) -> None:
        """An odd trailing byte is ignored; clear drops everything queued."""
        ring = PcmRing(100, PlaybackStats())
        ring.push(pcm(5) + b"\x01", 0)
        assert ring.queued_frames == 5
        assert ring.clear() == 5 and ring.queued_frames == 0


# ------------------------------------------------------------------ the actor


class Rig:
    def __init__(self, backend: FakeBackend, send: trio.MemorySendChannel[Event]) -> None:
        self.backend, self.send = backend, send
        self.stats = PlaybackStats()
        self.done = trio.Event()
        self.error: BaseException | None = None

    def pull(self, frames: int, status: FakeStatus | None = None) -> list[int]:
        data = self.backend.output.pull(frames, status)
        assert data is not None, "the output stream is not active"
        return samples(data)


async def start(
    nursery: trio.Nursery,
    backend: FakeBackend | None = None,
    *,
    inbox_size: int = 0,
    run_blocking: Callable[[Callable[[], Any]], Any] = inline,
    **config: Any,
) -> Rig:
    backend = backend or speaker_machine()
    send, receive = trio.open_memory_channel[Event](inbox_size)
    cfg = PlaybackConfig(**{"stall_timeout_s": None, **config})
    rig = Rig(backend, send)

    async def actor(task_status: trio.TaskStatus[PlaybackStats]) -> None:
        try:
            await playback.run(
                inbox=receive,
                config=cfg,
                backend=backend,
                run_blocking=run_blocking,
                task_status=task_status,
            )
        except Exception as exc:
            rig.error = exc
            raise
        finally:
            rig.done.set()

    rig.stats = await nursery.start(actor)
    return rig


class TestPlayback:
    @deadline(30)
    async def test_plays_translated_audio_and_ignores_the_rest(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The device gets the chunks back to back, then silence; text is ignored."""
        async with trio.open_nursery() as nursery:
            rig = await start(nursery)
            out = rig.backend.output
            assert (out.samplerate, out.channels, out.blocksize, out.device) == (RATE, 1, 480, 1)
            await rig.send.send(Final(0, 0, 10, "hello"))
            await rig.send.send(voice(300))
            await rig.send.send(voice(200, 300))
            await trio.testing.wait_all_tasks_blocked()
            assert rig.pull(480) == list(range(480))
            assert rig.pull(100) == list(range(480, 500)) + [0] * 80
            await rig.send.aclose()
            await rig.done.wait()
        assert out.closed and rig.error is None
        s = rig.stats
        assert (s.chunks, s.frames_in, s.played_frames, s.silence_frames) == (2, 500, 500, 80)
        assert (s.device and s.device.name, s.rate, s.lost) == ("fake speaker", RATE, None)

    @deadline(30)
    async def test_overflow_is_counted_and_logged(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A ring of 0.1 s fed 0.5 s keeps the newest 0.1 s; the drop is logged once
        per interval and summed at the end."""
        with structlog.testing.capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                rig = await start(nursery, capacity_s=0.1, log_interval_s=10.0)
                for i in range(5):
                    await rig.send.send(voice(2400, 2400 * i))
                await trio.testing.wait_all_tasks_blocked()
                assert rig.pull(2400) == list(range(9600, 12000))
                await rig.send.aclose()
        s = rig.stats
        assert (s.overflows, s.dropped_frames) == (4, 4 * 2400)
        lines = [e for e in logs if e["event"] == "playback.overflow"]
        assert [line["dropped_s"] for line in lines] == [0.1, 0.3]
        assert lines[-1]["total_dropped_s"] == 0.4 and lines[-1]["capacity_s"] == 0.1

    @deadline(30)
    async def test_underrun_is_counted(self, autojump_clock: trio.testing.MockClock) -> None:
        """A late chunk of the response being played is an underrun; PortAudio's own
        underflow flag is counted apart."""
        async with trio.open_nursery() as nursery:
            rig = await start(nursery)
            await rig.send.send(voice(100))
            await trio.testing.wait_all_tasks_blocked()
            rig.pull(480, FakeStatus(output_underflow=True))
            await rig.send.send(voice(100, 100))
            await rig.send.send(voice(100, response="r2"))
            await trio.testing.wait_all_tasks_blocked()
            await rig.send.aclose()
        s = rig.stats
        assert (s.underruns, s.underrun_frames, s.output_underflows) == (1, 380, 1)

    @deadline(30)
    async def test_other_rates_are_resampled(self, autojump_clock: trio.testing.MockClock) -> None:
        """A 16 kHz chunk plays as 24 kHz audio of the same length."""
        async with trio.open_nursery() as nursery:
            rig = await start(nursery)
            await rig.send.send(TranslatedAudio("r", pcm(1600), 16000))
            await rig.send.aclose()
            await trio.testing.wait_all_tasks_blocked()
            while not rig.done.is_set():
                rig.pull(480)
                await trio.sleep(0.02)
        assert rig.stats.frames_in == 2400

    @deadline(30)
    async def test_refused_rate_falls_back_to_the_native_rate(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A device that refuses 24 kHz is opened at its own rate; audio is resampled."""
        backend = speaker_machine()
        backend.refused_rates = {RATE}
        async with trio.open_nursery() as nursery:
            rig = await start(nursery, backend)
            assert backend.output.samplerate == 48000 and rig.stats.rate == 48000
            await rig.send.send(voice(2400))
            await rig.send.aclose()
            await trio.testing.wait_all_tasks_blocked()
            while not rig.done.is_set():
                rig.pull(960)
                await trio.sleep(0.02)
        assert rig.stats.frames_in == 4800 and rig.stats.played_frames == 4800

    async def test_refused_everywhere_is_one_clear_error(self) -> None:
        """When no rate opens, the error names the device, the rates and the fix."""
        backend = speaker_machine()
        backend.refused_rates = {RATE, 48000}
        _, receive = trio.open_memory_channel[Event](0)
        with pytest.raises(DeviceFailed, match=r"'fake speaker' \(mono, 24000 or 48000 Hz\).*fix:"):
            await playback.run(
                inbox=receive, config=PlaybackConfig(), backend=backend, run_blocking=inline
            )

    async def test_missing_device_lists_the_outputs(self) -> None:
        """A wrong name is a ConfigError listing the output devices (not the inputs)."""
        backend = FakeBackend(
            [FAKE_MIC, FAKE_SPEAKER, {**FAKE_SPEAKER, "index": 2, "name": "HDMI out"}]
        )
        _, receive = trio.open_memory_channel[Event](0)
        with pytest.raises(DeviceNotFound) as info:
            await playback.run(
                inbox=receive,
                config=PlaybackConfig(device="headphones"),
                backend=backend,
                run_blocking=inline,
            )
        message = str(info.value)
        assert message.startswith("no output device matching 'headphones'; the output devices")
        assert "1: 'fake speaker'; 2: 'HDMI out'" in message and "fake mic" not in message
        assert message.endswith("fix: pick one of these names or indexes for playback")
        assert isinstance(info.value, ConfigError)
        assert backend.output_streams == []

    @deadline(60)
    async def test_device_lost_mid_stream_stops_playback_only(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Unplugging warns once, closes the stream, and the actor keeps reading (an
        unbuffered sender never blocks) until the inbox ends, without raising."""
        with structlog.testing.capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                rig = await start(nursery)
                await rig.send.send(voice(1000))
                await trio.testing.wait_all_tasks_blocked()
                rig.pull(480)
                rig.backend.unplug()
                await trio.testing.wait_all_tasks_blocked()
                assert rig.backend.output.closed and rig.stats.lost == "finished"
                with trio.fail_after(1):
                    for i in range(100):
                        await rig.send.send(voice(2400, response=f"r{i}"))
                    await rig.send.send(StreamEnded("ok"))
                await rig.send.aclose()
        assert rig.error is None
        assert rig.stats.discarded_frames == 520 + 100 * 2400
        lost = [e for e in logs if e["event"] == "playback.device_lost"]
        assert len(lost) == 1 and lost[0]["log_level"] == "warning"
        assert lost[0]["device"] == "fake speaker" and "transcription goes on" in lost[0]["note"]

    @deadline(60)
    @pytest.mark.parametrize(("how", "cause"), [("inactive", "inactive"), ("stall", "stalled")])
    async def test_silent_losses_are_detected(
        self, autojump_clock: trio.testing.MockClock, how: str, cause: str
    ) -> None:
        """A stream that goes inactive without a callback, or stops calling back, is lost."""
        async with trio.open_nursery() as nursery:
            rig = await start(nursery, stall_timeout_s=2.0)
            if how == "inactive":
                rig.backend.output.die(finished=False)
            else:
                for _ in range(10):  # callbacks keep it alive...
                    rig.pull(480)
                    await trio.sleep(0.5)
                assert rig.stats.lost is None
            await trio.sleep(3)  # ...until they stop
            assert rig.stats.lost == cause and rig.backend.output.closed
            await rig.send.aclose()

    @deadline(60)
    async def test_end_waits_for_the_queue_to_play_out(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """At the inbox's end the queued audio plays out, then silence for the device's
        latency plus ``tail_s`` (so the last block is heard), then the stream stops."""
        async with trio.open_nursery() as nursery:
            rig = await start(nursery, tail_s=0.05)
            await rig.send.send(voice(2400))
            await rig.send.aclose()
            await trio.sleep(0.05)
            assert not rig.done.is_set() and not rig.backend.output.closed
            for _ in range(5):
                rig.pull(480)
                await trio.testing.wait_all_tasks_blocked()
            emptied = trio.current_time()
            assert rig.stats.queued_frames == 0 and not rig.backend.output.stopped
            await rig.done.wait()
            assert trio.current_time() - emptied == pytest.approx(0.02 + 0.05)
            assert rig.backend.output.stopped and rig.backend.output.closed

    @deadline(60)
    async def test_end_does_not_wait_for_ever(self, autojump_clock: trio.testing.MockClock) -> None:
        """A device that never plays: the end waits the queue's length plus the margin."""
        async with trio.open_nursery() as nursery:
            rig = await start(nursery, drain_margin_s=1.0)
            await rig.send.send(voice(12000))
            await rig.send.aclose()
            await rig.done.wait()
        assert trio.current_time() == pytest.approx(1.5)
        assert rig.backend.output.closed

    @deadline(30)
    async def test_cancel_closes_the_stream(self, autojump_clock: trio.testing.MockClock) -> None:
        """Cancelling closes the device at once, without playing out."""
        async with trio.open_nursery() as nursery:
            rig = await start(nursery)
            await rig.send.send(voice(24000))
            nursery.cancel_scope.cancel()
        assert rig.backend.output.closed

    @deadline(30)
    async def test_callback_from_a_foreign_thread(self) -> None:
        """Pulls on a real thread (as PortAudio does) play the audio and wake the end."""
        async with trio.open_nursery() as nursery:
            rig = await start(nursery, run_blocking=in_thread)
            await rig.send.send(voice(960))
            await rig.send.aclose()
            await trio.testing.wait_all_tasks_blocked()
            got = await trio.to_thread.run_sync(lambda: rig.pull(480) + rig.pull(480))
            await rig.done.wait()
        assert got == list(range(960))


class TestOutputAvailable:
    def test_reports_the_problem_or_none(self) -> None:
        """A default output is available; a missing one or no outputs at all is not."""
        assert playback.output_available(backend=speaker_machine())
        assert playback.output_available("speaker", backend=speaker_machine())
        assert not playback.output_available("hdmi", backend=speaker_machine())
        problem = playback.output_problem(backend=FakeBackend())
        assert problem is not None and "no output devices at all" in problem

    def test_no_portaudio_is_not_an_exception(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without PortAudio the answer is False with the install hint, never a raise."""

        def no_portaudio() -> Any:
            raise ConfigError("live audio needs the PortAudio library; fix: apt-get install")

        monkeypatch.setattr(playback, "load_backend", no_portaudio)
        assert not playback.output_available()
        assert "PortAudio" in (playback.output_problem() or "")


class TestConfig:
    @pytest.mark.parametrize(
        "bad", [{"rate": 0}, {"capacity_s": 0.0}, {"block_ms": -1}, {"watch_interval_s": 0.0}]
    )
    def test_bad_values_are_refused(self, bad: dict[str, Any]) -> None:
        """Nonsense sizes fail at construction."""
        with pytest.raises(ValueError, match=r"bad|positive"):
            PlaybackConfig(**bad)
