"""Commands and events of the realtime cores, client and server roles.

The client core turns the §5.3 server frames into the normalized events below
(source ASR, translation, audio, response bookkeeping), the server core turns
the §5.2 client frames into requests. Wire shapes live in ``realtime_wire``;
session settings in ``realtime_session``.
"""

from __future__ import annotations

from typing import Final

import msgspec

from ._realtime_server_messages import (
    AckClear,
    AckCommit,
    AddContentPart,
    AddOutputItem,
    AudioAppended,
    BadRequest,
    ClearRequested,
    ClientRequest,
    CommitRequested,
    ConfirmSession,
    ConnectionClosed,
    CreateItem,
    CreateResponse,
    CreateSession,
    FailSession,
    FinishAudio,
    FinishContentPart,
    FinishOutputItem,
    FinishRequested,
    FinishResponse,
    FinishSessionReply,
    ImageAppended,
    ResponseCommand,
    SendAudioDelta,
    SendError,
    SendSourceFailed,
    SendSourceFinal,
    SendSourcePartial,
    SendTranslationFinal,
    SendTranslationPartial,
    ServerCommand,
    ServerEvent,
    SessionUpdateRejected,
    SessionUpdateRequested,
    StartSpeech,
    StopSpeech,
    StreamCommand,
)
from .realtime_session import SessionSettings
from .realtime_wire import WireSession, WireUsage

__all__ = [
    "MAX_AUDIO_APPEND",
    "MAX_IMAGE_BYTES",
    "AckClear",
    "AckCommit",
    "AddContentPart",
    "AddOutputItem",
    "AppendAudio",
    "AppendImage",
    "AudioAppended",
    "AudioCleared",
    "AudioCommitted",
    "AudioDelta",
    "AudioDone",
    "BadRequest",
    "Clear",
    "ClearRequested",
    "ClientCommand",
    "ClientEvent",
    "ClientRequest",
    "Commit",
    "CommitRequested",
    "ConfirmSession",
    "ConnectionClosed",
    "ContentPartAdded",
    "ContentPartDone",
    "CreateItem",
    "CreateResponse",
    "CreateSession",
    "FailSession",
    "FatalServerError",
    "FinishAudio",
    "FinishContentPart",
    "FinishOutputItem",
    "FinishRequested",
    "FinishResponse",
    "FinishSession",
    "FinishSessionReply",
    "ImageAppended",
    "ItemCreated",
    "OutputItemAdded",
    "OutputItemDone",
    "ProtocolViolation",
    "ResponseCommand",
    "ResponseCreated",
    "ResponseDone",
    "SendAudioDelta",
    "SendError",
    "SendSourceFailed",
    "SendSourceFinal",
    "SendSourcePartial",
    "SendTranslationFinal",
    "SendTranslationPartial",
    "ServerCommand",
    "ServerError",
    "ServerEvent",
    "SessionCreated",
    "SessionFinished",
    "SessionUpdateRejected",
    "SessionUpdateRequested",
    "SessionUpdated",
    "SourceFailed",
    "SourceFinal",
    "SourcePartial",
    "SpeechStarted",
    "SpeechStopped",
    "StartSpeech",
    "StopSpeech",
    "StreamCommand",
    "StreamEvent",
    "TranslationFinal",
    "TranslationPartial",
    "UnknownEvent",
    "UpdateSession",
]

MAX_AUDIO_APPEND: Final = 512 * 1024
"""The most PCM one ``input_audio_buffer.append`` carries (its frame stays under 1 MiB)."""
MAX_IMAGE_BYTES: Final = 500 * 1024
"""The largest JPEG ``input_image_buffer.append`` may carry, before base64 (§5.2)."""

# ------------------------------------------------ client role: commands


class UpdateSession(msgspec.Struct, frozen=True):
    session: SessionSettings


class AppendAudio(msgspec.Struct, frozen=True):
    """Raw PCM (or Opus) bytes; the core base64-encodes them."""

    pcm: bytes

    def __post_init__(self) -> None:
        if len(self.pcm) > MAX_AUDIO_APPEND:
            raise ValueError(f"an append carries at most {MAX_AUDIO_APPEND} bytes of audio")


class AppendImage(msgspec.Struct, frozen=True):
    """One JPEG frame of video context (≤ 500 KB, ≤ 2 per second, after audio started)."""

    jpeg: bytes

    def __post_init__(self) -> None:
        if len(self.jpeg) > MAX_IMAGE_BYTES:
            raise ValueError(f"an image must be at most {MAX_IMAGE_BYTES} bytes before base64")


