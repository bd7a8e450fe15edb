from __future__ import annotations

import math
import re
import shutil
import subprocess
import traceback
from pathlib import Path

import msgspec
import numpy as np
import pytest
import soundfile as sf
import trio
import trio.testing
from conftest import deadline

from adapters.audio.files import SourceInfo
from adapters.audio.resample import float_to_pcm16
from engine.actors import capture
from engine.actors._inlet import open_inlet
from engine.actors.capture import FileCaptureConfig, block_deadline
from engine.actors.resampler import Resampler, ResamplerConfig
from engine.errors import InputError
from engine.events import AudioFrame
from engine.messages import PcmBlock
from engine.pacer import Pacer

# Pacing runs on autojump_clock while the actor reads the file in a worker thread (or
# an ffmpeg pipe). Autojump leaps to the earliest pending deadline whenever trio is
# idle, even with that I/O in flight, so these tests carry no trio deadline (it would
# fire at once); faulthandler_timeout guards against hangs. The timings stay exact
# because no third task has a deadline here: a leap can only land on the consumer's
# own wake-up, and a block goes at max(its due time, consumer ready) anyway.
DEMO = Path(__file__).resolve().parents[2] / "scenarios" / "audio"


def no_tools(_name: str) -> str | None:
    return None


@pytest.fixture(name="three_seconds")
def _three_seconds(tmp_path: Path) -> Path:
    """3.000 s of 16 kHz mono noise."""
    path = tmp_path / "three.wav"
    x = np.random.default_rng(5).uniform(-0.5, 0.5, 48000).astype(np.float32)
    sf.write(path, x, 16000, subtype="FLOAT")
    return path


@pytest.fixture(name="one_second_mp3")
def _one_second_mp3(tmp_path: Path) -> Path:
    """1 s of 16 kHz mono silence as mp3 (made with ffmpeg)."""
    sf.write(tmp_path / "s.wav", np.zeros(16000, dtype=np.float32), 16000)
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(tmp_path / "s.wav"),
        str(tmp_path / "s.mp3"),
    ]
    subprocess.run(cmd, check=True)
    return tmp_path / "s.mp3"


async def play(
    config: FileCaptureConfig, *, pause_after: int | None = None, pause_s: float = 0.0
) -> tuple[SourceInfo, list[PcmBlock], list[float], float]:
    """Run the capture actor into a 0-size channel; return info, blocks, arrival times, t0.

    With ``pause_after=k`` the consumer stalls for ``pause_s`` after the k-th block.
    """
    send, receive = trio.open_memory_channel[PcmBlock](0)
    blocks: list[PcmBlock] = []
    arrivals: list[float] = []
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        info = await nursery.start(
            lambda task_status: capture.run(outbox=send, config=config, task_status=task_status)
        )
        async with receive:
            async for block in receive:
                blocks.append(block)
                arrivals.append(trio.current_time())
                if len(blocks) == pause_after:
                    await trio.sleep(pause_s)
    return info, blocks, arrivals, t0


class TestPacing:
    @pytest.mark.parametrize(("speed", "total"), [(1.0, 3.0), (2.0, 1.5), (0.5, 6.0), (None, 0.0)])
    async def test_total_time_is_duration_over_speed(
        self,
        autojump_clock: trio.testing.MockClock,
        three_seconds: Path,
        speed: float | None,
        total: float,
    ) -> None:
        """A 3 s file takes 3 s at speed 1, 1.5 s at speed 2, 6 s at 0.5 and no time with --fast."""
        _, blocks, arrivals, t0 = await play(FileCaptureConfig(str(three_seconds), speed=speed))
        assert len(blocks) == 30
        assert arrivals[-1] - t0 == pytest.approx(total, abs=1e-9)

    async def test_each_block_is_sent_when_its_audio_ends(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path
    ) -> None:
        """Block k arrives at t0 + (k+1) * 100 ms / speed, like a microphone would deliver it."""
        _, _, arrivals, t0 = await play(FileCaptureConfig(str(three_seconds), speed=2.0))
        expected = [t0 + (k + 1) * 0.1 / 2.0 for k in range(30)]
        assert arrivals == pytest.approx(expected, abs=1e-9)

    async def test_a_stall_does_not_cause_drift(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path
    ) -> None:
        """After a slow consumer stalls 0.45 s, the backlog goes at once and the schedule holds."""
        _, _, arrivals, t0 = await play(
            FileCaptureConfig(str(three_seconds)), pause_after=5, pause_s=0.45
        )
        rel = [a - t0 for a in arrivals]
        assert rel[:5] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
        assert rel[5:9] == pytest.approx([0.95] * 4)  # blocks due at 0.6..0.9 go when it is free
        assert rel[9:] == pytest.approx([(k + 1) * 0.1 for k in range(9, 30)])

    def test_block_deadline_is_absolute(self) -> None:
        """The deadline depends only on t0 and the audio sent so far, never on the previous send."""
        assert block_deadline(10.0, 16000, 16000, 1.0) == 11.0
        assert block_deadline(10.0, 48000, 16000, 2.0) == 11.5


