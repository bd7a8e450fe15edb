"""The engine's events: frozen, tagged msgspec Structs.

Every event carries the envelope fields ``stream`` (the stream id) and ``t`` (the
trio clock when it was made; 0.0 where no clock applies). They are keyword-only
on the base, so ``match`` patterns bind only the payload::

    match event:
        case Final(sentence_id, start, end, text):
            ...

Times on the stream's **global timeline** are in samples at the session rate
(``rate``, 16 000 or 8 000) since the stream began; ``start``/``end`` of a
sentence, a word or a gap are global, so transcripts stay continuous across
reconnects and rotations.

Schema evolution: new fields get defaults; never change an existing annotation.
A JSONL file written by the engine decodes back to equal events with
:func:`decode_jsonl_line`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "AudioEvent",
    "AudioFrame",
    "AudioGap",
    "AudioSkipped",
    "DeviceLost",
    "DeviceRestored",
    "Event",
    "EventUnion",
    "Final",
    "LifecycleEvent",
    "Partial",
    "RecognitionEvent",
    "Reconnecting",
    "Rotated",
    "SessionClosed",
    "SessionOpened",
    "SpeechStarted",
    "SpeechStopped",
    "StreamEnded",
    "StreamError",
    "StreamStarted",
    "TaskMetrics",
    "TranslatedAudio",
    "Translation",
    "Word",
    "decode_jsonl_line",
    "encode_jsonl_line",
    "samples_to_ms",
]


def samples_to_ms(samples: int, rate: int) -> int:
    """Convert a sample count at ``rate`` to whole milliseconds (rounded down)."""
    return samples * 1000 // rate


class Event(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of every engine event. Tag field ``type`` = class name."""

    stream: str = ""
    t: float = 0.0


class Word(msgspec.Struct, frozen=True, array_like=True):
    """One recognized word; ``start``/``end`` are global samples."""

    start: int
    end: int
    text: str
    punctuation: str = ""


# ----------------------------------------------------------------- audio


class AudioEvent(Event, frozen=True):
    """Audio data moving through the pipeline (never written to JSONL)."""


class AudioFrame(AudioEvent, frozen=True):
    """Mono int16 little-endian PCM at ``rate``, starting at global sample ``start``."""

    start: int
    pcm: bytes
    rate: int

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    @property
    def end(self) -> int:
        return self.start + len(self.pcm) // 2


class TranslatedAudio(AudioEvent, frozen=True):
    """Translated voice (24 kHz int16 mono) for one response."""

    response_id: str
    pcm: bytes
    rate: int = 24000


# ----------------------------------------------------------- recognition


class RecognitionEvent(Event, frozen=True):
    """Results from the speech service, on the global timeline."""


class Partial(RecognitionEvent, frozen=True):
    """The current, not yet final, text of a sentence (replaces earlier partials).

    ``stash`` is the tentative look-ahead to show after ``text``; ``pre_end`` is
    gummy's VAD pre-end hint: the sentence is expected to end soon (a later
    partial without it retracts it; only a Final settles the sentence).
    """

    sentence_id: int
    start: int
    text: str
    words: tuple[Word, ...] = ()
    rate: int = 16000
    stash: str = ""
    pre_end: bool = False


class Final(RecognitionEvent, frozen=True):
    """A finished sentence. Its ``end`` becomes the stream's commit point."""

    sentence_id: int
    start: int
    end: int
    text: str
    words: tuple[Word, ...] = ()
    rate: int = 16000
    task_id: str = ""

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("a final sentence cannot end before it starts")


class Translation(RecognitionEvent, frozen=True):
    """Translated text of a sentence in one target language."""

    lang: str
    sentence_id: int
    start: int
    end: int | None
    text: str
    final: bool
    rate: int = 16000
    stash: str = ""


class SpeechStarted(RecognitionEvent, frozen=True):
    at: int
    rate: int = 16000


class SpeechStopped(RecognitionEvent, frozen=True):
    at: int
    rate: int = 16000


# ------------------------------------------------------------- lifecycle


class LifecycleEvent(Event, frozen=True):
    """Stream and session lifecycle; never dropped."""


class StreamStarted(LifecycleEvent, frozen=True):
    """The stream began. ``started_at`` is the wall-clock time (ISO-8601, UTC) of global
    sample 0, so a global time maps to wall time: ``started_at + sample / rate``
    (empty in files written before it existed)."""

    source: str
    model: str
    rate: int
    endpoint: str = ""
    started_at: str = ""