class Commit(msgspec.Struct, frozen=True):
    """Manual mode: end the turn; the server answers ``input_audio_buffer.committed``."""


class Clear(msgspec.Struct, frozen=True):
    pass


class FinishSession(msgspec.Struct, frozen=True):
    pass


ClientCommand = UpdateSession | AppendAudio | AppendImage | Commit | Clear | FinishSession

# -------------------------------------------------- client role: events


class SessionCreated(msgspec.Struct, frozen=True):
    session: WireSession


class SessionUpdated(msgspec.Struct, frozen=True):
    session: WireSession


class SpeechStarted(msgspec.Struct, frozen=True):
    audio_start_ms: int
    item_id: str | None


class SpeechStopped(msgspec.Struct, frozen=True):
    audio_end_ms: int
    item_id: str | None


class AudioCommitted(msgspec.Struct, frozen=True):
    item_id: str | None
    previous_item_id: str | None


class AudioCleared(msgspec.Struct, frozen=True):
    pass


class ItemCreated(msgspec.Struct, frozen=True):
    """A conversation item; for a translation item ``previous_item_id`` is its ASR item."""

    item_id: str
    previous_item_id: str | None
    role: str | None


class SourcePartial(msgspec.Struct, frozen=True):
    """Source ASR preview: a snapshot, display ``text + stash`` (replace, don't append)."""

    item_id: str
    text: str
    stash: str
    language: str | None
    emotion: str | None = None


class SourceFinal(msgspec.Struct, frozen=True):
    item_id: str
    transcript: str
    language: str | None
    emotion: str | None


class SourceFailed(msgspec.Struct, frozen=True):
    item_id: str
    code: str | None
    message: str


class ResponseCreated(msgspec.Struct, frozen=True):
    response_id: str


class OutputItemAdded(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str


class ContentPartAdded(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str
    part_type: str


class TranslationPartial(msgspec.Struct, frozen=True):
    """Translation preview (``response.audio_transcript.text`` or ``response.text.text``).

    ``source_item_id`` is the ASR item this translates, from
    ``conversation.item.created.previous_item_id`` (None when not announced).
    """

    response_id: str
    item_id: str
    text: str
    stash: str
    source_item_id: str | None


class TranslationFinal(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str
    text: str
    source_item_id: str | None


class AudioDelta(msgspec.Struct, frozen=True):
    """Translated speech: 24 kHz 16-bit mono PCM, already base64-decoded."""

    response_id: str
    item_id: str
    pcm: bytes
    source_item_id: str | None


class AudioDone(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str


class ContentPartDone(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str
    part_type: str
    text: str | None


class OutputItemDone(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str
    status: str | None


class ResponseDone(msgspec.Struct, frozen=True):
    response_id: str
    status: str
    usage: WireUsage | None
    source_item_id: str | None


class ServerError(msgspec.Struct, frozen=True):
    """An ``error`` event of type ``invalid_request_error``: the session goes on (§7.2).

    In CONFIGURING it means the ``session.update`` was rejected and the previous
    configuration is still in force.
    """

    type: str
    code: str | None
    message: str
    param: str | None
    event_id: str | None = None


class FatalServerError(ServerError, frozen=True):
    """An ``error`` event of any other type: the session is over (state FAILED)."""


class SessionFinished(msgspec.Struct, frozen=True):
    pass


class UnknownEvent(msgspec.Struct, frozen=True):
    name: str


class ProtocolViolation(msgspec.Struct, frozen=True):
    """The peer sent something we cannot accept; the core is now in ERROR."""

    reason: str


StreamEvent = (
    SpeechStarted
    | SpeechStopped
    | AudioCommitted
    | AudioCleared
    | ItemCreated
    | SourcePartial
    | SourceFinal
    | SourceFailed
    | ResponseCreated
    | OutputItemAdded
    | ContentPartAdded
    | TranslationPartial
    | TranslationFinal
    | AudioDelta
    | AudioDone
    | ContentPartDone
    | OutputItemDone
    | ResponseDone
)
"""What the server sends about audio it got: ASR, VAD and translation responses."""

ClientEvent = (
    SessionCreated
    | SessionUpdated
    | StreamEvent
    | ServerError
    | FatalServerError
    | SessionFinished
    | UnknownEvent
    | ProtocolViolation
    | ConnectionClosed
)
