"""The file capture actor: plays an audio file into the pipeline as if it were a microphone.

It opens the file (all validation happens there, before ``task_status.started``),
then sends mono int16 :class:`PcmBlock` s of about ``block_ms`` each. With a
``speed`` it paces them on an absolute schedule: the block that ends at ``d``
seconds of audio is sent at ``t0 + d / speed`` on the trio clock, so slow sends
never accumulate into drift (a late block is followed by on-time ones). With
``speed=None`` (``--fast``) it sends as fast as the outbox accepts.

Paced, a block costs no task wake: the task parks in the run's shared pacer
(:meth:`engine.pacer.Pacer.drive`) and the pacer's ticker calls the capture's step
at each block's deadline, which slices the block from the read-ahead (no thread hop
per block) and hands it to the resampler stage synchronously (``try_send``: the
stage converts it and its frames go on the session's fast lane or into its queue).
The task takes over only when the read-ahead is used up (the next read) or a block
is refused (the session is behind: ``await outbox.send(block)``, backpressure as
before), then drives again. Blocks, order, deadlines and counts are the same as a
task that waits for each deadline and sends (what an outbox with no synchronous
``try_send`` gets, and ``--fast`` a plain send loop). The read-ahead is
:data:`READ_AHEAD_BYTES` of mono int16 at the file's rate, read in one
worker-thread hop (or ffmpeg pipe read) right after the previous one is used up,
about a block's time before it is due; paced, the read may wait half of that for
other files' reads to share its hop (:mod:`adapters.audio._batchread`).
"""

from __future__ import annotations

import math
import shutil
from typing import TYPE_CHECKING, Any, Final, final

import msgspec
import numpy as np
import structlog
import trio

from adapters.audio.files import SourceInfo, open_audio_source
from engine.actors.resampler import ResamplerInlet
from engine.messages import PcmBlock
from engine.pacer import current_pacer

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import NDArray

    from adapters.audio.files import ToolFinder
    from engine.messages import AudioOutbox
    from engine.pacer import Pacer

__all__ = [
    "READ_AHEAD_BYTES",
    "CaptureStats",
    "FileCaptureConfig",
    "PcmBlock",
    "SourceInfo",
    "block_deadline",
    "read_ahead_frames",
    "run",
]

log = structlog.get_logger()

#: The read-ahead bound: mono int16 at the file's rate read per hop, rounded down to
#: whole blocks (at least one): 1.0 s at 16 kHz, 0.3 s at 48 kHz, 2.0 s at 8 kHz.
READ_AHEAD_BYTES: Final = 32 * 1024


_NO_SAMPLES: Final = np.zeros(0, np.int16)


