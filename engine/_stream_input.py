"""The input side of a stream: producers, their lanes, and the ledger of what they lost.

:func:`engine.stream.open_stream` starts a :class:`Producer` with a :class:`Feed`
(its clones of the stream's input lanes). The input side's events pass an
:class:`InputLedger` on their way to ``Stream.events()`` (:func:`relay`); when
every lane has closed, :func:`complete_end` completes the session's
``StreamEnded`` with it, once. Pushed PCM becomes the mono blocks of the audio
lane through the one downmix, :mod:`adapters.audio.pcm`.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

import msgspec
import numpy as np

from adapters.audio.pcm import to_mono_float32
from engine.errors import InputError
from engine.events import AudioGap, Event, StreamEnded, StreamError, samples_to_ms
from engine.messages import PcmBlock, RawBlock

if TYPE_CHECKING:
    import trio
    from numpy.typing import NDArray

    from engine.actors.resampler import ResamplerStats
    from engine.messages import AudioOutbox, Skip


__all__ = [
    "INTERRUPTED",
    "MAX_RATE",
    "MIN_RATE",
    "Feed",
    "InputLedger",
    "Producer",
    "check_rate",
    "complete_end",
    "pushed_block",
    "relay",
]

MIN_RATE, MAX_RATE = 8000, 48000

#: ``StreamError.kind`` of a source stopped before its end, and the stream's status then.
INTERRUPTED: Final = "interrupted"


def check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(
            f"pushed audio at {rate} Hz; Stenograph needs 8000–48000 Hz; fix: resample it first"
        )


class Feed(NamedTuple):
    """What a producer gets: its own clones of the stream's input lanes.

    The producer owns both and closes both when its source ends (``async with
    feed.audio, feed.events:``); the stream's input ends once every producer and
    :meth:`Stream.end_input` have closed theirs.

    Attributes:
        audio: the producer's inlet of the resampler stage: mono blocks at the
            source's rate (``PcmBlock`` int16, ``RawBlock`` float32) and spans of
            source time without audio (``Skip``). Its ``send`` runs the resampler
            in the producer's task and awaits the session's inbox.
        events: the source's own events (``AudioGap`` of a capture hole,
            ``DeviceLost``, ``StreamError`` of a source that broke mid-way), placed
            on the stream's timeline by the producer.
    """

    audio: AudioOutbox[PcmBlock | RawBlock | Skip]
    events: trio.MemorySendChannel[Event]


class Producer(Protocol):
    """A source started by :func:`open_stream` before the session (``nursery.start``).

    It calls ``task_status.started(source)`` once its source is open, with what
    ``StreamStarted.source`` should say (``None`` keeps ``StreamConfig.source``),
    then pushes into its :class:`Feed` until the source ends. An exception before
    ``started`` leaves :func:`open_stream` with nothing connected.
    """

    async def __call__(
        self, feed: Feed, *, task_status: trio.TaskStatus[str | None] = ...
    ) -> None: ...


class InputLedger:
    """The input side's facts, counted as they pass to ``events()`` (not a checkpoint).

    Counts what the session cannot know: audio lost before it (``AudioGap`` from
    the resampler or a capture device), failures of the source (``StreamError``),
    and a source stopped before its end (``StreamError(kind="interrupted")``).
    """

    def __init__(self) -> None:
        self.lost: Counter[int] = Counter()  # lost samples by rate
        self.errors = 0
        self.interrupted = False

    def observe(self, event: Event) -> None:
        if isinstance(event, AudioGap):
            self.lost[event.rate] += event.end - event.start
        elif isinstance(event, StreamError):
            if event.kind == INTERRUPTED:
                self.interrupted = True
            else:
                self.errors += 1

    @property
    def lost_ms(self) -> int:
        return sum(samples_to_ms(samples, rate) for rate, samples in self.lost.items())


def complete_end(
    ended: StreamEnded, ledger: InputLedger, resampling: ResamplerStats, rate: int
) -> StreamEnded:
    """The stream's :class:`StreamEnded`: the session's account plus the input side's.

    An ``ok`` session becomes ``partial`` when the input lost audio or its source
    failed mid-way, and any but a failed one ``interrupted`` when the source was
    stopped before its end; the timeline's length and skipped time come from the
    resampler.
    """
    lost_ms = ledger.lost_ms
    status = ended.status
    if status == "ok" and (lost_ms or ledger.errors):
        status = "partial"
    if ledger.interrupted and status != "failed":
        status = INTERRUPTED
    return msgspec.structs.replace(
        ended,
        status=status,
        audio_lost_ms=ended.audio_lost_ms + lost_ms,
        audio_ms=max(ended.audio_ms, samples_to_ms(resampling.position, rate)),
        audio_skipped_ms=samples_to_ms(resampling.skipped_samples, rate),
    )


async def relay(
    inbox: trio.MemoryReceiveChannel[Event],
    outbox: trio.MemorySendChannel[Event],
    ledger: InputLedger,
) -> None:
    """Count the input side's events and pass them on (Channels: closes both)."""
    async with inbox, outbox:
        async for event in inbox:
            ledger.observe(event)
            await outbox.send(event)


def pushed_block(pcm: bytes | NDArray[np.generic], rate: int, channels: int) -> PcmBlock | RawBlock:
    """Pushed PCM as a block: mono int16 stays int16 (a view when it can), the rest is mixed."""
    if channels == 1:
        if isinstance(pcm, bytes | bytearray | memoryview):
            if len(pcm) % 2:
                raise InputError(f"{len(pcm)} bytes is not whole int16 frames of 1 channel(s)")
            # bytes() copies a bytearray or memoryview the caller may reuse (bytes stay as is).
            return PcmBlock(np.frombuffer(bytes(pcm), dtype="<i2"), rate)
        if isinstance(pcm, np.ndarray) and pcm.dtype == np.int16 and pcm.ndim == 1:
            return PcmBlock(pcm.astype("<i2", copy=True), rate)
    return RawBlock(to_mono_float32(pcm, channels), rate)
