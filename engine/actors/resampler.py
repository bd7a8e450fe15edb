"""The resampler actor: raw capture blocks in, fixed-size int16 :class:`AudioFrame` s out.

It converts each :class:`~engine.actors.capture.RawBlock` to ``out_rate`` with a
:class:`~adapters.audio.resample.StreamResampler` (float32, soxr HQ), turns the
result into int16 little-endian PCM, and re-chunks it into frames of exactly
``frame_ms`` (the last may be shorter). ``start`` counts output samples from 0, so
frames tile the stream's global timeline with no gaps or overlaps. The
re-chunking is the pure :class:`Rechunker`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

import msgspec
import structlog
import trio

from adapters.audio.resample import StreamResampler, float_to_pcm16
from engine.events import AudioFrame

if TYPE_CHECKING:
    from engine.actors.capture import RawBlock

__all__ = ["Rechunker", "ResamplerConfig", "run"]

log = structlog.get_logger()


class ResamplerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Output rate, frame length and the stream id stamped on every frame."""

    out_rate: int
    frame_ms: int = 100
    stream: str = ""

    def __post_init__(self) -> None:
        if self.out_rate <= 0 or self.frame_ms <= 0:
            raise ValueError(f"out_rate and frame_ms must be positive, got {self}")
        if self.frame_samples == 0:
            raise ValueError(f"a {self.frame_ms} ms frame at {self.out_rate} Hz is empty")

    @property
    def frame_samples(self) -> int:
        return self.out_rate * self.frame_ms // 1000


@final
class Rechunker:
    """Cut a stream of int16 PCM bytes into frames of ``frame_samples`` (pure).

    Each frame comes with its start: the global index of its first sample.
    """

    def __init__(self, frame_samples: int) -> None:
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, got {frame_samples}")
        self._frame_bytes: Final = 2 * frame_samples
        self._buf = bytearray()
        self._next_start = 0

    @property
    def position(self) -> int:
        """Samples handed out so far in frames (the next frame's start)."""
        return self._next_start

    def push(self, pcm: bytes) -> list[tuple[int, bytes]]:
        """Add PCM; return the complete frames it finished, as ``(start, pcm)``."""
        self._buf += pcm
        frames: list[tuple[int, bytes]] = []
        while len(self._buf) >= self._frame_bytes:
            frames.append(self._take(self._frame_bytes))
        return frames

    def flush(self) -> list[tuple[int, bytes]]:
        """End of stream: the remainder as one short frame (nothing if empty)."""
        return [self._take(len(self._buf))] if self._buf else []

    def _take(self, n: int) -> tuple[int, bytes]:
        pcm = bytes(self._buf[:n])
        del self._buf[:n]
        start, self._next_start = self._next_start, self._next_start + n // 2
        return start, pcm


async def run(
    *,
    inbox: trio.MemoryReceiveChannel[RawBlock],
    outbox: trio.MemorySendChannel[AudioFrame],
    config: ResamplerConfig,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Resample and re-frame everything from ``inbox`` into ``outbox``.

    The resampler is made for the first block's rate. If a later block comes at a
    different rate (a capture device changed), the old stream is flushed and a new
    one starts; the timeline continues without a gap.

    Channels:
        Owns and closes both. When ``inbox`` ends, it flushes the resampler, sends
        the last (short) frame and closes ``outbox``.

    Cancellation:
        Stops at the next send or receive; samples held in the resampler and the
        partial frame are dropped (the outbox is still closed).
    """
    with structlog.contextvars.bound_contextvars(actor="resampler", stream=config.stream):
        async with inbox, outbox:
            task_status.started()
            chunker = Rechunker(config.frame_samples)
            resampler: StreamResampler | None = None
            samples_in = 0

            async def emit(frames: list[tuple[int, bytes]]) -> None:
                for start, pcm in frames:
                    frame = AudioFrame(
                        start=start,
                        pcm=pcm,
                        rate=config.out_rate,
                        stream=config.stream,
                        t=trio.current_time(),
                    )
                    await outbox.send(frame)

            async for block in inbox:
                if resampler is not None and block.rate != resampler.in_rate:
                    log.info("resampler.rate_changed", old=resampler.in_rate, new=block.rate)
                    await emit(chunker.push(float_to_pcm16(resampler.flush())))
                    resampler = None
                if resampler is None:
                    resampler = StreamResampler(block.rate, config.out_rate)
                samples_in += len(block.samples)
                await emit(chunker.push(float_to_pcm16(resampler.process(block.samples))))
            if resampler is not None:
                await emit(chunker.push(float_to_pcm16(resampler.flush())))
            await emit(chunker.flush())
            log.debug("resampler.finished", samples_in=samples_in, samples_out=chunker.position)
