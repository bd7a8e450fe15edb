"""Sans-IO cores of the DashScope realtime protocol (livetranslate), client and server roles.

Each core has three verbs (house rule R1):

* ``receive_data(data)`` — a received text frame, or ``None`` when the
  transport closed (every realtime frame is JSON text; binary is refused);
* ``events()`` — the events that input produced;
* ``send(command)`` — the text frame for a command, after checking it against
  the state table in ``_realtime_state``.

The client normalizes the §5.3 server events (ASR snapshots, translation
snapshots, decoded audio) and correlates each translation with its ASR item
through ``conversation.item.created.previous_item_id``. The server (for the
simulator) merges and validates ``session.update``, decodes appends, and keeps
the ids of a response consistent. No I/O, no clock, no logging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from . import realtime_messages as m
from . import realtime_wire as w
from ._core import MAX_TEXT_FRAME, UNDECODABLE, Core, new_event_id, new_id
from ._realtime_state import CLIENT_TRANSITIONS, ClientState
from .realtime_server import RealtimeServer
from .realtime_wire import opt

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MAX_TEXT_FRAME", "RealtimeClient", "RealtimeServer", "new_event_id", "new_id"]

_MAX_TRACKED: Final = 256
"""Translation items / responses whose correlation the client remembers at once."""


class RealtimeClient(Core):
    """The client (engine) role: configures, streams audio up, reads ASR and translation.

    Args:
        event_ids: makes each client ``event_id`` (default: ``event_`` + uuid4 hex);
            inject a deterministic source in tests.
    """

    _table = CLIENT_TRANSITIONS
    _error = ClientState.ERROR

    def __init__(self, *, event_ids: Callable[[], str] = new_event_id) -> None:
        super().__init__(ClientState.CONNECTING)
        self._event_ids = event_ids
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(w.AnyServerFrame)
        self._envelope = msgspec.json.Decoder(w.Envelope)
        self._sources: dict[str, str] = {}  # translation item id -> ASR item id
        self._response_items: dict[str, str] = {}  # response id -> its output item id
        self.session: w.WireSession | None = None
        """The session as the server last described it (created/updated)."""
        self.pending_update: str | None = None
        """The event id of the ``session.update`` awaiting ``session.updated``."""

    @property
    def state(self) -> ClientState:
        return self._state  # type: ignore[no-any-return]

    def send(self, command: m.ClientCommand) -> str:
        self._local(command)
        event_id = self._event_ids()
        frame: w.ClientFrame
        match command:
            case m.UpdateSession(settings):
                self.pending_update = event_id
                frame = w.SessionUpdateFrame(event_id=event_id, session=settings.to_wire())
            case m.AppendAudio(pcm):
                frame = w.AudioAppendFrame(event_id=event_id, audio=pcm)
            case m.AppendImage(jpeg):
                frame = w.ImageAppendFrame(event_id=event_id, image=jpeg)
            case m.Commit():
                frame = w.CommitFrame(event_id=event_id)
            case m.Clear():
                frame = w.ClearFrame(event_id=event_id)
            case m.FinishSession():
                frame = w.FinishFrame(event_id=event_id)
            case _:  # pragma: no cover
                raise AssertionError(f"unhandled command {command!r}")
        return self._encoder.encode(frame).decode()

    def receive_data(self, data: bytes | str | None) -> None:
        self._check_live()
        if data is None:
            self._deliver(m.ConnectionClosed())
            return
        if isinstance(data, bytes):
            self._violation("the server sent a binary frame on the realtime endpoint")
            return
        if len(data) > MAX_TEXT_FRAME:
            self._violation(f"text frame of {len(data)} characters exceeds {MAX_TEXT_FRAME}")
            return
        try:
            frame = self._decoder.decode(data)
        except UNDECODABLE as exc:
            unknown = self._unknown_type(data)
            if unknown is None:
                self._violation(f"malformed server frame: {exc}")
            else:
                self._deliver(m.UnknownEvent(unknown))
            return
        self._deliver(self._interpret(frame))

    def _unknown_type(self, data: str) -> str | None:
        """The frame's ``type`` when it is one we do not know (so not malformed)."""
        try:
            envelope = self._envelope.decode(data)
        except UNDECODABLE:
            return None
        return None if envelope.type in w.SERVER_TYPES else envelope.type

    def _interpret(self, frame: w.AnyServerFrame) -> m.ClientEvent:
        match frame:
            case w.ErrorFrame(error=e):
                kind = m.ServerError if e.type == "invalid_request_error" else m.FatalServerError
                return kind(e.type, e.code, e.message, e.param, opt(e.event_id))
            case w.SessionCreatedFrame(session=session):
                return m.SessionCreated(session)
            case w.SessionUpdatedFrame(session=session):
                return m.SessionUpdated(session)
            case w.SpeechStartedFrame():
                return m.SpeechStarted(frame.audio_start_ms, opt(frame.item_id))
            case w.SpeechStoppedFrame():
                return m.SpeechStopped(frame.audio_end_ms, opt(frame.item_id))
            case w.AudioCommittedFrame():
                return m.AudioCommitted(opt(frame.item_id), opt(frame.previous_item_id))
            case w.AudioClearedFrame():
                return m.AudioCleared()
            case w.ItemCreatedFrame(item=item):
                return m.ItemCreated(item.id, opt(frame.previous_item_id), item.role)
            case w.TranscriptionTextFrame():
                return m.SourcePartial(
                    frame.item_id, frame.text, frame.stash, opt(frame.language), opt(frame.emotion)
                )
            case w.TranscriptionCompletedFrame():
                return m.SourceFinal(
                    frame.item_id, frame.transcript, opt(frame.language), opt(frame.emotion)
                )
            case w.TranscriptionFailedFrame(error=e):
                return m.SourceFailed(frame.item_id, e.code, e.message)
            case w.ResponseCreatedFrame(response=response):
                return m.ResponseCreated(response.id)
            case w.OutputItemAddedFrame(item=item):
                return m.OutputItemAdded(frame.response_id, item.id)
            case w.ContentPartAddedFrame(part=part):
                return m.ContentPartAdded(frame.response_id, frame.item_id, part.type)
            case w.AudioTranscriptTextFrame() | w.TextTextFrame():
                stash = frame.stash if isinstance(frame.stash, str) else ""
                source = self._sources.get(frame.item_id)
                return m.TranslationPartial(
                    frame.response_id, frame.item_id, frame.text, stash, source
                )
            case w.AudioTranscriptDoneFrame(transcript=text) | w.TextDoneFrame(text=text):
                source = self._sources.get(frame.item_id)
                return m.TranslationFinal(frame.response_id, frame.item_id, text, source)
            case w.AudioDeltaFrame(delta=pcm):
                source = self._sources.get(frame.item_id)
                return m.AudioDelta(frame.response_id, frame.item_id, pcm, source)
            case w.AudioDoneFrame():
                return m.AudioDone(frame.response_id, frame.item_id)
            case w.ContentPartDoneFrame(part=part):
                final = part.text if isinstance(part.text, str) else opt(part.transcript)
                return m.ContentPartDone(frame.response_id, frame.item_id, part.type, final)
            case w.OutputItemDoneFrame(item=item):
                return m.OutputItemDone(frame.response_id, item.id, item.status)
            case w.ResponseDoneFrame(response=response):
                item_id = self._response_items.get(response.id)
                if item_id is None and response.output:
                    item_id = response.output[0].id
                usage = response.usage if isinstance(response.usage, w.WireUsage) else None
                source = None if item_id is None else self._sources.get(item_id)
                return m.ResponseDone(response.id, response.status, usage, source)
            case w.SessionFinishedFrame():
                return m.SessionFinished()
        raise AssertionError(f"unhandled frame {frame!r}")  # pragma: no cover

    def _deliver(self, event: m.ClientEvent) -> None:
        before = self._state
        new = self._table.get((before, type(event)))
        if new is None:
            self._violation(f"{type(event).__name__} is not allowed in state {before.name}")
            return
        self._state = new
        self._remember(event)
        self._events.append(event)

    def _remember(self, event: m.ClientEvent) -> None:
        """Bookkeeping of an accepted event: session, pending update, correlation ids."""
        match event:
            case m.SessionCreated(session) | m.SessionUpdated(session):
                self.session = session
                if isinstance(event, m.SessionUpdated):
                    self.pending_update = None
            case m.ServerError() if self.state is ClientState.READY:
                self.pending_update = None  # the update was rejected
            case m.ItemCreated(item_id, previous, role) if previous and role != "user":
                _bounded_put(self._sources, item_id, previous)
            case m.OutputItemAdded(response_id, item_id):
                _bounded_put(self._response_items, response_id, item_id)
            case m.ResponseDone(response_id):
                done = self._response_items.pop(response_id, None)
                if done is not None:
                    self._sources.pop(done, None)

    def _violation(self, reason: str) -> None:
        self._state = ClientState.ERROR
        self._events.append(m.ProtocolViolation(reason))


def _bounded_put(table: dict[str, str], key: str, value: str) -> None:
    table.pop(key, None)
    table[key] = value
    if len(table) > _MAX_TRACKED:
        del table[next(iter(table))]  # the oldest: a response that never finished