class SessionOpened(LifecycleEvent, frozen=True):
    """A server task began; server times map to global time by adding ``offset``."""

    task_id: str
    offset: int
    attempt: int = 0


class SessionClosed(LifecycleEvent, frozen=True):
    task_id: str
    reason: str


class Reconnecting(LifecycleEvent, frozen=True):
    attempt: int
    delay: float
    cause: str


class Rotated(LifecycleEvent, frozen=True):
    old_task_id: str
    new_task_id: str
    at: int


GapReason = Literal[
    "replay-overflow",
    "finish-deadline",
    "permanent-error",
    "capture-overflow",
    "device",
    "connection-lost",
    "source",
]


class AudioGap(LifecycleEvent, frozen=True):
    """Audio ``[start, end)`` (global samples) that was not and will not be recognized."""

    start: int
    end: int
    reason: str
    rate: int = 16000

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("an audio gap cannot end before it starts")


class AudioSkipped(LifecycleEvent, frozen=True):
    """Time ``[start, end)`` (global samples) that the source left out on purpose (a
    suspended silence, a paused host): not sent, not recognized, and not a loss."""

    start: int
    end: int
    reason: str
    rate: int = 16000

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("a skipped span cannot end before it starts")


class StreamError(LifecycleEvent, frozen=True):
    """A failure of the stream, in one line naming the cause and the fix."""

    kind: str
    message: str
    permanent: bool = True


class TaskMetrics(LifecycleEvent, frozen=True):
    """Per-task delays as the dashscope SDK defines them (ms; None when not measured).

    first_package_delay: first result with non-empty text minus the first audio send.
    last_package_delay: ``task-finished`` minus the ``finish-task`` send.
    frames_coalesced: live frames the session sent joined with others, up to 200 ms
    a message, because it was behind (0 while it keeps up).
    """

    task_id: str
    request_id: str
    first_package_delay_ms: float | None
    last_package_delay_ms: float | None
    audio_ms: int
    finals: int
    frames_coalesced: int = 0


class StreamEnded(LifecycleEvent, frozen=True):
    """The stream is over. ``status`` is ``ok``, ``partial`` (audio lost, exactly),
    ``failed`` or ``interrupted`` (see the README's outcome table).

    ``audio_ms`` is the global timeline's length; ``audio_skipped_ms`` the part of it
    the source skipped on purpose (``AudioSkipped``).
    """

    status: str
    finals: int = 0
    reconnects: int = 0
    audio_lost_ms: int = 0
    audio_ms: int = 0
    audio_skipped_ms: int = 0


class DeviceLost(LifecycleEvent, frozen=True):
    """The capture device stopped delivering at global sample ``at``; capture retries.

    ``cause`` is how the loss showed: ``finished`` (PortAudio ended the stream),
    ``inactive`` (the stream went inactive without a stop), ``stalled`` (no audio for
    too long) or ``error: …``. The outage becomes an ``AudioGap(reason="device")``.
    """

    device: str
    at: int
    cause: str
    rate: int = 16000


class DeviceRestored(LifecycleEvent, frozen=True):
    """Capture resumed on ``device`` after ``outage_s`` (trio clock); audio resumes at
    global sample ``at`` (the outage is silence on the timeline, reported as a gap)."""

    device: str
    at: int
    outage_s: float
    attempts: int = 1
    rate: int = 16000


RecognitionUnion = Partial | Final | Translation | SpeechStarted | SpeechStopped
LifecycleUnion = (
    StreamStarted
    | SessionOpened
    | SessionClosed
    | Reconnecting
    | Rotated
    | AudioGap
    | AudioSkipped
    | StreamError
    | TaskMetrics
    | StreamEnded
    | DeviceLost
    | DeviceRestored
)
AudioUnion = AudioFrame | TranslatedAudio
EventUnion = RecognitionUnion | LifecycleUnion | AudioUnion

_ENCODER = msgspec.json.Encoder()
_DECODER: msgspec.json.Decoder[EventUnion] = msgspec.json.Decoder(EventUnion)


def encode_jsonl_line(event: Event) -> bytes:
    """One JSON line (with trailing newline) for ``event``."""
    return _ENCODER.encode(event) + b"\n"


def decode_jsonl_line(line: bytes | str) -> EventUnion:
    """Decode one line written by :func:`encode_jsonl_line` back into its event."""
    return _DECODER.decode(line)
