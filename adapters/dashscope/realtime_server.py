"""Sans-IO server core of the DashScope realtime protocol (the simulator's role).

It merges and validates ``session.update`` (``realtime_session.merge_session``),
decodes appends, never lets client garbage crash it (``BadRequest``), and
keeps a response's ids consistent: every response command must name an open
response and its item, ``session.finished`` waits until every response is done.
Re-exported by ``realtime``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from . import realtime_messages as m
from . import realtime_wire as w
from ._core import MAX_TEXT_FRAME, UNDECODABLE, Core, new_id
from ._realtime_state import SERVER_TRANSITIONS, ServerState
from .realtime_session import default_session, merge_session

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["RealtimeServer"]


class RealtimeServer(Core):
    """The server (simulator) role: reads client events, sends server events.

    Args:
        model: the ``?model=`` of the connection.
        ids: makes server-side ids from a prefix (``event``, ``sess``, ``conv``,
            ``item``, ``resp``); inject a deterministic source in tests.
        session_id: the session id (default: ``ids("sess")``).
    """

    _table = SERVER_TRANSITIONS
    _error = ServerState.ERROR

    def __init__(
        self,
        model: str,
        *,
        ids: Callable[[str], str] = new_id,
        session_id: str | None = None,
    ) -> None:
        super().__init__(ServerState.CONNECTED)
        self.model = model
        self._ids = ids
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(w.AnyClientFrame)
        self._envelope = msgspec.json.Decoder(w.Envelope)
        self.default = default_session(model, session_id or ids("sess"))
        self.session: w.WireSession = self.default
        """The session in force (the defaults merged with every accepted update)."""
        self.conversation_id = ids("conv")
        self._pending_confirms = 0
        self._open: dict[str, str] = {}  # open response id -> its output item id

    @property
    def state(self) -> ServerState:
        return self._state  # type: ignore[no-any-return]

    @property
    def asr_enabled(self) -> bool:
        """Source transcription is on (``input_audio_transcription.model`` not null)."""
        asr = self.session.input_audio_transcription
        return isinstance(asr, w.WireTranscription) and isinstance(asr.model, str)

    @property
    def audio_output(self) -> bool:
        modalities = self.session.modalities
        return isinstance(modalities, list) and "audio" in modalities

    @property
    def manual_mode(self) -> bool:
        """No server VAD: the client commits each turn."""
        return self.session.turn_detection is None

    @property
    def pending_confirms(self) -> int:
        """Accepted ``session.update``s not yet answered with ``ConfirmSession``."""
        return self._pending_confirms

    @property
    def open_responses(self) -> dict[str, str]:
        """Open response ids and their output item ids (a copy)."""
        return dict(self._open)

    def receive_data(self, data: bytes | str | None) -> None:
        self._check_live()
        if data is None:
            self._deliver(m.ConnectionClosed())
            return
        if isinstance(data, bytes):
            self._deliver(m.BadRequest("binary frames are not part of the realtime protocol"))
            return
        if len(data) > MAX_TEXT_FRAME:
            self._deliver(m.BadRequest(f"text frame of {len(data)} characters is too large"))
            return
        try:
            frame = self._decoder.decode(data)
        except UNDECODABLE as exc:
            self._deliver(self._bad(data, exc))
            return
        self._deliver(self._interpret(frame))

    def _bad(self, data: str, exc: Exception) -> m.BadRequest:
        try:
            envelope = self._envelope.decode(data)
        except UNDECODABLE:
            return m.BadRequest(f"malformed client frame: {exc}")
        event_id = envelope.event_id if isinstance(envelope.event_id, str) else None
        if envelope.type not in w.CLIENT_TYPES:
            return m.BadRequest(f"invalid event type {envelope.type!r}", event_id)
        return m.BadRequest(f"malformed {envelope.type}: {exc}", event_id)

    def _interpret(self, frame: w.AnyClientFrame) -> m.ServerEvent:
        event_id = frame.event_id
        match frame:
            case w.SessionUpdateFrame(session=update):
                merged = merge_session(self.session, update, self.default)
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

    def _deliver(self, event: m.ServerEvent) -> None:
        before = self._state
        new = self._table.get((before, type(event)))
        if new is None:
            # Not allowed now (a session.update after session.finish): the client
            # cannot push the server into ERROR; the simulator answers an error.
            event_id = getattr(event, "event_id", None)
            reason = f"{type(event).__name__} is not allowed in state {before.name}"
            self._events.append(m.BadRequest(reason, event_id))
            return
        self._state = new
        if isinstance(event, m.SessionUpdateRequested):
            self.session = event.session
            self._pending_confirms += 1
        self._events.append(event)

    def send(self, command: m.ServerCommand) -> str:
        self._check_live()
        self._check_ids(command)
        self._local(command)
        frame = self._frame(command)
        return self._encoder.encode(frame).decode()

    def send_all(self, commands: Sequence[m.ServerCommand]) -> list[str]:
        """``send`` each command in order; the frames, in order."""
        return [self.send(command) for command in commands]

    def response_commands(
        self,
        text: str,
        *,
        source_item_id: str | None,
        partials: Sequence[tuple[str, str]] = (),
        audio: Sequence[bytes] = (),
        usage: w.WireUsage | None = None,
    ) -> list[m.ServerCommand]:
        """One translation response in §5.4 order, with fresh, consistent ids.

        ``partials`` are ``(text, stash)`` snapshots; audio chunks interleave with
        them and are left out when the session has no audio output.
        """
        item_id, response_id = self._ids("item"), self._ids("resp")
        chunks = list(audio) if self.audio_output else []
        body: list[m.ServerCommand] = []
        for index in range(max(len(partials), len(chunks))):
            if index < len(partials):
                body.append(m.SendTranslationPartial(response_id, item_id, *partials[index]))
            if index < len(chunks):
                body.append(m.SendAudioDelta(response_id, item_id, chunks[index]))
        tail: list[m.ServerCommand] = [m.SendTranslationFinal(response_id, item_id, text)]
        if self.audio_output:
            tail.append(m.FinishAudio(response_id, item_id))
        return [
            m.CreateItem(item_id, source_item_id),
            m.CreateResponse(response_id, item_id),
            m.AddOutputItem(response_id, item_id),
            m.AddContentPart(response_id, item_id),
            *body,
            *tail,
            m.FinishContentPart(response_id, item_id, text),
            m.FinishOutputItem(response_id, item_id, text),
            m.FinishResponse(response_id, item_id, text, usage),
        ]

    def segment_commands(
        self,
        transcript: str,
        translation: str,
        *,
        start_ms: int,
        end_ms: int,
        source_partials: Sequence[tuple[str, str]] = (),
        translation_partials: Sequence[tuple[str, str]] = (),
        audio: Sequence[bytes] = (),
        language: str | None = None,
        emotion: str | None = "neutral",
    ) -> list[m.ServerCommand]:
        """A whole VAD segment as in the §5.3 example: speech, ASR, and its translation.

        Speech events are left out in manual mode, ASR events when ASR is off.
        """
        source_id = self._ids("item")
        vad = not self.manual_mode
        asr: list[m.ServerCommand] = []
        final: list[m.ServerCommand] = []
        if self.asr_enabled:
            asr = [m.SendSourcePartial(source_id, *p, language, emotion) for p in source_partials]
            final = [m.SendSourceFinal(source_id, transcript, language, emotion)]
        response = self.response_commands(
            translation, source_item_id=source_id, partials=translation_partials, audio=audio
        )
        cut = 4 + len(translation_partials) + (len(audio) if self.audio_output else 0)
        return [
            *([m.StartSpeech(start_ms, source_id)] if vad else []),
            *asr,
            *response[:cut],
            *([m.StopSpeech(end_ms, source_id)] if vad else []),
            *final,
            *response[cut:],
        ]

    def _check_ids(self, command: m.ServerCommand) -> None:
        """Per-response consistency, beyond the state table: raise before any change."""
        match command:
            case m.ConfirmSession() if self._pending_confirms == 0:
                raise self._misuse("session.updated without a session.update to confirm")
            case m.CreateResponse(response_id) if response_id in self._open:
                raise self._misuse(f"response {response_id!r} is already open")
            case m.SendSourcePartial() | m.SendSourceFinal() if not self.asr_enabled:
                raise self._misuse("source transcription is off in this session")
            case m.SendAudioDelta() | m.FinishAudio() if not self.audio_output:
                raise self._misuse("audio output is off in this session (modalities ['text'])")
            case m.FinishSessionReply() if self._open or self._pending_confirms:
                raise self._misuse(
                    f"session.finished with open responses {sorted(self._open)} "
                    f"or {self._pending_confirms} unconfirmed update(s)"
                )
        if isinstance(command, m.ResponseCommand):
            item_id = self._open.get(command.response_id)
            if item_id != command.item_id:
                raise self._misuse(
                    f"{type(command).__name__} for response {command.response_id!r} / item "
                    f"{command.item_id!r}, but the open responses are {self._open}"
                )

    def _frame(self, command: m.ServerCommand) -> w.ServerFrame:
        event_id = self._ids("event")
        part_type = "audio" if self.audio_output else "text"
        match command:
            case m.CreateSession():
                # What the service created on upgrade: an early update shows in session.updated.
                return w.SessionCreatedFrame(event_id=event_id, session=self.default)
            case m.ConfirmSession():
                self._pending_confirms -= 1
                return w.SessionUpdatedFrame(event_id=event_id, session=self.session)
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
                return w.SpeechStoppedFrame(
                    event_id=event_id, audio_end_ms=end, item_id=_some(item_id)
                )
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
                self._open[response_id] = item_id
                response = self._response(response_id, "in_progress", [])
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
                if self.audio_output:
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
                if self.audio_output:
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
                del self._open[response_id]
                key = "transcript" if part_type == "audio" else "text"
                output = [_done_item(item_id, part_type, key, text)]
                response = self._response(response_id, status, output, usage or w.WireUsage())
                return w.ResponseDoneFrame(event_id=event_id, response=response)
            case m.FinishSessionReply():
                return w.SessionFinishedFrame(event_id=event_id)
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    def _response(
        self,
        response_id: str,
        status: str,
        output: list[w.WireItem],
        usage: w.WireUsage | msgspec.UnsetType = msgspec.UNSET,
    ) -> w.WireResponse:
        session = self.session
        return w.WireResponse(
            id=response_id,
            status=status,
            conversation_id=self.conversation_id,
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
