"""Messages of the inference protocol: wire shapes, and the cores' commands and events.

Wire shapes follow ../shared/protocol/DASHSCOPE.md §2–4. Venue payloads grow
fields, so wire Structs do not forbid unknown fields; a missing required field
or a mistyped one fails decoding, which the client core reports as a protocol
violation.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.results import HeardWord

# ------------------------------------------------------------------ wire


class WireWord(HeardWord, frozen=True, omit_defaults=True):
    """A word of a sentence: the engine's :class:`~engine.results.HeardWord` as decoded
    (``begin_time``/``end_time`` on the wire are its ``begin_ms``/``end_ms``), plus the
    wire's fields the engine does not use."""

    fixed: bool | None = None
    speaker_id: int | None = None


class WireStash(msgspec.Struct, frozen=True, omit_defaults=True):
    text: str = ""
    sentence_id: int | None = None
    begin_time: int | None = None
    current_time: int | None = None
    words: tuple[WireWord, ...] = ()


class WireSentence(msgspec.Struct, frozen=True):
    """A sentence object: ``output.sentence`` (paraformer, fun-asr) or ``output.transcription`` (gummy).

    ``end_time`` is null for partials and an integer for finals; ``sentence_id``
    is 0 on heartbeat packets. A server that omits ``sentence_id`` gets -1 and
    the session keys such sentences by order.
    """

    begin_time: int
    text: str
    end_time: int | None = None
    sentence_id: int = -1
    sentence_end: bool = False
    heartbeat: bool = False
    words: tuple[WireWord, ...] = ()
    stash: WireStash | None = None
    current_time: int | None = None
    vad_pre_end: bool | None = None
    pre_end_failed: bool | None = None

    @property
    def is_final(self) -> bool:
        # The SDK keys sentence end on end_time alone; we want both.
        return self.sentence_end and self.end_time is not None


class WireTranslation(WireSentence, frozen=True):
    lang: str = ""


class Output(msgspec.Struct, frozen=True):
    sentence: WireSentence | None = None
    transcription: WireSentence | None = None
    translations: list[WireTranslation] | None = None
    finished: bool | None = None


class ServerHeader(msgspec.Struct, frozen=True):
    event: str
    task_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    attributes: dict[str, Any] = {}


class ServerPayload(msgspec.Struct, frozen=True):
    output: Output | None = None
    usage: dict[str, Any] | None = None


class ServerMessage(msgspec.Struct, frozen=True):
    header: ServerHeader
    payload: ServerPayload | None = None


class ClientHeader(msgspec.Struct, frozen=True):
    action: str
    task_id: str
    streaming: str = "duplex"


class ClientMessage(msgspec.Struct, frozen=True):
    header: ClientHeader
    payload: dict[str, Any] = {}


# ------------------------------------------------ client role: commands


class RunTask(msgspec.Struct, frozen=True):
    task_id: str
    model: str
    parameters: dict[str, Any]
    input: dict[str, Any] = {}
    resources: list[dict[str, Any]] | None = None


class SendAudio(msgspec.Struct, frozen=True):
    pcm: bytes


class ContinueTask(msgspec.Struct, frozen=True):
    input: dict[str, Any]


class FinishTask(msgspec.Struct, frozen=True):
    pass


ClientCommand = RunTask | SendAudio | ContinueTask | FinishTask

# -------------------------------------------------- client role: events


class TaskStarted(msgspec.Struct, frozen=True):
    task_id: str


class ResultGenerated(msgspec.Struct, frozen=True):
    task_id: str
    output: Output
    usage: dict[str, Any] | None = None


class Heartbeat(msgspec.Struct, frozen=True):
    """A keep-alive result (``sentence.heartbeat: true``); the SDK drops these."""

    task_id: str


class TaskFinished(msgspec.Struct, frozen=True):
    task_id: str
    usage: dict[str, Any] | None = None


class TaskFailed(msgspec.Struct, frozen=True):
    task_id: str
    code: str
    message: str


class UnknownEvent(msgspec.Struct, frozen=True):
    name: str


class ProtocolViolation(msgspec.Struct, frozen=True):
    """The peer sent something we cannot accept; the core is now in ERROR."""

    reason: str


class ConnectionClosed(msgspec.Struct, frozen=True):
    pass


ClientEvent = (
    TaskStarted
    | ResultGenerated
    | Heartbeat
    | TaskFinished
    | TaskFailed
    | UnknownEvent
    | ProtocolViolation
    | ConnectionClosed
)

# ------------------------------------------------- server role: events


class RunTaskRequested(msgspec.Struct, frozen=True):
    task_id: str
    model: str
    parameters: dict[str, Any]
    input: dict[str, Any]
    task_group: str | None
    task: str | None
    function: str | None
    streaming: str


class AudioReceived(msgspec.Struct, frozen=True):
    pcm: bytes


class ContinueRequested(msgspec.Struct, frozen=True):
    task_id: str
    input: dict[str, Any]


class FinishRequested(msgspec.Struct, frozen=True):
    task_id: str


class BadRequest(msgspec.Struct, frozen=True):
    """The client sent a text frame we could not parse; the server decides what to do."""

    reason: str


ServerEvent = (
    RunTaskRequested
    | AudioReceived
    | ContinueRequested
    | FinishRequested
    | BadRequest
    | ConnectionClosed
)

# ----------------------------------------------- server role: commands


class StartTask(msgspec.Struct, frozen=True):
    pass


class SendResult(msgspec.Struct, frozen=True):
    """``output`` is the model-specific ``payload.output`` object, already shaped."""

    output: dict[str, Any]
    usage: dict[str, Any] | None = None


class FinishTaskReply(msgspec.Struct, frozen=True):
    usage: dict[str, Any] | None = None


class FailTask(msgspec.Struct, frozen=True):
    code: str
    message: str


ServerCommand = StartTask | SendResult | FinishTaskReply | FailTask