def read_ahead_frames(block_frames: int) -> int:
    """Frames read per hop: whole blocks within :data:`READ_AHEAD_BYTES`."""
    return max(1, READ_AHEAD_BYTES // 2 // block_frames) * block_frames


@final
class CaptureStats:
    """Live counters of one capture (read them; the actor writes them)."""

    def __init__(self) -> None:
        self.blocks = 0
        self.samples = 0  # sent, at the source rate
        self.reads = 0  # read-ahead hops


class FileCaptureConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which file to play and how fast.

    Attributes:
        path: The audio file.
        speed: Real-time multiplier (2.0 plays twice as fast); None sends as fast as
            the pipeline accepts (``--fast``).
        block_ms: Length of each block.
    """

    path: str
    speed: float | None = 1.0
    block_ms: int = 100

    def __post_init__(self) -> None:
        if self.speed is not None and not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be a positive number or None, got {self.speed}")
        if self.block_ms <= 0:
            raise ValueError(f"block_ms must be positive, got {self.block_ms}")


def block_deadline(t0: float, emitted_frames: int, rate: int, speed: float) -> float:
    """When to send the block that brings the total to ``emitted_frames`` frames."""
    return t0 + emitted_frames / rate / speed


def _synchronous_send(outbox: AudioOutbox[PcmBlock]) -> Callable[[PcmBlock], bool] | None:
    """The outbox's hand-over without waiting (True: taken), or None when it has none.

    A resampler stage's inlet (``try_send``: all or nothing), or a memory channel
    (``send_nowait``); anything else is paced by waiting and sending.
    """
    if isinstance(outbox, ResamplerInlet):
        return outbox.try_send
    if isinstance(outbox, trio.MemorySendChannel):
        channel: trio.MemorySendChannel[Any] = outbox

        def send_nowait(item: PcmBlock) -> bool:
            try:
                channel.send_nowait(item)
            except trio.WouldBlock:
                return False
            return True

        return send_nowait
    return None


@final
class _Playback:
    """The pacer's step over one read-ahead chunk: the next block, handed over at its deadline.

    Not a checkpoint, never waits (it runs in the pacer's ticker). A block the outbox
    refuses is left in :attr:`refused` for the task to send; either way the step
    returns ``None`` then, and at the end of the chunk. With ``try_send_pcm16`` (the
    chunk is at the stream's rate) a block goes over as the chunk's bytes, sliced:
    no array and no block object per block (the embedding API's ``try_push`` path).
    """

    __slots__ = (
        "block",
        "chunk",
        "counts",
        "data",
        "emitted",
        "length",
        "pos",
        "rate",
        "refused",
        "speed",
        "t0",
        "try_send",
        "try_send_pcm16",
    )

    def __init__(
        self,
        chunk: NDArray[np.int16],
        *,
        block: int,
        rate: int,
        speed: float,
        t0: float,
        emitted: int,
        try_send: Callable[[PcmBlock], bool],
        counts: CaptureStats,
        try_send_pcm16: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.length = len(chunk)
        # Mono int16 LE (to_mono_pcm16): its bytes are the frames' bytes. Only one of
        # the two is kept (the caller drops its reference): the read-ahead is held once.
        self.data = chunk.tobytes() if try_send_pcm16 is not None else b""
        self.chunk = chunk if try_send_pcm16 is None else _NO_SAMPLES
        self.block = block
        self.rate = rate
        self.speed = speed
        self.t0 = t0
        self.emitted = emitted  # source frames of the blocks due so far
        self.try_send = try_send
        self.try_send_pcm16 = try_send_pcm16
        self.counts = counts
        self.pos = 0  # the next block's start in the chunk
        self.refused: PcmBlock | None = None

    @property
    def done(self) -> bool:
        return self.pos >= self.length

    def deadline(self) -> float:
        """When the next block is due (its audio's end, on the absolute schedule)."""
        n = min(self.block, self.length - self.pos)
        return block_deadline(self.t0, self.emitted + n, self.rate, self.speed)

    def step(self, now: float) -> float | None:
        pos = self.pos
        n = min(self.block, self.length - pos)
        self.pos = pos + n
        self.emitted += n
        if self.try_send_pcm16 is not None:
            pcm = self.data[2 * pos : 2 * (pos + n)]
            if not self.try_send_pcm16(pcm):
                self.refused = PcmBlock(np.frombuffer(pcm, "<i2"), self.rate)
                return None
        else:
            item = PcmBlock(self.chunk[pos : pos + n], self.rate)
            if not self.try_send(item):
                self.refused = item
                return None
        self.counts.blocks += 1
        self.counts.samples = self.emitted
        return None if self.pos >= self.length else self.deadline()


async def run(
    *,
    outbox: AudioOutbox[PcmBlock],
    config: FileCaptureConfig,
    task_status: trio.TaskStatus[SourceInfo] = trio.TASK_STATUS_IGNORED,
    find_tool: ToolFinder = shutil.which,
    stats: CaptureStats | None = None,
    pacer: Pacer | None = None,
    start: trio.Event | None = None,
    stream_rate: int | None = None,
) -> None:
    """Open ``config.path`` and send its audio, paced, to ``outbox``.

    Args:
        outbox: Where the blocks go (a stream's resampler inlet, or a channel).
        config: The file and the pacing.
        task_status: Gets the :class:`SourceInfo` (rate, channels, duration) once the
            file is open and valid.
        find_tool: Looks up ffmpeg/ffprobe (injectable for tests).
        stats: Counters to update (what was sent, for an interrupted stream's report).
        pacer: Paces the blocks; default the run's shared :func:`~engine.pacer.current_pacer`.
        start: The file starts playing (its clock, ``t0``, starts) once this is set;
            None: as soon as it is open. A file waits for its stream's first task
            (:mod:`engine.pipeline`), so a stream started late by the task-start limit
            plays in real time from then on instead of buffering a backlog to replay.
        stream_rate: the rate ``outbox`` (a stream's resampler inlet) sends at: a
            file at that rate hands its paced blocks over as int16 bytes
            (``try_send_pcm16``), the same audio without an array per block.

    Resource handling:
        At most :func:`read_ahead_frames` of the file is held, as int16.

    Channels:
        Owns and closes ``outbox``, at the end of the file or on any error; the
        receiver then sees ``EndOfChannel``.

    Cancellation:
        Stops while waiting for ``start`` (nothing sent), or between blocks (parked
        in the pacer, or in the outbox's send, which keeps what it took; blocks the
        pacer's step handed over stay handed over); the decoder (file or ffmpeg
        process) is closed and the unsent read-ahead dropped. Audio already sent
        stays sent.

    Error handling:
        :class:`~engine.errors.InputError` for a bad file is raised before
        ``task_status.started``, so ``nursery.start`` raises it. A decoding failure
        later also raises ``InputError``. If the receiver closed its end, the
        ``trio.BrokenResourceError`` propagates (raised in the pacer's step, it is
        re-raised here).
    """
    counts = stats if stats is not None else CaptureStats()
    with structlog.contextvars.bound_contextvars(actor="capture", source=config.path):
        async with outbox:
            source = await open_audio_source(
                config.path, block_ms=config.block_ms, find_tool=find_tool
            )
            async with source:
                task_status.started(source.info)
                if start is not None:
                    await start.wait()
                rate, speed = source.rate, config.speed
                block = max(1, rate * config.block_ms // 1000)
                ahead = read_ahead_frames(block)
                paced = pacer or current_pacer()
                try_send = _synchronous_send(outbox) if speed is not None else None
                try_pcm16 = (
                    outbox.try_send_pcm16
                    if isinstance(outbox, ResamplerInlet) and rate == stream_rate
                    else None
                )
                # A read comes a block before its first block is due: it may wait half
                # of that to share its thread hop with other files' reads.
                gather = 0.0 if speed is None else config.block_ms / 1000 / speed / 2
                t0 = trio.current_time()
                emitted = 0
                while len(chunk := await source.read_pcm16(ahead, gather_s=gather)):
                    counts.reads += 1
                    chunk.flags.writeable = False  # blocks are views of it
                    if speed is not None and try_send is not None:
                        play = _Playback(
                            chunk,
                            block=block,
                            rate=rate,
                            speed=speed,
                            t0=t0,
                            emitted=emitted,
                            try_send=try_send,
                            counts=counts,
                            try_send_pcm16=try_pcm16,
                        )
                        del chunk  # the step holds the read-ahead (as bytes or samples)
                        while not play.done:
                            await paced.drive(play.step, play.deadline())
                            if play.refused is not None:  # the session is behind: wait for it
                                item, play.refused = play.refused, None
                                await outbox.send(item)
                                counts.blocks += 1
                                counts.samples = play.emitted
                        emitted = play.emitted
                        continue
                    for i in range(0, len(chunk), block):
                        samples = chunk[i : i + block]
                        emitted += len(samples)
                        if speed is not None:
                            await paced.wait_until(block_deadline(t0, emitted, rate, speed))
                        await outbox.send(PcmBlock(samples, rate))
                        counts.blocks += 1
                        counts.samples = emitted
                log.info(
                    "capture.finished",
                    blocks=counts.blocks,
                    audio_s=round(emitted / rate, 3),
                    elapsed_s=round(trio.current_time() - t0, 3),
                    speed=speed,
                    decoder=source.info.decoder,
                    reads=counts.reads,
                )
