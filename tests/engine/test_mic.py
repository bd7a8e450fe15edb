"""The mic actor on a fake PortAudio, in virtual time: hand-off, overflow, hot-plug.

The fake's ``feed`` plays PortAudio's callback; it is called from the test's own
task (``run_sync_soon`` works from the trio thread too), except in the one test
that checks the hand-off from a real foreign thread. Blocking PortAudio calls run
inline (``inline``), so no worker thread lets autojump move the clock mid-call.
"""

from __future__ import annotations

import argparse
import functools
import io
import re
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
from conftest import deadline

from adapters.audio.backend import DeviceFailed, DeviceNotFound
from adapters.audio.fakeportaudio import FAKE_MIC, FakeBackend, FakeStatus
from engine.actors import mic
from engine.actors._handoff import (
    Audio,
    BoundedCalls,
    Handoff,
    Hole,
    in_thread,
    outage_hole,
    silence_blocks,
    to_global,
)
from engine.events import AudioGap, DeviceLost, DeviceRestored, Event
from engine.messages import RawBlock, Skip

RATE = 48000
BLOCK = 4800  # 100 ms at the fake mic's native 48 kHz


async def inline(fn: Callable[[], Any]) -> Any:
    await trio.lowlevel.checkpoint()
    return fn()


def stereo(value: float, frames: int = BLOCK) -> np.ndarray:
    """A stereo block whose left/right average is ``value``."""
    block = np.empty((frames, 2), np.float32)
    block[:, 0], block[:, 1] = value + 0.1, value - 0.1
    return block


class Rig:
    """A running mic actor with collectors on its outbox and event channel."""

    def __init__(self, backend: FakeBackend, stats: mic.MicStats, stop: trio.Event) -> None:
        self.backend, self.stats, self.stop = backend, stats, stop
        self.blocks: list[RawBlock] = []
        self.events: list[Event] = []
        self.done = trio.Event()
        self.error: BaseException | None = None

    def samples(self) -> np.ndarray:
        return np.concatenate([b.samples for b in self.blocks]) if self.blocks else np.empty(0)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


async def start(
    nursery: trio.Nursery,
    backend: FakeBackend | None = None,
    *,
    outbox_size: float = 100,
    consume: bool = True,
    run_blocking: Callable[[Callable[[], Any]], Any] = inline,
    **config: Any,
) -> tuple[Rig, trio.MemoryReceiveChannel[RawBlock]]:
    backend = backend or FakeBackend()
    raw_send, raw_recv = trio.open_memory_channel[RawBlock](outbox_size)
    ev_send, ev_recv = trio.open_memory_channel[Event](100)
    stop = trio.Event()
    cfg = mic.MicConfig(**{"stall_timeout_s": None, **config})

    async def actor(task_status: trio.TaskStatus[mic.MicStats]) -> None:
        try:
            await mic.run(
                outbox=raw_send,
                events=ev_send,
                config=cfg,
                backend=backend,
                stop=stop,
                run_blocking=run_blocking,
                task_status=task_status,
            )
        except DeviceFailed as exc:
            rig.error = exc
        finally:
            rig.done.set()

    rig = Rig(backend, mic.MicStats(), stop)
    rig.stats = await nursery.start(actor)

    async def collect_events() -> None:
        async for event in ev_recv:
            rig.events.append(event)

    async def collect_blocks() -> None:
        async for block in raw_recv:
            rig.blocks.append(block)

    nursery.start_soon(collect_events)
    if consume:
        nursery.start_soon(collect_blocks)
    return rig, raw_recv


async def feed(rig: Rig, values: list[float], *, every: float = 0.1) -> None:
    """Feed one 100 ms block per value, ``every`` seconds apart (after each sleep)."""
    for value in values:
        await trio.sleep(every)
        assert rig.backend.stream.feed(stereo(value))
    await trio.testing.wait_all_tasks_blocked()


async def finish(rig: Rig) -> None:
    rig.stop.set()
    await rig.done.wait()
    await trio.testing.wait_all_tasks_blocked()


# ------------------------------------------------------------------ pure parts


