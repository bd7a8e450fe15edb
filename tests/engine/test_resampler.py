from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from fractions import Fraction
from pathlib import Path

import msgspec
import numpy as np
import pytest
import soundfile as sf
import soxr
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.audio.resample import float_to_pcm16
from engine.actors import capture, resampler
from engine.actors._inlet import open_inlet
from engine.actors.capture import FileCaptureConfig
from engine.actors.resampler import Rechunker, ResamplerConfig, ResamplerStats
from engine.events import AudioFrame, AudioGap, AudioSkipped, Event
from engine.messages import PcmBlock, RawBlock, Skip

DEMO = Path(__file__).resolve().parents[2] / "scenarios" / "audio"


def blocks_of(x: np.ndarray, rate: int, size: int) -> list[RawBlock]:
    return [RawBlock(x[i : i + size].astype(np.float32), rate) for i in range(0, len(x), size)]


def noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.6, 0.6, n).astype(np.float32)


async def run_resampler(
    blocks: list[RawBlock], config: ResamplerConfig, *, gap_s: float = 0.0
) -> list[AudioFrame]:
    """Feed ``blocks`` (``gap_s`` apart on the trio clock) through the actor; collect its frames."""
    in_send, in_receive = trio.open_memory_channel[RawBlock](0)
    out_send, out_receive = trio.open_memory_channel[AudioFrame](4)
    frames: list[AudioFrame] = []

    async def feed() -> None:
        async with in_send:
            for block in blocks:
                await in_send.send(block)
                if gap_s:
                    await trio.sleep(gap_s)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: resampler.run(
                inbox=in_receive, outbox=out_send, config=config, task_status=task_status
            )
        )
        nursery.start_soon(feed)
        async with out_receive:
            frames.extend([frame async for frame in out_receive])
    return frames


def pcm_of(frames: list[AudioFrame]) -> np.ndarray:
    return np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2").astype(np.int32)


def assert_tiled(frames: list[AudioFrame], frame_samples: int) -> None:
    """Frames start at 0, follow each other without gaps, and all but the last are full."""
    assert frames[0].start == 0
    for a, b in itertools.pairwise(frames):
        assert b.start == a.end
    assert all(f.samples == frame_samples for f in frames[:-1])
    assert 0 < frames[-1].samples <= frame_samples


