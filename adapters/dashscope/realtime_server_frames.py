"""The realtime server core's frames, both ways (DASHSCOPE.md §5).

Pure: :func:`client_event` turns a decoded client frame into its event
(merging and validating a ``session.update``), and :func:`server_frame` renders
one :data:`~.realtime_messages.ServerCommand` as its
:data:`~.realtime_wire.ServerFrame`, given the session in force. The
core (:class:`~.realtime_server.RealtimeServer`) checks the command against
its state table and its open responses first, and keeps its bookkeeping
itself; nothing here changes state.

With audio output on (``modalities`` holds ``audio``) a translation streams as
``response.audio_transcript.*`` beside ``response.audio.delta``; text-only, as
``response.text.*`` (whose ``stash`` is left out when empty). Optional ids are
left out of a frame when there are none, as in §5.3.
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import realtime_messages as m
from . import realtime_wire as w
from .realtime_session import merge_session

__all__ = ["client_event", "server_frame"]


def client_event(
    frame: w.AnyClientFrame, *, session: w.WireSession, created: w.WireSession
) -> m.ServerEvent:
    """The event for a decoded client frame; a ``session.update`` is merged into ``session``.

    Args:
        frame: the decoded frame.
        session: the session in force.
        created: the session as created on upgrade (the defaults).
    """
    event_id = frame.event_id
    match frame:
        case w.SessionUpdateFrame(session=update):
            merged = merge_session(session, update, created)
            if isinstance(merged, w.WireSession):
                return m.SessionUpdateRequested(event_id, update, merged)
            reply = m.SendError(merged.code, merged.message, merged.param, event_id)
            return m.SessionUpdateRejected(event_id, reply)
        case w.AudioAppendFrame(audio=pcm):
            return m.AudioAppended(event_id, pcm)
        case w.ImageAppendFrame(image=jpeg):
            return m.ImageAppended(event_id, jpeg)
        case w.CommitFrame():
            return m.CommitRequested(event_id)
        case w.ClearFrame():
            return m.ClearRequested(event_id)
        case w.FinishFrame():
            return m.FinishRequested(event_id)
    raise AssertionError(f"unhandled frame {frame!r}")  # pragma: no cover


def server_frame(
    command: m.ServerCommand,
    *,
    event_id: str,
    session: w.WireSession,
    created: w.WireSession,
    conversation_id: str,
) -> w.ServerFrame:
    """The frame for ``command``.

    Args:
        command: what to send.
        event_id: the frame's ``event_id``.
        session: the session in force (modalities, voice, formats).
        created: the session as created on upgrade (for ``session.created``).
        conversation_id: the session's conversation.
    """
    modalities = session.modalities
    audio_output = isinstance(modalities, list) and "audio" in modalities
    part_type = "audio" if audio_output else "text"
    match command:
        case m.CreateSession():
            # What the service created on upgrade: an early update shows in session.updated.
            return w.SessionCreatedFrame(event_id=event_id, session=created)
        case m.ConfirmSession():
            return w.SessionUpdatedFrame(event_id=event_id, session=session)
        case m.SendError(code, message, param, offending):
            error = _error("invalid_request_error", code, message, param, offending)
            return w.ErrorFrame(event_id=event_id, error=error)
        case m.FailSession(code, message, kind, param, offending):
            error = _error(kind, code, message, param, offending)
            return w.ErrorFrame(event_id=event_id, error=error)
        case m.StartSpeech(start, item_id):
            return w.SpeechStartedFrame(
                event_id=event_id, audio_start_ms=start, item_id=_some(item_id)
            )
        case m.StopSpeech(end, item_id):
            return w.SpeechStoppedFrame(event_id=event_id, audio_end_ms=end, item_id=_some(item_id))
        case m.AckCommit(item_id, previous):
            return w.AudioCommittedFrame(
                event_id=event_id, item_id=_some(item_id), previous_item_id=_some(previous)
            )
        case m.AckClear():
            return w.AudioClearedFrame(event_id=event_id)
        case m.CreateItem(item_id, previous, role):
            item = w.WireItem(id=item_id, status="in_progress", role=role)
            return w.ItemCreatedFrame(event_id=event_id, item=item, previous_item_id=previous)
        case m.SendSourcePartial(item_id, text, stash, language, emotion):
            return w.TranscriptionTextFrame(
                event_id=event_id,
                item_id=item_id,
                text=text,
                stash=stash,
                language=_some(language),
                emotion=_some(emotion),
            )
        case m.SendSourceFinal(item_id, transcript, language, emotion):
            return w.TranscriptionCompletedFrame(
                event_id=event_id,
                item_id=item_id,
                transcript=transcript,
                language=_some(language),
                emotion=_some(emotion),
            )
        case m.SendSourceFailed(item_id, code, message):
            failure = w.WireItemError(code=code, message=message)
            return w.TranscriptionFailedFrame(event_id=event_id, item_id=item_id, error=failure)
        case m.CreateResponse(response_id, item_id):
            response = _response(session, conversation_id, response_id, "in_progress", [])
            return w.ResponseCreatedFrame(event_id=event_id, response=response)
        case m.AddOutputItem(response_id, item_id):
            item = w.WireItem(id=item_id, status="in_progress", role="assistant")
            return w.OutputItemAddedFrame(event_id=event_id, response_id=response_id, item=item)
        case m.AddContentPart(response_id, item_id):
            return w.ContentPartAddedFrame(
                event_id=event_id,
                response_id=response_id,
                item_id=item_id,
                part=w.WirePart(type=part_type, text=""),
            )
        case m.SendTranslationPartial(response_id, item_id, text, stash):
            if audio_output:
                return w.AudioTranscriptTextFrame(
                    event_id=event_id,
                    response_id=response_id,
                    item_id=item_id,
                    text=text,
                    stash=stash,
                )
            return w.TextTextFrame(
                event_id=event_id,
                response_id=response_id,
                item_id=item_id,
                text=text,
                stash=stash if stash else msgspec.UNSET,
            )
        case m.SendAudioDelta(response_id, item_id, pcm):
            return w.AudioDeltaFrame(
                event_id=event_id, response_id=response_id, item_id=item_id, delta=pcm
            )
        case m.SendTranslationFinal(response_id, item_id, text):
            if audio_output:
                return w.AudioTranscriptDoneFrame(
                    event_id=event_id, response_id=response_id, item_id=item_id, transcript=text
                )
            return w.TextDoneFrame(
                event_id=event_id, response_id=response_id, item_id=item_id, text=text
            )
        case m.FinishAudio(response_id, item_id):
            return w.AudioDoneFrame(event_id=event_id, response_id=response_id, item_id=item_id)
        case m.FinishContentPart(response_id, item_id, text):
            return w.ContentPartDoneFrame(
                event_id=event_id,
                response_id=response_id,
                item_id=item_id,
                part=w.WirePart(type=part_type, text=text),
            )
        case m.FinishOutputItem(response_id, item_id, text):
            item = _done_item(item_id, part_type, "text", text)
            return w.OutputItemDoneFrame(event_id=event_id, response_id=response_id, item=item)
        case m.FinishResponse(response_id, item_id, text, usage, status):
            key = "transcript" if part_type == "audio" else "text"
            output = [_done_item(item_id, part_type, key, text)]
            response = _response(
                session, conversation_id, response_id, status, output, usage or w.WireUsage()
            )
            return w.ResponseDoneFrame(event_id=event_id, response=response)
        case m.FinishSessionReply():
            return w.SessionFinishedFrame(event_id=event_id)
    raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover


def _response(
    session: w.WireSession,
    conversation_id: str,
    response_id: str,
    status: str,
    output: list[w.WireItem],
    usage: w.WireUsage | msgspec.UnsetType = msgspec.UNSET,
) -> w.WireResponse:
    return w.WireResponse(
        id=response_id,
        status=status,
        conversation_id=conversation_id,
        modalities=session.modalities,
        voice=session.voice,
        output_audio_format=session.output_audio_format,
        output=output,
        usage=usage,
    )


def _error(
    kind: str, code: str, message: str, param: str | None, event_id: str | None
) -> w.WireError:
    return w.WireError(type=kind, code=code, message=message, param=param, event_id=_some(event_id))


def _some(value: str | None) -> str | msgspec.UnsetType:
    """Optional ids are left out of the frame when there are none (as in §5.3)."""
    return msgspec.UNSET if value is None else value


def _done_item(item_id: str, part_type: str, key: str, text: str) -> w.WireItem:
    content: list[dict[str, Any]] = [{"type": part_type, key: text}]
    return w.WireItem(id=item_id, status="completed", role="assistant", content=content)