class TestHandoff:
    def test_keeps_order_within_bound(self) -> None:
        """Under the bound every block comes out, in order, untouched."""
        h = Handoff(Fraction(1))
        items = [Audio(Fraction(i, 10), np.full(4800, i, np.float32), RATE) for i in range(5)]
        for item in items:
            assert h.put_audio(item) == (0, 0)
        assert [h.pop() for _ in range(5)] == items
        assert h.pop() is None

    def test_overflow_drops_oldest_into_one_merged_hole(self) -> None:
        """Past the bound the oldest blocks become one capture-overflow hole, in place."""
        h = Handoff(Fraction(3, 10))
        dropped = [
            h.put_audio(Audio(Fraction(i, 10), np.zeros(4800, np.float32), RATE)) for i in range(6)
        ]
        assert dropped == [(0, 0)] * 3 + [(1, 4800)] * 3
        assert len(h) == 4
        hole = h.pop()
        assert hole == Hole(Fraction(0), Fraction(3, 10), "capture-overflow", RATE)
        assert isinstance(hole, Hole) and hole.frames == 3 * 4800
        assert [a.start for a in (h.pop(), h.pop(), h.pop()) if isinstance(a, Audio)] == [
            Fraction(3, 10),
            Fraction(4, 10),
            Fraction(5, 10),
        ]

    def test_popping_makes_room(self) -> None:
        """The bound counts only audio still queued: a consumer that keeps up never drops."""
        h = Handoff(Fraction(2, 10))
        for i in range(10):
            assert h.put_audio(Audio(Fraction(i, 10), np.zeros(4800, np.float32), RATE)) == (0, 0)
            assert isinstance(h.pop(), Audio)
        assert len(h) == 0

    def test_holes_before_audio_stay_in_order(self) -> None:
        """A device hole queued earlier stays ahead; only audio is ever dropped."""
        h = Handoff(Fraction(1, 10))
        h.put_hole(Hole(Fraction(0), Fraction(1), "device", RATE))
        h.put_audio(Audio(Fraction(1), np.zeros(4800, np.float32), RATE))
        assert h.put_audio(Audio(Fraction(11, 10), np.zeros(4800, np.float32), RATE)) == (1, 4800)
        kinds = [(type(x).__name__, getattr(x, "reason", "")) for x in (h.pop(), h.pop(), h.pop())]
        assert kinds == [("Hole", "device"), ("Hole", "capture-overflow"), ("Audio", "")]

    def test_single_block_larger_than_bound_is_kept(self) -> None:
        """The newest block is never dropped, even if it alone exceeds the bound."""
        h = Handoff(Fraction(1, 100))
        assert h.put_audio(Audio(Fraction(0), np.zeros(4800, np.float32), RATE)) == (0, 0)
        assert len(h) == 1


class TestPureHelpers:
    def test_outage_hole_is_whole_frames_at_the_new_rate(self) -> None:
        """An outage of 2.3 s at 44.1 kHz is 101430 frames, starting where audio stopped."""
        hole = outage_hole(Fraction(1), 1.0, 3.3, 44100)
        assert hole.frames == 101430 and hole.reason == "device"
        assert hole.end == Fraction(1) + Fraction(101430, 44100)
        assert to_global(hole.end, 16000) == 16000 + 36800

    def test_silence_blocks_cover_exactly(self) -> None:
        """Silence comes in blocks of at most ``chunk`` that add up to ``frames``."""
        sizes = [len(b) for b in silence_blocks(10_000, 4800)]
        assert sizes == [4800, 4800, 400]
        assert not any(b.any() for b in silence_blocks(10, 4))