class TestBlocks:
    async def test_blocks_hold_the_whole_file(
        self, autojump_clock: trio.testing.MockClock, tmp_path: Path
    ) -> None:
        """Blocks are ~100 ms of mono int16 at the source rate and add up to the file's downmix."""
        data = np.random.default_rng(1).uniform(-0.5, 0.5, (22050 + 777, 2)).astype(np.float32)
        sf.write(tmp_path / "s.wav", data, 22050, subtype="FLOAT")
        info, blocks, _, _ = await play(FileCaptureConfig(str(tmp_path / "s.wav"), speed=None))
        assert (info.rate, info.channels) == (22050, 2)
        assert info.duration_s == pytest.approx((22050 + 777) / 22050)
        assert all(b.rate == 22050 for b in blocks)
        assert all(len(b.samples) == 2205 for b in blocks[:-1])
        assert all(b.samples.dtype == np.int16 and not b.samples.flags.writeable for b in blocks)
        pcm = np.concatenate([b.samples for b in blocks]).tobytes()
        assert pcm == float_to_pcm16(data.mean(axis=1, dtype=np.float32))

    async def test_block_ms(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path
    ) -> None:
        """block_ms sets the block length (and so the number of sends)."""
        _, blocks, _, _ = await play(FileCaptureConfig(str(three_seconds), speed=None, block_ms=20))
        assert len(blocks) == 150
        assert {len(b.samples) for b in blocks} == {320}

    async def test_meeting_demo_fast(self, autojump_clock: trio.testing.MockClock) -> None:
        """The 48 kHz stereo meeting demo plays in full as mono blocks."""
        info, blocks, _, _ = await play(FileCaptureConfig(str(DEMO / "meeting.wav"), speed=None))
        assert (info.rate, info.channels, info.decoder) == (48000, 2, "soundfile")
        assert sum(len(b.samples) for b in blocks) == sf.info(str(DEMO / "meeting.wav")).frames

    @pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
    async def test_mp3_paced(
        self, autojump_clock: trio.testing.MockClock, one_second_mp3: Path
    ) -> None:
        """An mp3 plays through ffmpeg, paced by its decoded length."""
        info, blocks, arrivals, t0 = await play(FileCaptureConfig(str(one_second_mp3)))
        assert info.decoder == "ffmpeg"
        decoded = sum(len(b.samples) for b in blocks)
        assert arrivals[-1] - t0 == pytest.approx(decoded / 16000)


class TestErrors:
    @deadline(10)
    async def test_bad_file_fails_before_started(self, tmp_path: Path) -> None:
        """A missing file raises InputError from nursery.start, and the outbox is closed."""
        send, receive = trio.open_memory_channel[PcmBlock](1)
        config = FileCaptureConfig(str(tmp_path / "missing.wav"))
        async with trio.open_nursery() as nursery:
            with pytest.raises(InputError, match="not found"):
                await nursery.start(
                    lambda task_status: capture.run(
                        outbox=send, config=config, task_status=task_status
                    )
                )
        with pytest.raises(trio.EndOfChannel):
            await receive.receive()

    @deadline(10)
    async def test_missing_ffmpeg_fails_before_started(self, tmp_path: Path) -> None:
        """An mp3 on a machine without ffmpeg fails at start with the install hint."""
        (tmp_path / "x.mp3").write_bytes(b"\xff\xfb" + bytes(500))
        send, _receive = trio.open_memory_channel[PcmBlock](1)
        config = FileCaptureConfig(str(tmp_path / "x.mp3"))
        async with trio.open_nursery() as nursery:
            with pytest.raises(
                InputError,
                match=re.escape("needs ffmpeg to decode .mp3; fix: apt-get install ffmpeg"),
            ):
                await nursery.start(
                    lambda task_status: capture.run(
                        outbox=send, config=config, task_status=task_status, find_tool=no_tools
                    )
                )

    async def test_cancel_mid_file_closes_outbox(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path
    ) -> None:
        """Cancelling the actor part way closes its outbox."""
        send, receive = trio.open_memory_channel[PcmBlock](0)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: capture.run(
                    outbox=send,
                    config=FileCaptureConfig(str(three_seconds)),
                    task_status=task_status,
                )
            )
            await receive.receive()
            nursery.cancel_scope.cancel()
        with pytest.raises(trio.EndOfChannel):
            await receive.receive()


