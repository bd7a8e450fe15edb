"""Wire shapes of the DashScope realtime protocol (DASHSCOPE.md §5.2–5.3).

Every frame is a JSON object with a ``type`` tag; each Struct below is one tag,
and the two unions decode a whole frame in one pass. Venue payloads grow
fields, so nothing here forbids unknown fields; a missing required field or a
mistyped one fails decoding. Audio and images are ``bytes``: msgspec encodes
them as standard base64 and refuses invalid base64 when decoding.

Session objects use ``UNSET`` for "absent", because in a ``session.update``
absent and ``null`` differ: absent keeps the current value, ``null`` resets it
(``turn_detection: null`` is manual mode, ``input_audio_transcription.model:
null`` turns ASR off). ``UNSET`` fields are left out when encoding.
"""

from __future__ import annotations

from typing import Any, Final, get_args

import msgspec
from msgspec import UNSET, UnsetType

# ------------------------------------------------------------------ session objects


class WireTranscription(msgspec.Struct, frozen=True):
    """``session.input_audio_transcription``: ``model: null`` turns ASR off."""

    model: str | UnsetType | None = UNSET
    language: str | UnsetType | None = UNSET
    corpus: dict[str, Any] | UnsetType | None = UNSET


class WireTurnDetection(msgspec.Struct, frozen=True):
    """``session.turn_detection`` (server VAD); the whole object ``null`` is manual mode."""

    type: str | UnsetType = UNSET
    threshold: float | UnsetType | None = UNSET
    prefix_padding_ms: int | UnsetType | None = UNSET
    silence_duration_ms: int | UnsetType | None = UNSET
    create_response: bool | UnsetType | None = UNSET
    interrupt_response: bool | UnsetType | None = UNSET


class WireCorpus(msgspec.Struct, frozen=True):
    phrases: dict[str, str] | UnsetType | None = UNSET


class WireTranslation(msgspec.Struct, frozen=True):
    language: str | UnsetType | None = UNSET
    corpus: WireCorpus | UnsetType | None = UNSET
    same_language_skip_options: dict[str, Any] | UnsetType | None = UNSET


class WireVoiceClone(msgspec.Struct, frozen=True):
    frequency: str | UnsetType | None = UNSET


class WireSessionConfig(msgspec.Struct, frozen=True):
    """The ``session`` of a ``session.update``: every field optional, ``null`` allowed."""

    modalities: list[str] | UnsetType | None = UNSET
    voice: str | UnsetType | None = UNSET
    sample_rate: int | UnsetType | None = UNSET
    input_audio_format: str | UnsetType | None = UNSET
    output_audio_format: str | UnsetType | None = UNSET
    input_audio_transcription: WireTranscription | UnsetType | None = UNSET
    turn_detection: WireTurnDetection | UnsetType | None = UNSET
    translation: WireTranslation | UnsetType | None = UNSET
    enable_voice_clone: bool | UnsetType | None = UNSET
    voice_clone_options: WireVoiceClone | UnsetType | None = UNSET


class WireSession(WireSessionConfig, frozen=True, kw_only=True):
    """The ``session`` of ``session.created`` / ``session.updated`` (the 1.x SDK reads ``id``)."""

    id: str
    object: str = "realtime.session"
    model: str | UnsetType = UNSET


# ------------------------------------------------------------- nested server objects


class WireError(msgspec.Struct, frozen=True):
    """``error.error``; ``type`` decides whether the session survives (§7.2)."""

    type: str
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | UnsetType | None = UNSET


class WireItemError(msgspec.Struct, frozen=True):
    code: str | None = None
    message: str = ""
    param: str | None = None


class WireItem(msgspec.Struct, frozen=True):
    id: str
    object: str = "realtime.item"
    type: str = "message"
    status: str | None = None
    role: str | None = None
    content: list[dict[str, Any]] = []


class WirePart(msgspec.Struct, frozen=True):
    type: str
    text: str | UnsetType = UNSET
    transcript: str | UnsetType = UNSET


class WireUsage(msgspec.Struct, frozen=True):
    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_details: dict[str, Any] | UnsetType | None = UNSET
    output_tokens_details: dict[str, Any] | UnsetType | None = UNSET


class WireResponse(msgspec.Struct, frozen=True):
    id: str
    status: str
    object: str = "realtime.response"
    conversation_id: str | UnsetType | None = UNSET
    modalities: list[str] | UnsetType | None = UNSET
    voice: str | UnsetType | None = UNSET
    output_audio_format: str | UnsetType | None = UNSET
    output: list[WireItem] = []
    usage: WireUsage | UnsetType | None = UNSET


# ------------------------------------------------------------------- client frames