class TestBoundedCalls:
    """Real worker threads on the real clock (a blocked PortAudio call cannot be faked
    in virtual time); every wait is bounded by a deadline."""

    @deadline(10)
    async def test_returns_and_raises_like_the_call(self) -> None:
        """A call that returns in time is transparent, errors included."""
        calls = BoundedCalls(in_thread, 5.0)

        def boom() -> None:
            raise DeviceFailed("boom")

        assert await calls(lambda: 7, "x") == 7
        with pytest.raises(DeviceFailed, match="boom"):
            await calls(boom, "y")
        assert calls.stuck == []

    @deadline(10)
    async def test_hung_call_is_abandoned_and_its_late_result_discarded(self) -> None:
        """A call past its timeout raises; while it runs on, the stuck limit refuses more
        calls; when it finally returns, its result is discarded and the slot freed."""
        release, discarded = threading.Event(), trio.Event()
        late: list[str] = []

        def discard(handle: str) -> None:
            late.append(handle)
            trio.from_thread.run_sync(discarded.set)

        calls = BoundedCalls(in_thread, 0.1, max_stuck=1)  # real-time: a thread must block
        with pytest.raises(DeviceFailed, match=r"did not return from opening within 0\.1 s"):
            await calls(lambda: release.wait() and "handle", "opening", discard)
        assert calls.stuck == ["opening"]
        with pytest.raises(DeviceFailed, match="still blocked in opening; not trying closing"):
            await calls(lambda: 1, "closing")
        release.set()
        await discarded.wait()
        while calls.stuck:  # noqa: ASYNC110  # the thread frees its slot just after discarding
            await trio.sleep(0.01)
        assert late == ["handle"]
        assert await calls(lambda: 2, "again") == 2

    @deadline(10)
    async def test_cancelled_caller_abandons_the_call(self) -> None:
        """Cancelling the caller abandons the thread; a stream it opens late is closed."""
        release, discarded = threading.Event(), trio.Event()
        calls = BoundedCalls(in_thread, 5.0)
        with trio.move_on_after(0.05):  # real-time: the thread really blocks
            await calls(
                lambda: release.wait() and "handle",
                "opening",
                lambda _h: trio.from_thread.run_sync(discarded.set),
            )
        assert calls.stuck == ["opening"]
        release.set()
        await discarded.wait()


# ------------------------------------------------------------------ the actor


class TestCapture:
    @deadline(30)
    async def test_blocks_flow_downmixed_at_native_rate(self, autojump_clock: Any) -> None:
        """The device opens at 48 kHz, 2 ch, 100 ms blocks; mono blocks come out in order."""
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery)
            stream = rig.backend.stream
            assert (stream.samplerate, stream.channels, stream.blocksize) == (RATE, 2, BLOCK)
            await feed(rig, [0.1, 0.2, 0.3])
            await finish(rig)
        assert [b.rate for b in rig.blocks] == [RATE] * 3
        np.testing.assert_allclose([b.samples[0] for b in rig.blocks], [0.1, 0.2, 0.3], atol=1e-6)
        assert rig.stats.blocks == 3 and rig.stats.frames == 3 * BLOCK
        assert rig.events == [] and stream.closed and rig.error is None

    @deadline(30)
    async def test_channels_capped_and_default_device(self, autojump_clock: Any) -> None:
        """A 6-channel device is opened with max_channels; None picks the default input."""
        dev = {**FAKE_MIC, "name": "array", "max_input_channels": 6, "default_samplerate": 16000.0}
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery, FakeBackend([dev]), max_channels=4)
            assert (rig.backend.stream.channels, rig.backend.stream.samplerate) == (4, 16000)
            assert rig.stats.device is not None and rig.stats.device.name == "array"
            await finish(rig)

    @deadline(30)
    async def test_status_flags_are_counted(self, autojump_clock: Any) -> None:
        """PortAudio's input overflow/underflow flags are counted, audio still flows."""
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery)
            rig.backend.stream.feed(stereo(0), FakeStatus(input_overflow=True))
            rig.backend.stream.feed(stereo(0), FakeStatus(input_underflow=True))
            rig.backend.stream.feed(stereo(0), FakeStatus(True, True))
            await finish(rig)
        assert (rig.stats.input_overflows, rig.stats.input_underflows) == (2, 2)
        assert len(rig.blocks) == 3

    @deadline(30)
    async def test_wrong_device_fails_before_start(self, autojump_clock: Any) -> None:
        """A device that does not exist raises DeviceNotFound listing the real ones."""
        async with trio.open_nursery() as nursery:
            with pytest.raises(
                DeviceNotFound, match=r"no input device matching 'usb'.*0: 'fake mic'"
            ):
                await start(nursery, device="usb")

    @deadline(30)
    async def test_hand_off_from_a_foreign_thread(self) -> None:
        """Callbacks from a real non-trio thread reach the outbox in order."""
        backend = FakeBackend()
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery, backend)

            def portaudio_thread() -> None:
                for i in range(20):
                    backend.stream.feed(stereo(i / 100))

            thread = threading.Thread(target=portaudio_thread)
            await trio.to_thread.run_sync(lambda: (thread.start(), thread.join()))
            await finish(rig)
        np.testing.assert_allclose(
            [b.samples[0] for b in rig.blocks], [i / 100 for i in range(20)], atol=1e-6
        )