class TestConfig:
    @pytest.mark.parametrize("speed", [0.0, -1.0, math.nan, math.inf])
    def test_bad_speed(self, speed: float) -> None:
        """Speed must be a positive finite number (or None)."""
        with pytest.raises(ValueError, match="speed"):
            FileCaptureConfig("x.wav", speed=speed)

    def test_bad_block_ms(self) -> None:
        """block_ms must be positive."""
        with pytest.raises(ValueError, match="block_ms"):
            FileCaptureConfig("x.wav", block_ms=0)

    def test_decodes_strictly(self) -> None:
        """Configs decode from data; unknown fields are refused."""
        assert (
            msgspec.json.decode(b'{"path":"a.wav","speed":null}', type=FileCaptureConfig).speed
            is None
        )
        with pytest.raises(msgspec.ValidationError, match="spede"):
            msgspec.json.decode(b'{"path":"a.wav","spede":2}', type=FileCaptureConfig)


class TestReadAhead:
    def test_bound(self) -> None:
        """Whole blocks within 32 KiB of int16: 1 s at 16 kHz, 0.3 s at 48 kHz, at least a block."""
        assert capture.read_ahead_frames(1600) * 2 <= capture.READ_AHEAD_BYTES
        assert capture.read_ahead_frames(1600) == 16000
        assert capture.read_ahead_frames(4800) == 14400
        assert capture.read_ahead_frames(800) == 16000
        assert capture.read_ahead_frames(40000) == 40000  # a huge block: one per hop

    async def test_reads_seconds_per_hop_and_paces_on_the_shared_pacer(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path
    ) -> None:
        """3 s at 16 kHz: 3 hops of 1 s, 30 blocks, each paced by the run's pacer on time."""
        stats = capture.CaptureStats()
        pacer = Pacer()
        send, receive = trio.open_memory_channel[PcmBlock](100)
        async with receive, trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: capture.run(
                    outbox=send,
                    config=FileCaptureConfig(str(three_seconds)),
                    stats=stats,
                    pacer=pacer,
                )
            )
        assert (stats.reads, stats.blocks, stats.samples) == (3, 30, 48000)
        lateness = pacer.statistics()
        assert (lateness.count, lateness.max_ms) == (30, 0.0)

    async def test_int16_wav_into_the_stage_is_bit_exact(
        self, autojump_clock: trio.testing.MockClock, tmp_path: Path
    ) -> None:
        """A 16 kHz int16 WAV becomes frames holding the file's own bytes (the old float
        path gave the same), with the file's length on the timeline."""
        ints = np.random.default_rng(9).integers(-32768, 32767, 16000 * 2 + 321, dtype=np.int16)
        sf.write(tmp_path / "a.wav", ints, 16000, subtype="PCM_16")
        old = float_to_pcm16(sf.read(tmp_path / "a.wav", dtype="float32")[0])
        out_send, out_receive = trio.open_memory_channel[AudioFrame](100)
        stage = Resampler(outbox=out_send, config=ResamplerConfig(out_rate=16000))
        async with trio.open_nursery() as nursery:
            await nursery.start(stage.run)
            await capture.run(
                outbox=stage.inlet(), config=FileCaptureConfig(str(tmp_path / "a.wav"), speed=None)
            )
        async with out_receive:
            frames = [f async for f in out_receive]
        assert b"".join(f.pcm for f in frames) == ints.tobytes() == old
        assert [f.start for f in frames] == list(range(0, len(ints), 1600))


