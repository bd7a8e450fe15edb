"""The resampler stage: producers' blocks in, fixed-size int16 :class:`AudioFrame` s out.

It brings each :class:`~engine.messages.PcmBlock` (int16) or
:class:`~engine.messages.RawBlock` (float32) to ``out_rate`` and re-chunks it into
frames of exactly ``frame_ms`` (the last may be shorter). ``start`` counts output
samples from 0, so frames tile the stream's global timeline with no gaps or
overlaps. int16 at ``out_rate`` is sliced into frames as bytes; anything else goes
through a :class:`~adapters.audio.resample.StreamResampler` (float32, soxr HQ) and
back to int16. The logic is the pure :class:`ResamplerCore` (re-chunking: the pure
:class:`Rechunker`), in :mod:`engine.actors._reframe`.

The stage runs in the producer's task: :class:`Resampler` hands producers
:class:`ResamplerInlet` s with a memory channel's producer API, whose ``send``
converts synchronously and awaits only the session's inbox. So a paced frame costs
one task wake (the producer's) on its way to the session; there is no resampler
task or channel hop per frame. ``try_send`` is the same without the wake, for a
producer the pacer drives (:meth:`engine.pacer.Pacer.drive`): all or nothing, it
takes a block only when every frame the block makes can be taken now. :func:`run`
wraps the stage as a classic actor over a channel, for producers that want a queue.

A :class:`~engine.messages.Skip` (source time with no audio) ends the run
before it (the resampler's tail and a short frame are sent), then moves the
timeline on to the source time elapsed so far, ``round(seconds * out_rate)``, so
the next frame starts after a hole and the timeline stays on wall time (each
skip also absorbs the rounding of the runs before it). The skipped span is
reported on ``events`` as an ``AudioGap`` (lost) or an ``AudioSkipped``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Final, final

import numpy as np
import structlog
import trio

from engine.actors._inlet import Inlet
from engine.actors._reframe import Rechunker as Rechunker
from engine.actors._reframe import ResamplerConfig as ResamplerConfig
from engine.actors._reframe import ResamplerCore as ResamplerCore
from engine.actors._reframe import ResamplerStats as ResamplerStats
from engine.actors._resampler_inlet import InletStatistics as InletStatistics
from engine.actors._resampler_inlet import ResamplerInlet as ResamplerInlet
from engine.events import AudioFrame, AudioGap, AudioSkipped, Event
from engine.logging import BoundContext
from engine.messages import PcmBlock, Skip

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.messages import AudioOutbox, RawBlock

__all__ = [
    "InletStatistics",
    "Rechunker",
    "Resampler",
    "ResamplerConfig",
    "ResamplerCore",
    "ResamplerInlet",
    "ResamplerStats",
    "max_frames",
    "run",
]

log = structlog.get_logger()

_INT16: Final = np.dtype("<i2")

#: Output a resampled block may bring beyond its own length (soxr's buffered input,
#: a rate change's flushed tail), for ``try_send``'s all-or-nothing room check.
_RESAMPLER_SLACK_S: Final = 0.2


@final
class Resampler:
    """The resampler stage: runs :class:`ResamplerCore` in the task of whoever sends.

    Producers get :class:`ResamplerInlet` s (:meth:`inlet`, or ``inlet.clone()``),
    which look like the producer side of a memory channel. ``await inlet.send(item)``
    converts the item synchronously and sends the frames it completed to ``outbox``
    (and a skipped span to ``events``) in the sender's own task: no resampler task,
    no channel hop. :meth:`run` is the stage's lifetime: it waits until every inlet
    is closed, then flushes and closes ``outbox`` and ``events``.

    Concurrent senders are served one at a time, in arrival order (a fair lock), so
    frames never interleave. ``outbox`` is the session's inbox: a memory channel or
    anything with its producer API (:class:`~engine.messages.AudioOutbox`) whose
    ``send`` raises only when it did not take the frame. The synchronous
    ``try_send`` needs an :class:`~engine.actors._inlet.Inlet` or a memory channel
    (anything else refuses every block).

    Attributes:
        deferred_frames: frames a ``try_send`` made but could not hand over at once
            (policy: kept, in order, and delivered first by the next send or at the
            end). ``try_send`` sizes a block's frames with a bound that should keep
            this 0: it counts the bound's misses.
    """

    def __init__(
        self,
        *,
        outbox: AudioOutbox[AudioFrame],
        config: ResamplerConfig,
        events: trio.MemorySendChannel[Event] | None = None,
    ) -> None:
        self.config: Final = config
        self.core = ResamplerCore(config)
        self.stats: Final = self.core.stats
        self._outbox = outbox
        self._events = events
        self._lock = trio.Lock()
        # Taken, not yet delivered (a send was cancelled): a list, as an empty deque is 760 B.
        self._pending: list[Event] = []
        self._open = 0
        self._opened = False
        self._all_closed = trio.Event()
        self._finished = False
        self.deferred_frames = 0
        self._run_rate: int | None = None  # the input rate of the core's current run
        self._room: Callable[[], int] | None = None
        self._put: Callable[[AudioFrame], None] | None = None
        # The one-frame path (try_send_pcm16): the inlet's hand-over, and the frame size.
        self._hand: Callable[[AudioFrame, float], bool] | None = None
        self._frame_bytes = 2 * config.frame_samples
        if isinstance(outbox, Inlet):
            self._room, self._put, self._hand = outbox.room, outbox.send_nowait, outbox.hand
        elif isinstance(outbox, trio.MemorySendChannel):
            self._room, self._put = functools.partial(_channel_room, outbox), outbox.send_nowait

    def inlet(self) -> ResamplerInlet:
        """A new producer handle (close it when done; the stage ends when all are)."""
        if self._finished or (self._opened and self._open == 0):
            raise trio.ClosedResourceError("the resampler's input has ended")
        self._opened = True
        self._open += 1
        return ResamplerInlet(self)

    def waiting(self) -> int:
        """Senders queued behind the one being served."""
        return self._lock.statistics().tasks_waiting

    async def run(
        self, *, task_status: trio.TaskStatus[ResamplerStats] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Live until every inlet is closed; then flush and close the outputs.

        Channels:
            Owns and closes ``outbox`` and ``events``.

        Cancellation:
            Held frames and the resampler's tail are dropped; the outputs are closed.

        Error handling:
            A closed receiver's ``trio.BrokenResourceError`` propagates.
        """
        with BoundContext(actor="resampler", stream=self.config.stream):
            async with self._outbox, self._events or contextlib.nullcontext():
                task_status.started(self.stats)
                try:
                    await self._all_closed.wait()
                    async with self._lock:
                        self._take_frames(self.core.finish())
                        await self._deliver()
                finally:
                    self._finished = True
                log.debug(
                    "resampler.finished",
                    input_s=round(float(self.stats.input_s), 3),
                    samples_out=self.core.chunker.position,
                    skips=self.stats.skips,
                )

    async def _send(self, item: RawBlock | PcmBlock | Skip) -> None:
        if self._finished:
            raise trio.BrokenResourceError("the resampler has finished")
        lock = self._lock
        if lock.locked():
            await lock.acquire()  # cancellable: then the item is not taken
        else:
            lock.acquire_nowait()
        try:
            if self._finished:
                raise trio.BrokenResourceError("the resampler has finished")
            if isinstance(item, Skip):
                frames, span = self.core.skip(item)
                self._run_rate = None
                self._take_frames(frames)
                if span is not None:
                    self._take_skip(item, *span)
            else:
                self._take_frames(self.core.audio(item))
                self._run_rate = item.rate
            if self._pending:
                await self._deliver()
            else:
                await trio.lowlevel.checkpoint()  # every send checkpoints once
        finally:
            lock.release()

    def _try_send(self, block: RawBlock | PcmBlock) -> bool:
        """Take ``block`` if every frame it makes can be handed over now (all or nothing)."""
        if (
            type(block) is PcmBlock
            and block.rate == self.config.out_rate
            and 2 * len(block.samples) == self._frame_bytes
        ):  # a paced file's 100 ms block: its bytes take the one-frame path
            return self._try_send_pcm16(block.samples.astype(_INT16, copy=False).tobytes(), block)
        return self._try_send_block(block)

    def _try_send_block(self, block: RawBlock | PcmBlock) -> bool:
        if self._finished:
            raise trio.BrokenResourceError("the resampler has finished")
        room = self._room
        if room is None or self._pending or self._lock.locked():
            return False  # another producer is in the stage (or has frames to deliver first)
        if room() < max_frames(self.config, self._run_rate, block):
            return False
        self._take_frames(self.core.audio(block))
        self._run_rate = block.rate
        self._deliver_nowait()
        return True

    def _try_send_pcm16(self, pcm: bytes, block: PcmBlock | None = None) -> bool:
        """``_try_send`` of int16 bytes at the output rate, for a pacer's step (#11).

        A block of exactly one frame continuing a run at the output rate (nothing
        held) becomes its frame as it is: no array, no copy, no list, one clock read,
        one hand-over. Anything else takes the general path (with ``block``, the
        same audio as a block, when the caller has it).
        """
        if self._finished:
            raise trio.BrokenResourceError("the resampler has finished")
        hand, core, config = self._hand, self.core, self.config
        if hand is None or (start := core.whole_frame_at(len(pcm))) < 0:
            if block is None:
                block = PcmBlock(np.frombuffer(pcm, _INT16), config.out_rate)
            return self._try_send_block(block)
        if self._pending or self._lock.locked():
            return False  # another producer is in the stage (or has frames to deliver first)
        now = trio.current_time()
        rate = config.out_rate
        frame = AudioFrame(start=start, pcm=pcm, rate=rate, stream=config.stream, t=now)
        try:
            if not hand(frame, now):
                return False
        except trio.ClosedResourceError:  # the stage was stopped under a sender
            raise trio.BrokenResourceError("the resampler has stopped") from None
        core.took_frame(pcm)
        self._run_rate = rate
        self.stats.position = start + (len(pcm) >> 1)
        return True

    def _deliver_nowait(self) -> None:
        """Hand the pending frames over without waiting; what is refused stays pending."""
        pending, put, stats = self._pending, self._put, self.stats
        assert put is not None
        sent = 0
        try:
            for item in pending:
                assert isinstance(item, AudioFrame)  # try_send makes frames only
                put(item)
                stats.position = item.end
                sent += 1
        except trio.WouldBlock:  # the bound missed: deliver them first, next time
            self.deferred_frames += len(pending) - sent
        except trio.ClosedResourceError:  # the stage was stopped under a sender
            raise trio.BrokenResourceError("the resampler has stopped") from None
        finally:
            del pending[:sent]

    def _take_frames(self, frames: list[tuple[int, bytes]]) -> None:
        config, now = self.config, trio.current_time()
        for start, pcm in frames:
            self._pending.append(
                AudioFrame(start=start, pcm=pcm, rate=config.out_rate, stream=config.stream, t=now)
            )

    def _take_skip(self, item: Skip, start: int, end: int) -> None:
        log.info("resampler.skip", start=start, end=end, reason=item.reason, lost=item.lost)
        if self._events is not None:
            kind = AudioGap if item.lost else AudioSkipped
            config = self.config
            self._pending.append(
                kind(
                    start,
                    end,
                    item.reason,
                    rate=config.out_rate,
                    stream=config.stream,
                    t=trio.current_time(),
                )
            )

    async def _deliver(self) -> None:
        """Send what is pending, in order; a cancelled send leaves the rest pending."""
        pending = self._pending  # not appended to meanwhile: the caller holds the lock
        sent = 0
        try:
            for item in pending:
                if isinstance(item, AudioFrame):
                    await self._outbox.send(item)  # atomic: raises only if not taken
                    self.stats.position = item.end
                else:
                    assert self._events is not None
                    await self._events.send(item)
                sent += 1
        except trio.ClosedResourceError:  # the stage was stopped under a sender
            raise trio.BrokenResourceError("the resampler has stopped") from None
        finally:
            del pending[:sent]

    def _closed_one(self) -> None:
        self._open -= 1
        if self._open == 0:
            self._all_closed.set()