class TestOverflow:
    @deadline(60)
    async def test_dropped_blocks_become_silence_and_an_exact_gap(
        self, autojump_clock: Any
    ) -> None:
        """A stalled pipeline drops the oldest blocks; the timeline keeps every sample."""
        async with trio.open_nursery() as nursery:
            rig, raw = await start(nursery, outbox_size=0, consume=False, buffer_ms=300)
            # Nobody reads: the pump holds block 0 in its send, 3 blocks fit the queue.
            await feed(rig, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
            assert (rig.stats.dropped_blocks, rig.stats.dropped_frames) == (3, 3 * BLOCK)
            rig.stop.set()
            async with raw:
                async for block in raw:
                    rig.blocks.append(block)
            await rig.done.wait()
            await trio.testing.wait_all_tasks_blocked()
        out = rig.samples()
        assert len(out) == 7 * BLOCK  # the timeline advanced over the dropped blocks
        first = [round(float(out[i * BLOCK]), 3) for i in range(7)]
        assert first == [0.0, 0.0, 0.0, 0.0, 0.4, 0.5, 0.6]  # blocks 1–3 became silence
        (gap,) = rig.of(AudioGap)
        assert (gap.start, gap.end, gap.reason, gap.rate) == (1600, 6400, "capture-overflow", 16000)


class TestHotPlug:
    @deadline(60)
    async def test_loss_and_restore_fill_the_outage_exactly(self, autojump_clock: Any) -> None:
        """Unplug → DeviceLost; replug → reopen with reinit, DeviceRestored, a device gap
        of exactly the trio-clock outage, and later audio at the right global time."""
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery)
            backend = rig.backend
            dead = backend.stream
            await feed(rig, [0.1] * 10)  # 1.0 s of audio; the last block at t=1.0
            await trio.sleep(0.05)
            backend.unplug()  # t=1.05: finished_callback fires
            await trio.sleep(1.45)
            assert rig.of(DeviceLost) and not rig.of(DeviceRestored)
            backend.replug()  # t=2.5: attempts at 1.55, 2.30 failed; 3.30 succeeds
            await trio.sleep(0.85)
            assert len(backend.streams) == 2 and backend.reinits >= 1
            await feed(rig, [0.7, 0.7], every=0.0)
            await finish(rig)
        assert dead.closed and dead.stopped is False and dead.started
        (lost,) = rig.of(DeviceLost)
        assert (lost.at, lost.cause, lost.device) == (16000, "finished", "fake mic")
        assert lost.t == pytest.approx(1.05)
        (restored,) = rig.of(DeviceRestored)
        assert restored.at == 52800 and restored.attempts == 3
        assert restored.outage_s == pytest.approx(2.3) and restored.t == pytest.approx(3.3)
        (gap,) = rig.of(AudioGap)
        assert (gap.start, gap.end, gap.reason) == (16000, 52800, "device")
        out = rig.samples()
        assert len(out) == 10 * BLOCK + 110400 + 2 * BLOCK
        assert not out[10 * BLOCK : 10 * BLOCK + 110400].any()
        np.testing.assert_allclose(out[10 * BLOCK + 110400 :], 0.7, atol=1e-6)
        assert (rig.stats.losses, rig.stats.restores) == (1, 1)
        assert rig.stats.outage_s == pytest.approx(2.3)

    @deadline(60)
    async def test_holes_can_be_skips_instead_of_silence(self, autojump_clock: Any) -> None:
        """holes="skip": an outage goes downstream as one lost Skip of the exact outage
        (no silence, no AudioGap of the mic's own), in order with the audio."""
        async with trio.open_nursery() as nursery:
            rig, raw = await start(nursery, consume=False, holes="skip")
            items: list[RawBlock | Skip] = []

            async def collect() -> None:
                async for item in raw:
                    items.append(item)

            nursery.start_soon(collect)
            backend = rig.backend
            await feed(rig, [0.1] * 10)
            await trio.sleep(0.05)
            backend.unplug()
            await trio.sleep(1.45)
            backend.replug()
            await trio.sleep(0.85)
            await feed(rig, [0.7, 0.7], every=0.0)
            await finish(rig)
        kinds = [type(i).__name__ for i in items]
        assert kinds == ["RawBlock"] * 10 + ["Skip"] + ["RawBlock"] * 2
        skip = items[10]
        assert isinstance(skip, Skip)
        assert (skip.samples, skip.rate, skip.reason, skip.lost) == (110400, RATE, "device", True)
        assert not rig.of(AudioGap)
        assert rig.of(DeviceLost) and rig.of(DeviceRestored)

    @deadline(60)
    async def test_inactive_without_finished_callback_is_a_loss(self, autojump_clock: Any) -> None:
        """active False while stopped False is caught by the watcher, with no callback."""
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery)
            await feed(rig, [0.1])
            rig.backend.stream.die(finished=False)
            await trio.sleep(0.3)
            (lost,) = rig.of(DeviceLost)
            assert lost.cause == "inactive"
            await trio.sleep(1)
            assert rig.of(DeviceRestored)  # the device never left: the first reopen works
            await finish(rig)

    @deadline(60)
    async def test_stalled_device_is_a_loss(self, autojump_clock: Any) -> None:
        """No audio for stall_timeout_s counts as a loss; the gap starts at the last block."""
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery, stall_timeout_s=2.0)
            await feed(rig, [0.1])  # last audio at t=0.1
            await trio.sleep(2.5)
            (lost,) = rig.of(DeviceLost)
            assert lost.cause == "stalled" and lost.at == 1600
            await trio.sleep(0.6)
            await finish(rig)
        (gap,) = rig.of(AudioGap)
        restored = rig.of(DeviceRestored)[0]
        assert gap.start == 1600 and gap.end == restored.at
        assert restored.outage_s == pytest.approx(restored.t - 0.1)

    @deadline(60)
    async def test_stale_callbacks_of_the_dead_stream_are_ignored(
        self, autojump_clock: Any
    ) -> None:
        """A late callback from the dead stream never lands on the new timeline."""
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery)
            dead = rig.backend.stream
            await feed(rig, [0.1])
            dead.die()
            await trio.sleep(1)
            assert len(rig.backend.streams) == 2
            dead._callback(stereo(0.9), BLOCK, None, FakeStatus())
            await feed(rig, [0.2], every=0)
            await finish(rig)
        assert rig.stats.stale_blocks == 1
        assert not np.isclose(rig.samples(), 0.9).any()

    @deadline(60)
    async def test_stop_during_outage_reports_the_gap_to_now(self, autojump_clock: Any) -> None:
        """Stopping while the device is gone ends capture with the outage as a gap."""
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery)
            await feed(rig, [0.1])
            rig.backend.unplug()
            await trio.sleep(4.0)  # t=4.1
            await finish(rig)
        (gap,) = rig.of(AudioGap)
        assert (gap.start, gap.end, gap.reason) == (1600, 1600 + 64000, "device")
        assert rig.of(DeviceRestored) == [] and rig.error is None
        assert len(rig.samples()) == BLOCK + 4 * RATE

    @deadline(120)
    async def test_gives_up_after_the_limit(self, autojump_clock: Any) -> None:
        """With give_up_after_s, a device that stays gone ends capture with DeviceFailed,
        after the outage is reported and the outbox drained and closed."""
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery, give_up_after_s=5.0)
            await feed(rig, [0.1])
            rig.backend.unplug()
            await rig.done.wait()
            await trio.testing.wait_all_tasks_blocked()
        assert isinstance(rig.error, DeviceFailed) and "did not come back" in str(rig.error)
        (gap,) = rig.of(AudioGap)
        assert gap.reason == "device" and gap.end - gap.start >= 5 * 16000
        assert len(rig.samples()) == BLOCK + (gap.end - gap.start) * 3

    @deadline(20)
    async def test_a_close_that_hangs_does_not_stop_recovery(self) -> None:
        """PortAudio stuck closing the dead stream: it is abandoned, a new stream opens
        without re-initialising (which would wait for the stuck close), audio resumes."""
        backend = FakeBackend()
        release = threading.Event()
        async with trio.open_nursery() as nursery:
            rig, _ = await start(
                nursery,
                backend,
                run_blocking=in_thread,
                call_timeout_s=0.2,
                retry_initial_s=0.05,
                retry_cap_s=0.1,
                watch_interval_s=0.02,
            )
            dead = backend.stream
            dead.close = release.wait  # type: ignore[method-assign]
            backend.unplug()
            backend.replug()
            with trio.fail_after(5):  # real-time: worker threads really block
                while not rig.of(DeviceRestored):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert backend.reinits == 0 and len(backend.streams) == 2
            backend.stream.feed(stereo(0.3))
            release.set()
            await finish(rig)
        assert rig.of(DeviceLost) and rig.of(AudioGap)[0].reason == "device"
        np.testing.assert_allclose(rig.samples()[-BLOCK:], 0.3, atol=1e-6)

    @deadline(60)
    async def test_index_spec_follows_the_device_by_name(self, autojump_clock: Any) -> None:
        """A device chosen by index is reopened by name (indexes change on re-init)."""
        devices = [
            {**FAKE_MIC, "index": 0, "name": "other"},
            {**FAKE_MIC, "index": 1, "name": "usb mic"},
        ]
        backend = FakeBackend(devices)
        async with trio.open_nursery() as nursery:
            rig, _ = await start(nursery, backend, device=1)
            backend.unplug()
            await trio.sleep(1.5)  # the second attempt re-initialises: the list is empty
            assert backend.reinits == 1 and backend.listed == []
            backend.devices = [{**devices[1], "index": 0}]  # re-enumerated: now index 0
            backend.replug()
            await trio.sleep(1.5)
            assert backend.stream.device == 0 and rig.of(DeviceRestored)
            await finish(rig)