class TaskSteps(trio.abc.Instrument):
    """Counts the task steps of tasks named ``name`` (the driven capture must rarely run)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith(self.name):
            self.steps += 1


class TestDriven:
    @pytest.mark.parametrize("stream_rate", [None, 16000])
    async def test_the_pacer_sends_the_blocks_not_the_task(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path, stream_rate: int | None
    ) -> None:
        """Into a stage and the session's inlet: the frames of the file on schedule, the
        capture task running a few times per read-ahead (not twice per block); at the
        stream's rate as bytes (``try_send_pcm16``), the same frames byte for byte."""
        pacer = Pacer()
        inlet, inbox = open_inlet(16)
        stage = Resampler(outbox=inlet, config=ResamplerConfig(out_rate=16000))
        steps = TaskSteps("paced_capture")
        arrivals: list[tuple[int, float]] = []
        stats = capture.CaptureStats()

        async def paced_capture() -> None:
            await capture.run(
                outbox=stage.inlet(),
                config=FileCaptureConfig(str(three_seconds)),
                stats=stats,
                pacer=pacer,
                stream_rate=stream_rate,
            )

        pcm: list[bytes] = []
        trio.lowlevel.add_instrument(steps)
        try:
            t0 = trio.current_time()
            async with trio.open_nursery() as nursery:
                await nursery.start(stage.run)
                nursery.start_soon(paced_capture)
                async for f in inbox:
                    arrivals.append((f.start, inbox.arrived_t - t0))
                    pcm.append(f.pcm)
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert b"".join(pcm) == float_to_pcm16(sf.read(three_seconds, dtype="float32")[0])
        assert arrivals == [(k * 1600, pytest.approx((k + 1) * 0.1)) for k in range(30)]
        assert (stats.blocks, stats.samples, stats.reads) == (30, 48000, 3)
        assert pacer.statistics().count == 30 and pacer.statistics().max_ms == 0.0
        assert steps.steps < 30  # today's wait-then-send took 2 per block

    async def test_a_refused_block_is_sent_by_the_task(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path
    ) -> None:
        """A consumer that is away when blocks fall due: the task sends them (waiting), then
        the pacer drives on; same blocks, same schedule afterwards, each block counted once."""
        pacer = Pacer()
        stats = capture.CaptureStats()
        send, receive = trio.open_memory_channel[PcmBlock](0)
        arrivals: list[float] = []
        async with trio.open_nursery() as nursery:
            t0 = trio.current_time()
            nursery.start_soon(
                lambda: capture.run(
                    outbox=send,
                    config=FileCaptureConfig(str(three_seconds)),
                    stats=stats,
                    pacer=pacer,
                )
            )
            async with receive:
                async for _ in receive:
                    arrivals.append(trio.current_time() - t0)
                    if len(arrivals) in (5, 12):
                        await trio.sleep(0.25)  # away: the next blocks are refused
        assert len(arrivals) == 30 and stats.blocks == 30
        assert arrivals[5:8] == pytest.approx([0.75, 0.75, 0.8])
        assert arrivals[20:] == pytest.approx([(k + 1) * 0.1 for k in range(20, 30)])
        assert pacer.statistics().count == 30  # one lateness per block, whoever sent it

    async def test_bytes_refused_by_a_busy_session_are_sent_by_the_task(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path
    ) -> None:
        """At the stream's rate, a block the session cannot take now goes by the task's
        awaited send: every frame arrives once, in order, byte for byte."""
        inlet, inbox = open_inlet(1)
        stage = Resampler(outbox=inlet, config=ResamplerConfig(out_rate=16000))
        stats = capture.CaptureStats()
        frames: list[tuple[int, bytes]] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(stage.run)
            nursery.start_soon(
                lambda: capture.run(
                    outbox=stage.inlet(),
                    config=FileCaptureConfig(str(three_seconds)),
                    stats=stats,
                    pacer=Pacer(),
                    stream_rate=16000,
                )
            )
            async for f in inbox:
                frames.append((f.start, f.pcm))
                if len(frames) in (3, 17):
                    await trio.sleep(0.35)  # away: the next blocks are refused
        expected = float_to_pcm16(sf.read(three_seconds, dtype="float32")[0])
        assert [start for start, _ in frames] == list(range(0, 48000, 1600))
        assert b"".join(p for _, p in frames) == expected
        assert (stats.blocks, stats.samples) == (30, 48000)

    async def test_cancelled_while_driven(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path
    ) -> None:
        """Cancelled while parked in the pacer: what went out is counted, nothing stays
        registered in the pacer, and the outbox is closed."""
        pacer = Pacer()
        stats = capture.CaptureStats()
        send, receive = trio.open_memory_channel[PcmBlock](100)
        got: list[PcmBlock] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: capture.run(
                    outbox=send,
                    config=FileCaptureConfig(str(three_seconds)),
                    stats=stats,
                    pacer=pacer,
                )
            )
            while len(got) < 5:  # mid read-ahead: the next block is the pacer's to send
                got.append(await receive.receive())
            await trio.testing.wait_all_tasks_blocked()  # the capture is parked in the pacer
            assert pacer.statistics().waiting == 1
            nursery.cancel_scope.cancel()
        with pytest.raises(trio.EndOfChannel):
            receive.receive_nowait()
        assert (len(got), stats.blocks, stats.samples) == (5, 5, 8000)
        assert pacer.statistics().waiting == 0
        await trio.sleep(5.0)
        assert pacer.statistics().count == 5

    async def test_an_error_in_the_step_reaches_the_actor(
        self, autojump_clock: trio.testing.MockClock, three_seconds: Path
    ) -> None:
        """The receiver gone mid-file: the step's BrokenResourceError is raised by the actor."""
        pacer = Pacer()
        send, receive = trio.open_memory_channel[PcmBlock](100)

        async def go_away() -> None:
            await trio.sleep(0.45)
            receive.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(go_away)
            with pytest.raises(trio.BrokenResourceError) as info:
                await capture.run(
                    outbox=send, config=FileCaptureConfig(str(three_seconds)), pacer=pacer
                )
        assert "step" in [frame.name for frame in traceback.extract_tb(info.tb)]
        assert pacer.statistics().waiting == 0
