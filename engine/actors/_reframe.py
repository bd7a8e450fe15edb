"""The resampler's pure logic: blocks in, ``(start, pcm)`` frames out (no trio, no clock).

:class:`ResamplerCore` is what :mod:`engine.actors.resampler` runs in a producer's
task; :class:`Rechunker` cuts int16 PCM into frames on the global timeline;
:class:`ResamplerStats` counts source time exactly (integers per run, folded into a
``Fraction`` only when the rate changes or a skip asks).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Final, final

import msgspec
import numpy as np
import structlog

from adapters.audio.resample import StreamResampler
from engine.messages import PcmBlock

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from engine.messages import RawBlock, Skip

__all__ = ["Rechunker", "ResamplerConfig", "ResamplerCore", "ResamplerStats"]

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

    @property
    def held(self) -> int:
        """Bytes held for the next frame."""
        return len(self._buf)

    def took_whole(self, samples: int) -> None:
        """A frame of ``samples`` was cut outside (:meth:`push` of exactly one frame, nothing held)."""
        self._next_start += samples

    def push(self, pcm: bytes) -> list[tuple[int, bytes]]:
        """Add PCM; return the complete frames it finished, as ``(start, pcm)``."""
        if not self._buf and len(pcm) == self._frame_bytes:  # one block, one frame: no copy
            start = self._next_start
            self._next_start += len(pcm) // 2
            return [(start, pcm)]
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
    """Live counters of one resampler stage (read them; the stage writes them)."""

    def __init__(self) -> None:
        self.blocks = 0
        self.position = 0  # global samples handed out (frames and skips)
        self.skips = 0
        self.skipped_samples = 0  # skipped on purpose (AudioSkipped)
        self.lost_samples = 0  # skipped as lost (AudioGap)
        # Source time so far, exactly: the folded past plus the current run's samples
        # (an int per block instead of Fraction arithmetic on the frame path).
        self._folded = Fraction(0)
        self._run_samples = 0
        self._run_rate = 1

    @property
    def input_s(self) -> Fraction:
        """Source time so far: audio taken in plus skips, exactly."""
        return self._folded + Fraction(self._run_samples, self._run_rate)

    def took(self, samples: int, rate: int) -> None:
        """Count ``samples`` of source time at ``rate``."""
        if rate != self._run_rate:
            self._folded += Fraction(self._run_samples, self._run_rate)
            self._run_samples, self._run_rate = 0, rate
        self._run_samples += samples


_SCALE: Final = np.float32(32768.0)
_INT16: Final = np.dtype("<i2")


@final
class ResamplerCore:
    """The resampler's logic, synchronous and pure (no trio, no clock).

    :meth:`audio` takes a block and returns the frames it completed, :meth:`skip`
    ends the run and moves the timeline, :meth:`finish` flushes. Frames are
    ``(start, pcm)``; the caller stamps them.

    The int16 path: a :class:`PcmBlock` at ``out_rate`` is sliced into frames as
    bytes, with no float round trip (bit-exact with the float path for int16
    sources). Other rates go through soxr in float32 (int16 ÷ 32768, exact) and back
    to int16 with one multiply, rint and clip on a preallocated buffer: the input is
    finite (int16, or a :class:`RawBlock` cleaned of NaN/inf on the way in), so
    soxr's output is too, and only its overshoot past full scale needs the clip.
    """

    def __init__(self, config: ResamplerConfig) -> None:
        self.config: Final = config
        self.stats = ResamplerStats()
        self.chunker = Rechunker(config.frame_samples)
        self._rate: int | None = None  # the current run's input rate
        self._resampler: StreamResampler | None = None
        # Grown on first use: the int16 path at the model rate never needs it (memory).
        self._scratch = np.empty(0, dtype=np.float32)

    @property
    def rate(self) -> int | None:
        """The current run's input rate (None between runs)."""
        return self._rate

    def whole_frame_at(self, nbytes: int) -> int:
        """Where ``nbytes`` of int16 at ``out_rate`` would start as one frame cut outside
        (:meth:`took_frame`): exactly one frame, nothing held, continuing a run at that
        rate or starting one. -1 when it must take :meth:`audio` instead.

        Runs for every frame a pacer drives (#11): the rechunker's fields are read
        here (one module) rather than through three property calls.
        """
        chunker = self.chunker
        if nbytes != chunker._frame_bytes or chunker._buf:
            return -1
        rate = self._rate
        if rate is not None and rate != self.config.out_rate:
            return -1
        return chunker._next_start

    def took_frame(self, pcm: bytes) -> None:
        """What :meth:`audio` does with one whole frame of int16 at ``out_rate`` that
        continues a run at that rate (or starts one) with nothing held, its frame cut
        outside at :meth:`whole_frame_at`."""
        samples = len(pcm) >> 1
        rate = self._rate = self.config.out_rate
        stats = self.stats
        stats.blocks += 1
        if stats._run_rate == rate:  # ResamplerStats.took, its common case inlined
            stats._run_samples += samples
        else:
            stats.took(samples, rate)
        self.chunker._next_start += samples  # Rechunker.took_whole

    def audio(self, block: RawBlock | PcmBlock) -> list[tuple[int, bytes]]:
        """Take one block; return the frames it completed."""
        out_rate, rate = self.config.out_rate, block.rate
        frames: list[tuple[int, bytes]] = []
        if rate != self._rate:
            if self._rate is not None:
                log.info("resampler.rate_changed", old=self._rate, new=rate)
            frames = self._end_run()
            self._rate = rate
        self.stats.blocks += 1
        self.stats.took(len(block.samples), rate)
        if isinstance(block, PcmBlock):
            if rate == out_rate:  # every frame of a 16 kHz source: a prebuilt dtype, one copy
                pcm16 = block.samples.astype(_INT16, copy=False).tobytes()
                pushed = self.chunker.push(pcm16)
                return frames + pushed if frames else pushed
            floats = block.samples.astype(np.float32)
            floats *= np.float32(1.0 / 32768.0)  # exact: int16 -> [-1, 1)
        else:
            floats = block.samples
            if not np.isfinite(floats).all():  # pushed or device floats: never NaN downstream
                floats = np.nan_to_num(floats, nan=0.0, posinf=1.0, neginf=-1.0)
        if self._resampler is None:
            self._resampler = StreamResampler(rate, out_rate)
        pcm = self._to_pcm16(self._resampler.process(floats))
        return frames + self.chunker.push(pcm) if pcm else frames

    def skip(self, item: Skip) -> tuple[list[tuple[int, bytes]], tuple[int, int] | None]:
        """End the run, move the timeline to the source time so far.

        Returns:
            The frames the run's end completed, and the skipped span ``(start,
            end)`` in output samples, or None when it rounds to nothing.
        """
        frames = self._end_run()
        frames += self.chunker.flush()
        self._rate = None
        stats = self.stats
        stats.took(item.samples, item.rate)
        start = self.chunker.position
        end = max(start, round(stats.input_s * self.config.out_rate))
        self.chunker.skip(end - start)
        stats.position = end
        if end == start:
            return frames, None
        stats.skips += 1
        if item.lost:
            stats.lost_samples += end - start
        else:
            stats.skipped_samples += end - start
        return frames, (start, end)

    def finish(self) -> list[tuple[int, bytes]]:
        """End of input: the resampler's tail and the last, short frame."""
        frames = self._end_run()
        self._rate = None
        return frames + self.chunker.flush()

    def _end_run(self) -> list[tuple[int, bytes]]:
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return []
        return self.chunker.push(self._to_pcm16(resampler.flush()))

    def _to_pcm16(self, x: NDArray[np.float32]) -> bytes:
        """Finite float32 → int16 LE bytes, like ``float_to_pcm16`` (× 32768, rint, clip)."""
        n = len(x)
        if n > len(self._scratch):
            self._scratch = np.empty(max(n, 2 * self.config.frame_samples), dtype=np.float32)
        s = self._scratch[:n]
        np.multiply(x, _SCALE, out=s)
        np.rint(s, out=s)
        np.clip(s, -32768.0, 32767.0, out=s)
        return s.astype(_INT16).tobytes()