@pytest.mark.parametrize("bad", [{"block_ms": -1}, {"buffer_ms": 0}, {"retry_initial_s": 2.0}])
def test_config_rejects_nonsense(bad: dict[str, Any]) -> None:
    """Negative blocks, an empty buffer or an initial delay above the cap are rejected."""
    with pytest.raises(ValueError, match=r"must be|bad"):
        mic.MicConfig(**bad)


class TestLivePipeline:
    # No trio deadline here: the renderer closes its sinks in a worker thread, and while
    # every task waits on a thread autojump leaps to the next deadline, which would be
    # the test's own (faulthandler_timeout guards against a hang instead).
    async def test_outage_mid_stream_keeps_every_sentence_in_place(
        self, autojump_clock: Any
    ) -> None:
        """mic → resampler → session → renderer on a fake device: a 12 s outage (past the
        session's idle timeout) between sentences loses no sentence, the later ones land
        after the gap on the global timeline, and the stream ends ``partial``."""
        from adapters.recognizers.scripted import ScriptedRecognizer
        from adapters.recognizers.tonecode import synthesize
        from adapters.sim.config import SimConfig
        from adapters.sim.memory import open_memory_net
        from engine.config import Secret, SessionConfig
        from engine.events import Final, StreamEnded
        from engine.live import LiveStreamConfig, run_live_stream

        sentences = ["good morning", "the weather is sunny today", "thank you"]
        before = synthesize(sentences[:1], RATE).astype(np.float32) / 32768
        after = synthesize(sentences[1:], RATE).astype(np.float32) / 32768
        backend = FakeBackend()
        config = LiveStreamConfig(
            session=SessionConfig(
                stream="mic",
                model="paraformer-realtime-v2",
                url="ws://sim/api-ws/v1/inference",
                api_key=Secret("sk"),
                seed=3,
            ),
            mic=mic.MicConfig(stream="mic", stall_timeout_s=None),
        )
        console_send, console_recv = trio.open_memory_channel[Event](10_000)
        drain = trio.Event()
        ended: list[StreamEnded] = []

        async def play(audio: np.ndarray) -> None:
            for at in range(0, len(audio), BLOCK):
                await trio.sleep(BLOCK / RATE)
                chunk = audio[at : at + BLOCK]
                backend.stream.feed(np.stack([chunk, chunk], axis=1))

        async with open_memory_net(SimConfig(api_keys=["sk"]), ScriptedRecognizer.tone()) as net:
            async with trio.open_nursery() as nursery:

                async def live() -> None:
                    ended.append(
                        await run_live_stream(
                            config,
                            console=console_send,
                            drain=drain,
                            dial=net.dial,
                            backend=backend,
                            run_blocking=inline,
                        )
                    )

                nursery.start_soon(live)
                # The device opens after the outputs (a worker thread): poll, in virtual time.
                while not backend.streams:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                await play(before)
                backend.unplug()
                await trio.sleep(12)
                backend.replug()
                await trio.sleep(1.5)
                await play(after)
                await trio.sleep(1)
                drain.set()
                events = [e async for e in console_recv]
        finals = [e for e in events if isinstance(e, Final)]
        assert [f.text.rstrip(".").lower() for f in finals] == sentences
        (lost,) = [e for e in events if isinstance(e, DeviceLost)]
        (restored,) = [e for e in events if isinstance(e, DeviceRestored)]
        (gap,) = [e for e in events if isinstance(e, AudioGap)]
        assert (gap.start, gap.end, gap.reason) == (lost.at, restored.at, "device")
        assert lost.at == len(before) // 3  # 48 kHz blocks → 16 kHz global samples
        assert 12 <= restored.outage_s <= 13.5
        assert finals[0].end <= lost.at and finals[1].start >= restored.at
        (end,) = ended
        assert end.status == "partial" and end.finals == 3
        assert end.audio_lost_ms == (gap.end - gap.start) // 16