def max_frames(config: ResamplerConfig, run_rate: int | None, block: RawBlock | PcmBlock) -> int:
    """The frames ``block`` may complete in a run at ``run_rate`` (what ``try_send`` needs
    room for).

    Audio at the output rate, in a run at that rate or a new run, is sliced as it is:
    at most its length plus what the rechunker holds (less than a frame). Otherwise
    soxr may also release what it buffered, or a rate change flush the old run's
    filter: measured below 0.15 s of output, :data:`_RESAMPLER_SLACK_S` is allowed
    (a miss is counted in ``deferred_frames``, never lost).
    """
    frame, out_rate, n = config.frame_samples, config.out_rate, len(block.samples)
    if block.rate == out_rate and run_rate in (None, out_rate):
        return (frame - 1 + n) // frame
    out = -(-n * out_rate // block.rate) + int(out_rate * _RESAMPLER_SLACK_S)
    return (frame - 1 + out) // frame


def _channel_room(channel: trio.MemorySendChannel[AudioFrame]) -> int:
    """Frames a memory channel takes now without waiting (0 while a sender waits)."""
    stats = channel.statistics()
    if stats.tasks_waiting_send:
        return 0
    free = stats.max_buffer_size - stats.current_buffer_used + stats.tasks_waiting_receive
    return int(min(free, 1 << 30))


async def run(
    *,
    inbox: trio.MemoryReceiveChannel[RawBlock | PcmBlock | Skip],
    outbox: trio.MemorySendChannel[AudioFrame],
    config: ResamplerConfig,
    events: trio.MemorySendChannel[Event] | None = None,
    task_status: trio.TaskStatus[ResamplerStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The stage as an actor over a channel: resample everything from ``inbox``.

    Streams use :class:`Resampler` directly (no task per frame); this actor form is
    for a producer that must stay decoupled by a queue. A :class:`Skip` leaves a hole
    in the timeline (see the module docstring) and is reported on ``events``; a new
    input rate flushes the old run and continues the timeline without a gap.

    Channels:
        Owns and closes ``inbox``, ``outbox`` and ``events``. When ``inbox`` ends,
        it flushes the resampler, sends the last (short) frame and closes ``outbox``.

    Cancellation:
        Stops at the next send or receive; samples held in the resampler and the
        partial frame are dropped (the outbox is still closed).
    """
    stage = Resampler(outbox=outbox, config=config, events=events)
    async with inbox, trio.open_nursery() as nursery:
        task_status.started(await nursery.start(stage.run))
        async with stage.inlet() as inlet:
            async for item in inbox:
                await inlet.send(item)
