"""Requests and commands of the realtime server core (the simulator's role).

Re-exported by ``realtime_messages``, so both roles share one namespace.
"""

from __future__ import annotations

import msgspec

from .realtime_wire import WireSession, WireSessionConfig, WireUsage


class ConnectionClosed(msgspec.Struct, frozen=True):
    """The transport closed (both roles)."""


# ------------------------------------------------- server role: events


class SessionUpdateRequested(msgspec.Struct, frozen=True):
    """A valid ``session.update``: ``session`` is the merged config, now in force.

    Reply with ``ConfirmSession()`` (after ``CreateSession()`` if not sent yet).
    """

    event_id: str | None
    update: WireSessionConfig
    session: WireSession


class SendError(msgspec.Struct, frozen=True):
    """Send a non-fatal ``invalid_request_error``; the session goes on."""

    code: str
    message: str
    param: str | None = None
    event_id: str | None = None


class SessionUpdateRejected(msgspec.Struct, frozen=True):
    """An invalid ``session.update``: the previous config stays; send ``reply``."""

    event_id: str | None
    reply: SendError


class AudioAppended(msgspec.Struct, frozen=True):
    event_id: str | None
    pcm: bytes


class ImageAppended(msgspec.Struct, frozen=True):
    event_id: str | None
    jpeg: bytes


class CommitRequested(msgspec.Struct, frozen=True):
    event_id: str | None


class ClearRequested(msgspec.Struct, frozen=True):
    event_id: str | None


class FinishRequested(msgspec.Struct, frozen=True):
    event_id: str | None


class BadRequest(msgspec.Struct, frozen=True):
    """A client frame we cannot accept (garbage, unknown type, wrong state).

    The server decides; usually it sends ``SendError("invalid_value", reason, event_id=…)``.
    """

    reason: str
    event_id: str | None = None


ClientRequest = (
    SessionUpdateRequested
    | SessionUpdateRejected
    | AudioAppended
    | ImageAppended
    | CommitRequested
    | ClearRequested
    | FinishRequested
)
ServerEvent = ClientRequest | BadRequest | ConnectionClosed

# ----------------------------------------------- server role: commands


class CreateSession(msgspec.Struct, frozen=True):
    """``session.created`` with the model's default session; the first frame of a connection."""


class ConfirmSession(msgspec.Struct, frozen=True):
    """``session.updated`` with the full effective session, once per accepted update."""


class FailSession(msgspec.Struct, frozen=True):
    """A fatal ``error`` (any type but ``invalid_request_error``); then close."""

    code: str
    message: str
    type: str = "server_error"
    param: str | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        if self.type == "invalid_request_error":
            raise ValueError("invalid_request_error is not fatal: use SendError")


class StartSpeech(msgspec.Struct, frozen=True):
    audio_start_ms: int
    item_id: str | None = None


class StopSpeech(msgspec.Struct, frozen=True):
    audio_end_ms: int
    item_id: str | None = None


class AckCommit(msgspec.Struct, frozen=True):
    item_id: str | None = None
    previous_item_id: str | None = None


class AckClear(msgspec.Struct, frozen=True):
    pass


class CreateItem(msgspec.Struct, frozen=True):
    """``conversation.item.created``; a translation item names its ASR item as previous."""

    item_id: str
    previous_item_id: str | None = None
    role: str = "assistant"


class SendSourcePartial(msgspec.Struct, frozen=True):
    item_id: str
    text: str
    stash: str = ""
    language: str | None = None
    emotion: str | None = None


class SendSourceFinal(msgspec.Struct, frozen=True):
    item_id: str
    transcript: str
    language: str | None = None
    emotion: str | None = None


class SendSourceFailed(msgspec.Struct, frozen=True):
    item_id: str
    code: str
    message: str


class CreateResponse(msgspec.Struct, frozen=True):
    """Open a translation response for one output item (``response.created``)."""

    response_id: str
    item_id: str


class AddOutputItem(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str


class AddContentPart(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str


class SendTranslationPartial(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str
    text: str
    stash: str = ""


class SendAudioDelta(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str
    pcm: bytes


class SendTranslationFinal(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str
    text: str


class FinishAudio(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str


class FinishContentPart(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str
    text: str


class FinishOutputItem(msgspec.Struct, frozen=True):
    response_id: str
    item_id: str
    text: str


class FinishResponse(msgspec.Struct, frozen=True):
    """``response.done``; closes the response (no more frames for it)."""

    response_id: str
    item_id: str
    text: str
    usage: WireUsage | None = None
    status: str = "completed"


class FinishSessionReply(msgspec.Struct, frozen=True):
    """``session.finished``: only after ``session.finish`` and with no response open."""


ResponseCommand = (
    AddOutputItem
    | AddContentPart
    | SendTranslationPartial
    | SendAudioDelta
    | SendTranslationFinal
    | FinishAudio
    | FinishContentPart
    | FinishOutputItem
    | FinishResponse
)
"""Commands about one open response: their ``response_id``/``item_id`` must match it."""

StreamCommand = (
    StartSpeech
    | StopSpeech
    | AckCommit
    | AckClear
    | CreateItem
    | SendSourcePartial
    | SendSourceFinal
    | SendSourceFailed
    | CreateResponse
    | ResponseCommand
)

ServerCommand = (
    CreateSession | ConfirmSession | SendError | FailSession | StreamCommand | FinishSessionReply
)
