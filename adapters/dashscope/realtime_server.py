"""Sans-IO server core of the DashScope realtime protocol (the simulator's role).

It merges and validates ``session.update`` (``realtime_session.merge_session``),
decodes appends, never lets client garbage crash it (``BadRequest``), and
keeps a response's ids consistent: every response command must name an open
response and its item, ``session.finished`` waits until every response is done.
Frames to events and commands to frames: :mod:`.realtime_server_frames`.
Re-exported by ``realtime``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from . import realtime_messages as m
from . import realtime_wire as w
from ._core import MAX_TEXT_FRAME, UNDECODABLE, Core, new_id
from ._realtime_state import SERVER_TRANSITIONS, ServerState
from .realtime_server_frames import client_event, server_frame
from .realtime_session import default_session

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
        self._deliver(client_event(frame, session=self.session, created=self.default))

    def _bad(self, data: str, exc: Exception) -> m.BadRequest:
        try:
            envelope = self._envelope.decode(data)
        except UNDECODABLE:
            return m.BadRequest(f"malformed client frame: {exc}")
        event_id = envelope.event_id if isinstance(envelope.event_id, str) else None
        if envelope.type not in w.CLIENT_TYPES:
            return m.BadRequest(f"invalid event type {envelope.type!r}", event_id)
        return m.BadRequest(f"malformed {envelope.type}: {exc}", event_id)

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
        frame = server_frame(
            command,
            event_id=self._ids("event"),
            session=self.session,
            created=self.default,
            conversation_id=self.conversation_id,
        )
        self._book(command)
        return self._encoder.encode(frame).decode()

    def _book(self, command: m.ServerCommand) -> None:
        """Keep the confirms owed and the open responses (after the frame is made)."""
        match command:
            case m.ConfirmSession():
                self._pending_confirms -= 1
            case m.CreateResponse(response_id, item_id):
                self._open[response_id] = item_id
            case m.FinishResponse(response_id):
                del self._open[response_id]

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