class TestResamplerActor:
    @pytest.mark.parametrize(
        ("in_rate", "out_rate"),
        [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000), (48000, 8000)],
    )
    async def test_total_samples_and_framing(self, in_rate: int, out_rate: int) -> None:
        """Output totals round(n * out / in) within 2 and is cut into frame_ms frames that tile the timeline."""
        n = in_rate * 2 + 1234
        config = ResamplerConfig(out_rate=out_rate, stream="s1")
        frames = await run_resampler(blocks_of(noise(n), in_rate, in_rate // 10), config)
        assert abs(frames[-1].end - round(n * out_rate / in_rate)) <= 2
        assert_tiled(frames, out_rate // 10)
        assert {(f.rate, f.stream) for f in frames} == {(out_rate, "s1")}

    async def test_matches_one_shot_resampling(self) -> None:
        """The framed int16 stream equals one-shot soxr over the whole input within 1 LSB."""
        x = noise(44100 * 2, seed=4)
        sizes = [317, 4410, 1, 999, 2205]
        blocks, i, k = [], 0, 0
        while i < len(x):
            blocks.append(RawBlock(x[i : i + sizes[k % 5]], 44100))
            i, k = i + sizes[k % 5], k + 1
        frames = await run_resampler(blocks, ResamplerConfig(out_rate=16000, frame_ms=20))
        stream = soxr.ResampleStream(44100, 16000, 1, dtype="float32", quality="HQ")
        want = np.frombuffer(float_to_pcm16(stream.resample_chunk(x, last=True)), dtype="<i2")
        got = pcm_of(frames)
        assert len(got) == len(want)
        assert np.abs(got - want).max() <= 1
        assert_tiled(frames, 320)

    async def test_same_rate_passes_through(self) -> None:
        """At equal rates the PCM is exactly the int16 conversion of the input."""
        x = noise(16000 + 50)
        frames = await run_resampler(blocks_of(x, 16000, 700), ResamplerConfig(out_rate=16000))
        assert b"".join(f.pcm for f in frames) == float_to_pcm16(x)
        assert [f.samples for f in frames] == [1600] * 10 + [50]

    async def test_frames_are_stamped_with_trio_time(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Each frame's t is the trio clock when it was made."""
        t0 = trio.current_time()
        frames = await run_resampler(
            blocks_of(noise(16000), 16000, 1600), ResamplerConfig(out_rate=16000), gap_s=0.1
        )
        assert [round(f.t - t0, 6) for f in frames] == [round(0.1 * k, 6) for k in range(10)]

    async def test_empty_input(self) -> None:
        """No input: no frames, and the outbox is closed."""
        assert await run_resampler([], ResamplerConfig(out_rate=16000)) == []

    async def test_rate_change_mid_stream(self) -> None:
        """A new input rate flushes the old stream and continues the timeline without a gap."""
        blocks = blocks_of(noise(48000), 48000, 4800) + blocks_of(noise(22050, 1), 22050, 2205)
        frames = await run_resampler(blocks, ResamplerConfig(out_rate=16000))
        assert_tiled(frames, 1600)
        assert abs(frames[-1].end - 32000) <= 2

    async def test_capture_into_resampler(self, autojump_clock: trio.testing.MockClock) -> None:
        """The meeting demo (48 kHz stereo) becomes 16 kHz frames of the right total length."""
        raw_send, raw_receive = trio.open_memory_channel[RawBlock](2)
        out_send, out_receive = trio.open_memory_channel[AudioFrame](2)
        config = FileCaptureConfig(str(DEMO / "meeting.wav"), speed=None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: capture.run(outbox=raw_send, config=config))
            nursery.start_soon(
                lambda: resampler.run(
                    inbox=raw_receive, outbox=out_send, config=ResamplerConfig(out_rate=16000)
                )
            )
            async with out_receive:
                frames = [frame async for frame in out_receive]
        n = sf.info(str(DEMO / "meeting.wav")).frames
        assert abs(frames[-1].end - round(n / 3)) <= 2
        assert_tiled(frames, 1600)


class TestSkip:
    async def run_with_events(
        self, items: list[RawBlock | Skip], config: ResamplerConfig
    ) -> tuple[list[AudioFrame], list[Event], ResamplerStats]:
        in_send, in_receive = trio.open_memory_channel[RawBlock | Skip](0)
        out_send, out_receive = trio.open_memory_channel[AudioFrame](100)
        ev_send, ev_receive = trio.open_memory_channel[Event](100)
        async with trio.open_nursery() as nursery:
            stats = await nursery.start(
                lambda task_status: resampler.run(
                    inbox=in_receive,
                    outbox=out_send,
                    events=ev_send,
                    config=config,
                    task_status=task_status,
                )
            )
            async with in_send:
                for item in items:
                    await in_send.send(item)
        async with out_receive, ev_receive:
            return [f async for f in out_receive], [e async for e in ev_receive], stats

    async def test_a_skip_leaves_a_hole_on_wall_time(self) -> None:
        """48 kHz audio, a 2 s skip, more audio: the run before is flushed (a short frame),
        the next frame starts exactly 2 s of source time later, and the span is reported."""
        first, second = noise(48000 + 1234, 1), noise(48000, 2)
        items: list[RawBlock | Skip] = [
            *blocks_of(first, 48000, 4800),
            Skip(96000, 48000, "suspended"),
            *blocks_of(second, 48000, 4800),
        ]
        frames, events, stats = await self.run_with_events(
            items, ResamplerConfig(out_rate=16000, stream="s")
        )
        before = [f for f in frames if f.start < 16411]
        after = frames[len(before) :]
        assert_tiled(before, 1600)
        hole_start = before[-1].end
        assert abs(hole_start - round((48000 + 1234) / 3)) <= 2
        skip_end = round((48000 + 1234 + 96000) / 3)  # source time so far, exactly
        assert after[0].start == skip_end
        assert all(b.start == a.end for a, b in itertools.pairwise(after))
        (skipped,) = events
        assert isinstance(skipped, AudioSkipped)
        assert (skipped.start, skipped.end, skipped.reason, skipped.rate, skipped.stream) == (
            hole_start,
            skip_end,
            "suspended",
            16000,
            "s",
        )
        assert (stats.skips, stats.skipped_samples, stats.lost_samples) == (
            1,
            skip_end - hole_start,
            0,
        )
        assert stats.position == frames[-1].end
        assert abs(frames[-1].end - round((48000 + 1234 + 96000 + 48000) / 3)) <= 2

    async def test_a_lost_skip_is_a_gap_and_skips_need_no_audio(self) -> None:
        """Lost skips are AudioGaps; skips before any audio or in a row just add up."""
        items: list[RawBlock | Skip] = [
            Skip(1600, 16000, "device", lost=True),
            Skip(0, 16000),
            Skip(800, 8000, "source", lost=True),
            RawBlock(noise(1600), 16000),
        ]
        frames, events, stats = await self.run_with_events(items, ResamplerConfig(out_rate=16000))
        assert [(f.start, f.samples) for f in frames] == [(3200, 1600)]
        assert [(type(e), e.start, e.end, e.reason) for e in events] == [  # type: ignore[attr-defined]
            (AudioGap, 0, 1600, "device"),
            (AudioGap, 1600, 3200, "source"),
        ]
        assert (stats.lost_samples, stats.skipped_samples, stats.skips) == (3200, 0, 2)

    async def test_without_an_event_channel_the_timeline_still_moves(self) -> None:
        frames = await run_resampler(
            [RawBlock(noise(800), 16000), Skip(800, 16000), RawBlock(noise(800), 16000)],  # type: ignore[list-item]
            ResamplerConfig(out_rate=16000),
        )
        assert [(f.start, f.samples) for f in frames] == [(0, 800), (1600, 800)]

    def test_bad_skips_are_refused(self) -> None:
        with pytest.raises(ValueError, match="samples >= 0"):
            Skip(-1, 16000)
        with pytest.raises(ValueError, match="positive rate"):
            Skip(1, 0)


class TestRechunker:
    def test_cuts_exact_frames_with_starts(self) -> None:
        """Pushed bytes come out as full frames with running starts; the rest waits."""
        r = Rechunker(3)
        assert r.push(b"\x01\x00" * 2) == []
        assert r.push(b"\x02\x00" * 5) == [(0, b"\x01\x00\x01\x00\x02\x00"), (3, b"\x02\x00" * 3)]
        assert r.position == 6
        assert r.flush() == [(6, b"\x02\x00")]
        assert r.flush() == []

    def test_flush_when_aligned_is_empty(self) -> None:
        """If the stream ends on a frame boundary there is no short frame."""
        r = Rechunker(2)
        assert len(r.push(bytes(8))) == 2
        assert r.flush() == []

    def test_skip_moves_the_next_start(self) -> None:
        """A skip leaves a hole; it needs the held PCM flushed first."""
        r = Rechunker(2)
        r.push(b"\x01\x00" * 3)
        with pytest.raises(ValueError, match="empty buffer"):
            r.skip(5)
        assert r.flush() == [(2, b"\x01\x00")]
        r.skip(5)
        assert r.push(bytes(4)) == [(8, bytes(4))]

    def test_rejects_empty_frames(self) -> None:
        """A frame must hold at least one sample."""
        with pytest.raises(ValueError, match="positive"):
            Rechunker(0)


class TestResamplerConfig:
    def test_frame_samples(self) -> None:
        """frame_samples is out_rate * frame_ms / 1000."""
        assert ResamplerConfig(out_rate=16000).frame_samples == 1600
        assert ResamplerConfig(out_rate=8000, frame_ms=20).frame_samples == 160

    @pytest.mark.parametrize(("rate", "ms"), [(0, 100), (16000, 0), (100, 5)])
    def test_rejects_bad_values(self, rate: int, ms: int) -> None:
        """Non-positive values and empty frames are refused."""
        with pytest.raises(ValueError):  # noqa: PT011
            ResamplerConfig(out_rate=rate, frame_ms=ms)

    def test_decodes_strictly(self) -> None:
        """Unknown fields are refused when decoding."""
        with pytest.raises(msgspec.ValidationError, match="rate"):
            msgspec.json.decode(b'{"out_rate":16000,"rate":1}', type=ResamplerConfig)


def old_float_path(x: np.ndarray, in_rate: int, out_rate: int, frame: int) -> list[bytes]:
    """The frames the float-only resampler made: float32 → soxr (or copy) → float_to_pcm16."""
    if in_rate == out_rate:
        pcm = float_to_pcm16(x)
    else:
        pcm = float_to_pcm16(
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ").resample_chunk(
                x, last=True
            )
        )
    return [pcm[i : i + 2 * frame] for i in range(0, len(pcm), 2 * frame)]


class TestInt16Path:
    def test_model_rate_is_bit_exact_and_float_free(self) -> None:
        """int16 at 16 kHz becomes the same frames as the old float path, bytes for bytes."""
        ints = np.random.default_rng(3).integers(-32768, 32767, 16000 * 3 + 555, dtype=np.int16)
        core = resampler.ResamplerCore(ResamplerConfig(out_rate=16000))
        frames = []
        for i in range(0, len(ints), 1600):
            frames += core.audio(PcmBlock(ints[i : i + 1600], 16000))
        frames += core.finish()
        assert [pcm for _, pcm in frames] == old_float_path(
            ints / np.float32(32768), 16000, 16000, 1600
        )
        assert [start for start, _ in frames] == list(range(0, len(ints), 1600))
        assert b"".join(pcm for _, pcm in frames) == ints.tobytes()

    @pytest.mark.parametrize("sizes", [[4800], [997, 3, 4800, 1]])
    def test_other_rates_match_the_float_path(self, sizes: list[int]) -> None:
        """48 kHz int16 through soxr gives the old float path's frames exactly, however chunked."""
        ints = np.random.default_rng(4).integers(-30000, 30000, 48000 * 2 + 77, dtype=np.int16)
        core = resampler.ResamplerCore(ResamplerConfig(out_rate=16000))
        frames: list[tuple[int, bytes]] = []
        i = k = 0
        while i < len(ints):
            frames += core.audio(PcmBlock(ints[i : i + sizes[k % len(sizes)]], 48000))
            i += sizes[k % len(sizes)]
            k += 1
        frames += core.finish()
        want = old_float_path(ints.astype(np.float32) / np.float32(32768), 48000, 16000, 1600)
        assert [pcm for _, pcm in frames] == want

    def test_float_blocks_with_nan_are_cleaned(self) -> None:
        """NaN and ±inf in pushed float audio become 0 and full scale, as before."""
        core = resampler.ResamplerCore(ResamplerConfig(out_rate=16000, frame_ms=1))
        x = np.array([np.nan, np.inf, -np.inf, 0.5] * 4, dtype=np.float32)
        (frame,) = core.audio(RawBlock(x, 16000))
        assert frame[1] == float_to_pcm16(x)


async def collect_stage(
    config: ResamplerConfig, produce: Callable[[resampler.ResamplerInlet], Awaitable[None]]
) -> list[AudioFrame]:
    out_send, out_receive = trio.open_memory_channel[AudioFrame](100)
    stage = resampler.Resampler(outbox=out_send, config=config)
    async with trio.open_nursery() as nursery:
        await nursery.start(stage.run)
        async with stage.inlet() as inlet:
            await produce(inlet)
    async with out_receive:
        return [f async for f in out_receive]


class TestStage:
    async def test_send_runs_in_the_callers_task(self) -> None:
        """A frame is in the outbox when send returns: no resampler task in between."""
        out_send, out_receive = trio.open_memory_channel[AudioFrame](4)
        stage = resampler.Resampler(outbox=out_send, config=ResamplerConfig(out_rate=16000))
        async with trio.open_nursery() as nursery:
            await nursery.start(stage.run)
            inlet = stage.inlet()
            await inlet.send(PcmBlock(np.ones(1600, dtype=np.int16), 16000))
            assert out_receive.receive_nowait().pcm == np.ones(1600, dtype="<i2").tobytes()
            assert stage.stats.position == 1600
            await inlet.aclose()
        async with out_receive:
            assert [f async for f in out_receive] == []

    async def test_send_checkpoints_even_without_a_frame(self) -> None:
        """Audio the resampler holds back still makes send a checkpoint."""
        out_send, out_receive = trio.open_memory_channel[AudioFrame](4)
        stage = resampler.Resampler(outbox=out_send, config=ResamplerConfig(out_rate=16000))
        async with out_receive, trio.open_nursery() as nursery:
            await nursery.start(stage.run)
            async with stage.inlet() as inlet:
                with trio.testing.assert_checkpoints():
                    await inlet.send(PcmBlock(np.ones(100, dtype=np.int16), 16000))

    async def test_the_stage_ends_when_every_inlet_is_closed(self) -> None:
        """Clones share the stage; the last close flushes the short frame and closes the outbox."""

        async def produce(inlet: resampler.ResamplerInlet) -> None:
            other = inlet.clone()
            await other.send(PcmBlock(np.ones(1000, dtype=np.int16), 16000))
            other.close()
            other.close()  # idempotent
            with pytest.raises(trio.ClosedResourceError):
                await other.send(PcmBlock(np.ones(1, dtype=np.int16), 16000))
            await inlet.send(PcmBlock(np.ones(1000, dtype=np.int16), 16000))

        frames = await collect_stage(ResamplerConfig(out_rate=16000), produce)
        assert [(f.start, f.samples) for f in frames] == [(0, 1600), (1600, 400)]

    async def test_a_cancelled_send_loses_nothing(self) -> None:
        """Frames a cancelled send did not deliver go first on the next send, in order."""
        out_send, out_receive = trio.open_memory_channel[AudioFrame](0)
        stage = resampler.Resampler(outbox=out_send, config=ResamplerConfig(out_rate=16000))
        ints = np.arange(16000, dtype=np.int16)
        async with trio.open_nursery() as nursery:
            await nursery.start(stage.run)
            inlet = stage.inlet()
            with trio.move_on_after(1) as scope:  # nobody receives: the send is stuck
                await inlet.send(PcmBlock(ints[:3200], 16000))
            assert scope.cancelled_caught

            async def rest() -> None:
                async with inlet:
                    await inlet.send(PcmBlock(ints[3200:], 16000))

            nursery.start_soon(rest)
            async with out_receive:
                frames = [f async for f in out_receive]
        assert b"".join(f.pcm for f in frames) == ints.tobytes()
        assert_tiled(frames, 1600)

    async def test_concurrent_senders_never_interleave_a_block(self) -> None:
        """Two producers on clones: each block's frames stay together, the timeline tiles."""

        async def produce(inlet: resampler.ResamplerInlet) -> None:
            async def one(value: int, clone: resampler.ResamplerInlet) -> None:
                async with clone:
                    for _ in range(5):
                        await clone.send(PcmBlock(np.full(3200, value, dtype=np.int16), 16000))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, 1, inlet.clone())
                nursery.start_soon(one, 2, inlet.clone())

        frames = await collect_stage(ResamplerConfig(out_rate=16000), produce)
        assert_tiled(frames, 1600)
        values = [int(np.frombuffer(f.pcm, dtype="<i2")[0]) for f in frames]
        assert all(values[i] == values[i + 1] for i in range(0, len(values), 2))
        assert sorted(values) == [1] * 10 + [2] * 10

    async def test_a_finished_stage_refuses_audio(self) -> None:
        """After the stage ended (its run was cancelled), send raises BrokenResourceError."""
        out_send, _out_receive = trio.open_memory_channel[AudioFrame](4)
        stage = resampler.Resampler(outbox=out_send, config=ResamplerConfig(out_rate=16000))
        inlet = stage.inlet()
        async with trio.open_nursery() as nursery:
            await nursery.start(stage.run)
            nursery.cancel_scope.cancel()
        with pytest.raises(trio.BrokenResourceError):
            await inlet.send(PcmBlock(np.ones(10, dtype=np.int16), 16000))
        assert inlet.statistics().current_buffer_used == 0


def ones(n: int, rate: int = 16000) -> PcmBlock:
    return PcmBlock(np.ones(n, dtype=np.int16), rate)


class TestTrySend:
    @pytest.mark.parametrize("inlet_outbox", [True, False])
    async def test_frames_are_handed_over_without_a_checkpoint(self, inlet_outbox: bool) -> None:
        """The session's inlet or a memory channel: the block's frames are out when it returns."""
        if inlet_outbox:
            out, inbox = open_inlet(4)
            receive_nowait = inbox.receive_nowait
        else:
            out, channel = trio.open_memory_channel[AudioFrame](4)
            receive_nowait = channel.receive_nowait
        stage = resampler.Resampler(outbox=out, config=ResamplerConfig(out_rate=16000))
        inlet = stage.inlet()
        with trio.testing.assert_no_checkpoints():
            assert inlet.try_send(ones(2000))
            assert inlet.try_send(ones(1200))
        assert [(f.start, f.samples) for f in (receive_nowait(), receive_nowait())] == [
            (0, 1600),
            (1600, 1600),
        ]
        assert stage.stats.position == 3200 and inlet.taken_s == pytest.approx(0.2)

    async def test_all_or_nothing(self) -> None:
        """Without room for every frame a block makes, nothing is taken; with room, all."""
        out, inbox = open_inlet(3)
        stage = resampler.Resampler(outbox=out, config=ResamplerConfig(out_rate=16000))
        inlet = stage.inlet()
        assert inlet.try_send(ones(3200))  # 2 frames queued, room 1
        assert not inlet.try_send(ones(3200))  # needs 2
        assert (stage.stats.blocks, stage.stats.position) == (2 - 1, 3200)
        assert inlet.try_send(ones(1600))
        inbox.receive_nowait()
        inbox.receive_nowait()
        assert inlet.try_send(ones(3200))
        assert [inbox.receive_nowait().start for _ in range(3)] == [3200, 4800, 6400]
        assert stage.deferred_frames == 0

    async def test_a_resampled_block_needs_room_for_the_resamplers_slack(self) -> None:
        """48 kHz into 16 kHz frames: room for the block and 0.2 s of soxr output is asked."""
        out, inbox = open_inlet(4)
        stage = resampler.Resampler(outbox=out, config=ResamplerConfig(out_rate=16000))
        inlet = stage.inlet()
        block = PcmBlock((noise(4800) * 20000).astype(np.int16), 48000)
        assert resampler.max_frames(stage.config, None, block) == 3  # 1600 + 3200 slack + held
        filler = AudioFrame(0, b"\0\0", 16000)
        out.send_nowait(filler)
        out.send_nowait(filler)  # room 2
        assert not inlet.try_send(block)
        assert stage.stats.blocks == 0 and stage.core.chunker.position == 0
        inbox.receive_nowait()  # room 3
        assert inlet.try_send(block)
        assert stage.stats.blocks == 1

    async def test_refused_while_another_producer_is_in_the_stage(self) -> None:
        """A producer blocked delivering its frames holds the stage: try_send takes nothing."""
        out, inbox = open_inlet(1)
        stage = resampler.Resampler(outbox=out, config=ResamplerConfig(out_rate=16000))
        inlet = stage.inlet()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inlet.send, ones(3200))  # 2 frames, room for 1: it waits
            await trio.testing.wait_all_tasks_blocked()
            inbox.receive_nowait()  # room again, but the sender is still in the stage
            assert not inlet.try_send(ones(1600))
            assert inbox.receive_nowait().start == 1600
        assert inlet.try_send(ones(1600))
        assert inbox.receive_nowait().start == 3200

    async def test_refused_while_a_cancelled_send_left_frames(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Frames a cancelled send did not deliver go first: try_send refuses, send delivers."""
        out, channel = trio.open_memory_channel[AudioFrame](1)
        stage = resampler.Resampler(outbox=out, config=ResamplerConfig(out_rate=16000))
        inlet = stage.inlet()
        with trio.move_on_after(1) as scope:  # room for one of its two frames: stuck
            await inlet.send(ones(3200))
        assert scope.cancelled_caught
        assert channel.receive_nowait().start == 0  # room again, but frame 1600 waits
        assert not inlet.try_send(ones(1600))
        assert stage.stats.blocks == 1
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(inlet.send, ones(1600))
                assert [(await channel.receive()).start for _ in range(2)] == [1600, 3200]

    async def test_closed_finished_and_unknown_outboxes(self) -> None:
        """A closed handle and a finished stage raise; an outbox with no sync API refuses."""
        out, _channel = trio.open_memory_channel[AudioFrame](4)
        stage = resampler.Resampler(outbox=out, config=ResamplerConfig(out_rate=16000))
        inlet = stage.inlet()
        inlet.close()
        with pytest.raises(trio.ClosedResourceError):
            inlet.try_send(ones(10))
        stage._finished = True
        with pytest.raises(trio.BrokenResourceError):
            stage._try_send(ones(10))

        class Opaque:
            def __init__(self) -> None:
                self.sent: list[AudioFrame] = []

            async def send(self, value: AudioFrame, /) -> None:
                self.sent.append(value)

            def close(self) -> None:
                pass

            async def aclose(self) -> None:
                pass

            async def __aenter__(self) -> Opaque:
                return self

            async def __aexit__(self, *exc: object) -> None:
                pass

        opaque = Opaque()
        other = resampler.Resampler(outbox=opaque, config=ResamplerConfig(out_rate=16000))
        handle = other.inlet()
        assert not handle.try_send(ones(1600))
        await handle.send(ones(1600))
        assert [f.start for f in opaque.sent] == [0]

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        ops=st.lists(
            st.tuples(
                st.sampled_from([8000, 16000, 16000, 16000, 44100, 48000]),
                st.one_of(
                    st.sampled_from([320, 1000, 1600, 2500, 4410, 4800]), st.integers(0, 9000)
                ),
                st.booleans(),  # float or int16
                st.integers(0, 3).map(lambda k: k == 0),  # let the session drain first
            ),
            min_size=1,
            max_size=30,
        ),
        size=st.integers(1, 8),
        frame_ms=st.sampled_from([20, 100]),
        pcm16=st.booleans(),
    )
    def test_same_frames_as_send_and_nothing_deferred(
        self, ops: list[tuple[int, int, bool, bool]], size: int, frame_ms: int, pcm16: bool
    ) -> None:
        """Any mix of try_send (await send when refused) gives send's frames, exactly, and a
        taken block's frames are always all handed over (the room bound never misses); so
        does ``try_send_pcm16`` of the int16 blocks at the output rate (``pcm16``), whose
        whole frames take the one-frame path, and the stage's counters agree."""
        rng = np.random.default_rng(len(ops))
        blocks = []
        for rate, n, is_float, drain in ops:
            x = rng.integers(-20000, 20000, n, dtype=np.int16)
            block = RawBlock(x.astype(np.float32) / 32768, rate) if is_float else PcmBlock(x, rate)
            blocks.append((block, drain))
        config = ResamplerConfig(out_rate=16000, frame_ms=frame_ms)

        async def main() -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]], int, int]:
            with trio.fail_after(60):  # a hang fails at once (the clock jumps when idle)
                return await play()

        async def play() -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]], int, int]:
            out, inbox = open_inlet(size)
            stage = resampler.Resampler(outbox=out, config=config)
            got: list[tuple[int, bytes]] = []
            taken = 0
            gate = trio.Event()

            async def session() -> None:
                nonlocal gate
                async for f in inbox:
                    got.append((f.start, f.pcm))
                    if not gate.is_set():
                        await gate.wait()

            async with trio.open_nursery() as nursery:
                await nursery.start(stage.run)
                nursery.start_soon(session)
                async with stage.inlet() as inlet:
                    for block, drain in blocks:
                        if drain:
                            gate.set()
                            await trio.testing.wait_all_tasks_blocked()
                            gate = trio.Event()
                        direct = pcm16 and isinstance(block, PcmBlock) and block.rate == 16000
                        if (
                            inlet.try_send_pcm16(block.samples.tobytes())
                            if direct
                            else inlet.try_send(block)
                        ):
                            taken += 1
                            assert not stage._pending
                        else:
                            gate.set()  # the session reads on while the producer waits
                            await inlet.send(block)
                            gate = trio.Event()
                    gate.set()
            stats = stage.stats
            assert stats.blocks == len(blocks)
            assert stats.input_s == sum(Fraction(len(b.samples), b.rate) for b, _ in blocks)
            assert stats.position == stage.core.chunker.position == sum(len(p) // 2 for _, p in got)
            return (
                got,
                await reference([b for b, _ in blocks], config),
                stage.deferred_frames,
                taken,
            )

        got, ref, deferred, _taken = trio.run(
            main, clock=trio.testing.MockClock(autojump_threshold=0)
        )
        assert got == ref
        assert deferred == 0


async def reference(
    blocks: list[PcmBlock | RawBlock], config: ResamplerConfig
) -> list[tuple[int, bytes]]:
    """The frames ``await send`` makes of ``blocks`` (read as they come)."""
    out_send, out_receive = trio.open_memory_channel[AudioFrame](0)
    stage = resampler.Resampler(outbox=out_send, config=config)
    frames: list[tuple[int, bytes]] = []

    async def read() -> None:
        async with out_receive:
            frames.extend([(f.start, f.pcm) async for f in out_receive])

    async with trio.open_nursery() as nursery:
        await nursery.start(stage.run)
        nursery.start_soon(read)
        async with stage.inlet() as inlet:
            for block in blocks:
                await inlet.send(block)
    return frames