class ClientFrame(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    event_id: str | None = None


class SessionUpdateFrame(ClientFrame, frozen=True, tag="session.update"):
    session: WireSessionConfig


class AudioAppendFrame(ClientFrame, frozen=True, tag="input_audio_buffer.append"):
    audio: bytes


class ImageAppendFrame(ClientFrame, frozen=True, tag="input_image_buffer.append"):
    image: bytes


class CommitFrame(ClientFrame, frozen=True, tag="input_audio_buffer.commit"):
    pass


class ClearFrame(ClientFrame, frozen=True, tag="input_audio_buffer.clear"):
    pass


class FinishFrame(ClientFrame, frozen=True, tag="session.finish"):
    pass


AnyClientFrame = (
    SessionUpdateFrame
    | AudioAppendFrame
    | ImageAppendFrame
    | CommitFrame
    | ClearFrame
    | FinishFrame
)

# ------------------------------------------------------------------- server frames


class ServerFrame(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    event_id: str = ""


class ErrorFrame(ServerFrame, frozen=True, tag="error"):
    error: WireError


class SessionCreatedFrame(ServerFrame, frozen=True, tag="session.created"):
    session: WireSession


class SessionUpdatedFrame(ServerFrame, frozen=True, tag="session.updated"):
    session: WireSession


class SpeechStartedFrame(ServerFrame, frozen=True, tag="input_audio_buffer.speech_started"):
    audio_start_ms: int
    item_id: str | UnsetType | None = UNSET


class SpeechStoppedFrame(ServerFrame, frozen=True, tag="input_audio_buffer.speech_stopped"):
    audio_end_ms: int
    item_id: str | UnsetType | None = UNSET


class AudioCommittedFrame(ServerFrame, frozen=True, tag="input_audio_buffer.committed"):
    previous_item_id: str | UnsetType | None = UNSET
    item_id: str | UnsetType | None = UNSET


class AudioClearedFrame(ServerFrame, frozen=True, tag="input_audio_buffer.cleared"):
    pass


class ItemCreatedFrame(ServerFrame, frozen=True, tag="conversation.item.created"):
    item: WireItem
    previous_item_id: str | UnsetType | None = UNSET


class _SourceFrame(ServerFrame, frozen=True, kw_only=True):
    item_id: str
    content_index: int = 0


class TranscriptionTextFrame(
    _SourceFrame, frozen=True, tag="conversation.item.input_audio_transcription.text"
):
    text: str
    stash: str = ""
    language: str | UnsetType | None = UNSET
    emotion: str | UnsetType | None = UNSET


class TranscriptionCompletedFrame(
    _SourceFrame, frozen=True, tag="conversation.item.input_audio_transcription.completed"
):
    transcript: str
    language: str | UnsetType | None = UNSET
    emotion: str | UnsetType | None = UNSET


class TranscriptionFailedFrame(
    _SourceFrame, frozen=True, tag="conversation.item.input_audio_transcription.failed"
):
    error: WireItemError


class ResponseCreatedFrame(ServerFrame, frozen=True, tag="response.created"):
    response: WireResponse


class ResponseDoneFrame(ServerFrame, frozen=True, tag="response.done"):
    response: WireResponse


class OutputItemAddedFrame(ServerFrame, frozen=True, tag="response.output_item.added"):
    response_id: str
    item: WireItem
    output_index: int = 0


class OutputItemDoneFrame(ServerFrame, frozen=True, tag="response.output_item.done"):
    response_id: str
    item: WireItem
    output_index: int = 0


class _ContentFrame(ServerFrame, frozen=True, kw_only=True):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


class ContentPartAddedFrame(_ContentFrame, frozen=True, tag="response.content_part.added"):
    part: WirePart


class ContentPartDoneFrame(_ContentFrame, frozen=True, tag="response.content_part.done"):
    part: WirePart


class AudioTranscriptTextFrame(_ContentFrame, frozen=True, tag="response.audio_transcript.text"):
    text: str
    stash: str = ""


class AudioTranscriptDoneFrame(_ContentFrame, frozen=True, tag="response.audio_transcript.done"):
    transcript: str


class TextTextFrame(_ContentFrame, frozen=True, tag="response.text.text"):
    text: str
    stash: str | UnsetType = UNSET


class TextDoneFrame(_ContentFrame, frozen=True, tag="response.text.done"):
    text: str


class AudioDeltaFrame(_ContentFrame, frozen=True, tag="response.audio.delta"):
    delta: bytes


class AudioDoneFrame(_ContentFrame, frozen=True, tag="response.audio.done"):
    pass


class SessionFinishedFrame(ServerFrame, frozen=True, tag="session.finished"):
    pass


AnyServerFrame = (
    ErrorFrame
    | SessionCreatedFrame
    | SessionUpdatedFrame
    | SpeechStartedFrame
    | SpeechStoppedFrame
    | AudioCommittedFrame
    | AudioClearedFrame
    | ItemCreatedFrame
    | TranscriptionTextFrame
    | TranscriptionCompletedFrame
    | TranscriptionFailedFrame
    | ResponseCreatedFrame
    | ResponseDoneFrame
    | OutputItemAddedFrame
    | OutputItemDoneFrame
    | ContentPartAddedFrame
    | ContentPartDoneFrame
    | AudioTranscriptTextFrame
    | AudioTranscriptDoneFrame
    | TextTextFrame
    | TextDoneFrame
    | AudioDeltaFrame
    | AudioDoneFrame
    | SessionFinishedFrame
)


def _tags(union: Any) -> frozenset[str]:
    return frozenset(str(cls.__struct_config__.tag) for cls in get_args(union))


CLIENT_TYPES: Final = _tags(AnyClientFrame)
"""Every client event ``type`` of §5.2 (livetranslate)."""
SERVER_TYPES: Final = _tags(AnyServerFrame)
"""Every server event ``type`` of §5.3 (livetranslate)."""


class Envelope(msgspec.Struct, frozen=True):
    """Just the tag and id of a frame: read when the full decode failed, to tell an
    unknown event type from a malformed known one."""

    type: str
    event_id: Any = None


def opt(value: str | UnsetType | None) -> str | None:
    """An optional wire string as ``str | None`` (absent and ``null`` alike)."""
    return None if isinstance(value, UnsetType) else value