class TestCancellation:
    @deadline(30)
    async def test_cancelling_closes_the_device_and_the_outbox(self, autojump_clock: Any) -> None:
        """A cancelled actor leaves no open PortAudio stream and closes its channels."""
        backend = FakeBackend()
        raw_send, raw_recv = trio.open_memory_channel[RawBlock](10)
        ev_send, ev_recv = trio.open_memory_channel[Event](10)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    mic.run,
                    outbox=raw_send,
                    events=ev_send,
                    config=mic.MicConfig(),
                    backend=backend,
                    run_blocking=inline,
                )
            )
            backend.stream.feed(stereo(0.1))
            nursery.cancel_scope.cancel()
        assert backend.stream.closed
        assert len([b async for b in raw_recv]) <= 1 and [e async for e in ev_recv] == []


class TestLiveCommands:
    """``steno devices`` / ``steno listen`` argument handling (no device, no server)."""

    def parser(self) -> argparse.ArgumentParser:
        from engine.cli import build_parser

        return build_parser()

    def test_commands_and_defaults(self) -> None:
        """Both subcommands parse; listen defaults to the default device and all formats
        (and the model to paraformer-realtime-v2, or gummy-realtime-v1 with --to)."""
        from engine.cli.devices import devices
        from engine.cli.listen import listen

        assert self.parser().parse_args(["devices"]).func is devices
        args = self.parser().parse_args(["listen"])
        assert args.func is listen and args.device is None and args.duration is None
        assert (args.format, args.model, args.name) == ("txt,srt,vtt,jsonl", None, "listen")

    async def test_devices_prints_the_table(self) -> None:
        """``steno devices`` prints inputs and outputs of the backend."""
        from engine.cli.devices import devices

        out = io.StringIO()
        assert (
            await devices(self.parser().parse_args(["devices"]), backend=FakeBackend(), out=out)
            == 0
        )
        assert out.getvalue().startswith("input devices:\n*   0  fake mic  (ALSA, 48000 Hz, 2 ch)")

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--device", "usb"], "no input device matching 'usb'; the input devices are 0"),
            (["--format", "docx"], "unknown output format 'docx'"),
            (["--duration", "0"], "--duration must be positive"),
        ],
    )
    async def test_listen_refuses_bad_options_before_connecting(
        self, argv: list[str], message: str
    ) -> None:
        """A wrong device, format or duration is a ConfigError before anything starts."""
        from engine.cli.listen import listen
        from engine.errors import ConfigError

        args = self.parser().parse_args(["listen", *argv])
        with pytest.raises(ConfigError, match=re.escape(message)):
            await listen(args, backend=FakeBackend(), dial=_no_dial)


async def _no_dial(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("listen must not connect when its options are wrong")
