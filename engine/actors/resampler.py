"""The resampler actor: raw capture blocks in, fixed-size int16 :class:`AudioFrame` s out.

It converts each :class:`~engine.messages.RawBlock` to ``out_rate`` with a
:class:`~adapters.audio.resample.StreamResampler` (float32, soxr HQ), turns the
result into int16 little-endian PCM, and re-chunks it into frames of exactly
``frame_ms`` (the last may be shorter). ``start`` counts output samples from 0, so
frames tile the stream's global timeline with no gaps or overlaps. The
re-chunking is the pure :class:`Rechunker`.

A :class:`~engine.messages.Skip` (source time with no audio) ends the run
before it (the resampler's tail and a short frame are sent), then moves the
timeline on to the source time elapsed so far, ``round(seconds * out_rate)``, so
the next frame starts after a hole and the timeline stays on wall time (each
skip also absorbs the rounding of the runs before it). The skipped span is
reported on ``events`` as an ``AudioGap`` (lost) or an ``AudioSkipped``.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from typing import TYPE_CHECKING, Final, final

import msgspec
import structlog
import trio

from adapters.audio.resample import StreamResampler, float_to_pcm16
from engine.events import AudioFrame, AudioGap, AudioSkipped, Event
from engine.messages import Skip

if TYPE_CHECKING:
    from engine.messages import RawBlock

__all__ = ["Rechunker", "ResamplerConfig", "ResamplerStats", "run"]

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

    def skip(self, samples: int) -> None:
        """Leave ``samples`` out of the timeline: the next frame starts that much later.

        Raises:
            ValueError: PCM is still held (:meth:`flush` it first), or ``samples`` < 0.
        """
        if self._buf or samples < 0:
            raise ValueError("skip needs an empty buffer and samples >= 0")
        self._next_start += samples

    def _take(self, n: int) -> tuple[int, bytes]:
        pcm = bytes(self._buf[:n])
        del self._buf[:n]
        start, self._next_start = self._next_start, self._next_start + n // 2
        return start, pcm


@final
class ResamplerStats:
    """Live counters of one resampler actor (read them; the actor writes them)."""

    def __init__(self) -> None:
        self.blocks = 0
        self.input_s = Fraction(0)  # source time so far: audio taken in plus skips
        self.position = 0  # global samples handed out (frames and skips)
        self.skips = 0
        self.skipped_samples = 0  # skipped on purpose (AudioSkipped)
        self.lost_samples = 0  # skipped as lost (AudioGap)


async def run(
    *,
    inbox: trio.MemoryReceiveChannel[RawBlock | Skip],
    outbox: trio.MemorySendChannel[AudioFrame],
    config: ResamplerConfig,
    events: trio.MemorySendChannel[Event] | None = None,
    task_status: trio.TaskStatus[ResamplerStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Resample and re-frame everything from ``inbox`` into ``outbox``.

    The resampler is made for the first block's rate. If a later block comes at a
    different rate (a capture device changed), the old stream is flushed and a new
    one starts; the timeline continues without a gap. A :class:`Skip` leaves a
    hole in the timeline (see the module docstring) and is reported on ``events``.

    Channels:
        Owns and closes ``inbox``, ``outbox`` and ``events``. When ``inbox`` ends,
        it flushes the resampler, sends the last (short) frame and closes ``outbox``.

    Cancellation:
        Stops at the next send or receive; samples held in the resampler and the
        partial frame are dropped (the outbox is still closed).
    """
    with structlog.contextvars.bound_contextvars(actor="resampler", stream=config.stream):
        async with inbox, outbox, events or contextlib.nullcontext():
            stats = ResamplerStats()
            task_status.started(stats)
            chunker = Rechunker(config.frame_samples)
            resampler: StreamResampler | None = None

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
                    stats.position = frame.end

            async for item in inbox:
                if isinstance(item, Skip):
                    if resampler is not None:
                        await emit(chunker.push(float_to_pcm16(resampler.flush())))
                        resampler = None
                    await emit(chunker.flush())
                    stats.input_s += Fraction(item.samples, item.rate)
                    await _skip(item, chunker, stats, config, events)
                    continue
                if resampler is not None and item.rate != resampler.in_rate:
                    log.info("resampler.rate_changed", old=resampler.in_rate, new=item.rate)
                    await emit(chunker.push(float_to_pcm16(resampler.flush())))
                    resampler = None
                if resampler is None:
                    resampler = StreamResampler(item.rate, config.out_rate)
                stats.blocks += 1
                stats.input_s += Fraction(len(item.samples), item.rate)
                await emit(chunker.push(float_to_pcm16(resampler.process(item.samples))))
            if resampler is not None:
                await emit(chunker.push(float_to_pcm16(resampler.flush())))
            await emit(chunker.flush())
            log.debug(
                "resampler.finished",
                input_s=round(float(stats.input_s), 3),
                samples_out=chunker.position,
                skips=stats.skips,
            )


async def _skip(
    item: Skip,
    chunker: Rechunker,
    stats: ResamplerStats,
    config: ResamplerConfig,
    events: trio.MemorySendChannel[Event] | None,
) -> None:
    """Move the timeline to the source time so far; report the span."""
    start = chunker.position
    end = max(start, round(stats.input_s * config.out_rate))
    chunker.skip(end - start)
    stats.position = end
    if end == start:
        return
    stats.skips += 1
    if item.lost:
        stats.lost_samples += end - start
    else:
        stats.skipped_samples += end - start
    log.info("resampler.skip", start=start, end=end, reason=item.reason, lost=item.lost)
    if events is not None:
        kind = AudioGap if item.lost else AudioSkipped
        await events.send(
            kind(
                start,
                end,
                item.reason,
                rate=config.out_rate,
                stream=config.stream,
                t=trio.current_time(),
            )
        )
