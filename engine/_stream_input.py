"""The input side of a stream: producers, their lanes, and the ledger of what they lost.

:func:`engine.stream.open_stream` starts a :class:`Producer` with a :class:`Feed`
(its clones of the stream's input lanes). A producer's own events go straight
into the stream's events edge through :class:`InputEvents`, which counts them in
an :class:`InputLedger` as they are put (no relay task); the resampler stage
counts the gaps it reports itself (``ResamplerStats``). When every lane has
closed, :func:`complete_end` completes the session's ``StreamEnded`` with both,
once. Pushed PCM becomes the mono blocks of the audio lane through the one
downmix, :mod:`adapters.audio.pcm`.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol, final

import msgspec
import numpy as np

from adapters.audio.pcm import to_mono_float32
from engine.errors import InputError
from engine.events import AudioGap, Event, StreamEnded, StreamError, samples_to_ms
from engine.messages import PcmBlock, RawBlock

if TYPE_CHECKING:
    from types import TracebackType

    import trio
    from numpy.typing import NDArray

    from engine.actors.resampler import ResamplerStats
    from engine.messages import AudioOutbox, Skip


__all__ = [
    "INTERRUPTED",
    "MAX_RATE",
    "MIN_RATE",
    "Feed",
    "InputEvents",
    "InputLedger",
    "Producer",
    "check_rate",
    "complete_end",
    "input_lost_ms",
    "pushed_block",
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
            on the stream's timeline by the producer; they go into the stream's
            events edge, counted as they are put.
    """

    audio: AudioOutbox[PcmBlock | RawBlock | Skip]
    events: InputEvents


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


@final
class InputEvents:
    """A producer's lane into the stream's events edge that counts what it puts.

    The producer API of ``trio.MemorySendChannel`` (``send``, ``send_nowait``,
    ``clone``, ``close``, ``aclose``, ``async with``; an
    :class:`~engine.messages.AudioOutbox` of events) over a clone of the
    ``session->renderer`` edge: an event is observed by the ledger once the edge
    took it, in the sender's task, so no relay task stands between a producer
    and ``events()``. Blocks while the edge is full, like the session's events.
    """

    __slots__ = ("_ledger", "_send")

    def __init__(self, send: trio.MemorySendChannel[Event], ledger: InputLedger) -> None:
        self._send = send
        self._ledger = ledger

    async def send(self, event: Event, /) -> None:
        """Put ``event`` on the edge (a checkpoint; cancelled: not put, not counted)."""
        await self._send.send(event)
        self._ledger.observe(event)

    def send_nowait(self, event: Event) -> None:
        """Put ``event`` now, or raise ``trio.WouldBlock`` (not a checkpoint)."""
        self._send.send_nowait(event)
        self._ledger.observe(event)

    def clone(self) -> InputEvents:
        """Another handle on the same lane (the edge ends once every handle is closed)."""
        return InputEvents(self._send.clone(), self._ledger)

    def close(self) -> None:
        """Close this handle (not a checkpoint)."""
        self._send.close()

    async def aclose(self) -> None:
        """Close this handle; a checkpoint."""
        await self._send.aclose()

    async def __aenter__(self) -> InputEvents:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def complete_end(
    ended: StreamEnded, ledger: InputLedger, resampling: ResamplerStats, rate: int
) -> StreamEnded:
    """The stream's :class:`StreamEnded`: the session's account plus the input side's.

    An ``ok`` session becomes ``partial`` when the input lost audio (a producer's
    gaps in the ledger, the resampler's lost skips in its stats) or its source
    failed mid-way, and any but a failed one ``interrupted`` when the source was
    stopped before its end; the timeline's length and skipped time come from the
    resampler.
    """
    lost_ms = input_lost_ms(ledger, resampling, rate)
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


def input_lost_ms(ledger: InputLedger, resampling: ResamplerStats, rate: int) -> int:
    """Audio the input side lost: the producers' gaps and the resampler's lost skips."""
    return ledger.lost_ms + samples_to_ms(resampling.lost_samples, rate)


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
