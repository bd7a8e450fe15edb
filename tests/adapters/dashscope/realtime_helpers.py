"""Test helpers for the DashScope realtime cores: a client/server pair, wire frames, drivers.

:class:`Pair` wires a :class:`RealtimeClient` to a :class:`RealtimeServer` the way
h11's ``ConnectionPair`` wires two connections: ``pair.send(side, commands)``
sends from one side, delivers every frame to the other side's ``receive_data``
and returns the events observed there, checked against the state tables and
against :func:`Pair.mirror` (what the peer should see for each command).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from adapters.dashscope import realtime_messages as m
from adapters.dashscope._realtime_state import (
    CLIENT_TRANSITIONS,
    PEER_STATE,
    SERVER_TRANSITIONS,
    ClientState,
    ServerState,
)
from adapters.dashscope.realtime import RealtimeClient, RealtimeServer
from adapters.dashscope.realtime_session import SessionSettings, merge_session
from adapters.dashscope.realtime_wire import WireUsage
from engine.errors import LocalProtocolError

Side = Literal["client", "server"]
Core = RealtimeClient | RealtimeServer

MODEL = "qwen3.5-livetranslate-flash-realtime"
SESSION_ID = "sess_Q8d2"
PCM = b"\x01\x00\xff\x7f" * 800  # 100 ms of 16 kHz mono s16le
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\xff\xd9"
SETTINGS = SessionSettings()
USAGE = WireUsage(total_tokens=61, input_tokens=50, output_tokens=11)


def event_ids() -> Callable[[], str]:
    """Deterministic client event ids: ``event_`` + 32 hex digits, counting up."""
    counter = itertools.count(1)
    return lambda: f"event_{next(counter):032x}"


def server_ids() -> Callable[[str], str]:
    """Deterministic server ids: ``<prefix>_<n>``, one counter per prefix."""
    counters: dict[str, itertools.count[int]] = {}
    return lambda prefix: f"{prefix}_{next(counters.setdefault(prefix, itertools.count(1)))}"


def dumps(frame: Any) -> str:
    """Serialise like the SDK: UTF-8, non-ASCII not escaped."""
    return json.dumps(frame, ensure_ascii=False)


# ------------------------------------------------------------------- DASHSCOPE.md §5.3, verbatim

EXAMPLE_SESSION_CREATED = """\
{"event_id": "event_S1", "type": "session.created",
 "session": {"id": "sess_Q8d2", "object": "realtime.session", "model": "qwen3.5-livetranslate-flash-realtime",
   "modalities": ["text", "audio"], "voice": "Tina", "sample_rate": 16000,
   "input_audio_format": "pcm", "output_audio_format": "pcm",
   "input_audio_transcription": {"model": "qwen3-asr-flash-realtime"},
   "turn_detection": {"type": "server_vad", "threshold": 0.2, "prefix_padding_ms": 300,
                      "silence_duration_ms": 1000, "create_response": true, "interrupt_response": true},
   "translation": {"language": "en"}}}"""

EXAMPLE_SEQUENCE = """\
{"event_id": "event_S2", "type": "session.updated", "session": {"id": "sess_Q8d2", "object": "realtime.session", "model": "qwen3.5-livetranslate-flash-realtime", "modalities": ["text", "audio"], "voice": "Tina", "sample_rate": 16000, "input_audio_format": "pcm", "output_audio_format": "pcm", "translation": {"language": "en"}}}
{"event_id": "event_S3", "type": "input_audio_buffer.speech_started", "audio_start_ms": 420}
{"event_id": "event_S4", "type": "conversation.item.input_audio_transcription.text", "item_id": "item_A1", "content_index": 0, "text": "", "stash": "今天天气", "language": "zh", "emotion": "neutral"}
{"event_id": "event_S5", "type": "conversation.item.created", "previous_item_id": "item_A1", "item": {"id": "item_T1", "object": "realtime.item", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}
{"event_id": "event_S6", "type": "response.created", "response": {"id": "resp_R1", "object": "realtime.response", "conversation_id": "conv_C1", "status": "in_progress", "modalities": ["text", "audio"], "voice": "Tina", "output_audio_format": "pcm", "output": []}}
{"event_id": "event_S7", "type": "response.output_item.added", "response_id": "resp_R1", "output_index": 0, "item": {"id": "item_T1", "object": "realtime.item", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}
{"event_id": "event_S8", "type": "response.content_part.added", "response_id": "resp_R1", "item_id": "item_T1", "output_index": 0, "content_index": 0, "part": {"type": "audio", "text": ""}}
{"event_id": "event_S9", "type": "response.audio_transcript.text", "response_id": "resp_R1", "item_id": "item_T1", "output_index": 0, "content_index": 0, "text": "The weather", "stash": " today"}
{"event_id": "event_S10", "type": "response.audio.delta", "response_id": "resp_R1", "item_id": "item_T1", "output_index": 0, "content_index": 0, "delta": "AAABAAIA…"}
{"event_id": "event_S11", "type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2650}
{"event_id": "event_S12", "type": "conversation.item.input_audio_transcription.completed", "item_id": "item_A1", "content_index": 0, "transcript": "今天天气很好。", "language": "zh", "emotion": "neutral"}
{"event_id": "event_S13", "type": "response.audio_transcript.done", "response_id": "resp_R1", "item_id": "item_T1", "output_index": 0, "content_index": 0, "transcript": "The weather is nice today."}
{"event_id": "event_S14", "type": "response.audio.done", "response_id": "resp_R1", "item_id": "item_T1", "output_index": 0, "content_index": 0}
{"event_id": "event_S15", "type": "response.content_part.done", "response_id": "resp_R1", "item_id": "item_T1", "output_index": 0, "content_index": 0, "part": {"type": "audio", "text": "The weather is nice today."}}
{"event_id": "event_S16", "type": "response.output_item.done", "response_id": "resp_R1", "output_index": 0, "item": {"id": "item_T1", "object": "realtime.item", "type": "message", "status": "completed", "role": "assistant", "content": [{"type": "audio", "text": "The weather is nice today."}]}}
{"event_id": "event_S17", "type": "response.done", "response": {"id": "resp_R1", "object": "realtime.response", "conversation_id": "conv_C1", "status": "completed", "modalities": ["text", "audio"], "voice": "Tina", "output_audio_format": "pcm", "output": [{"id": "item_T1", "object": "realtime.item", "type": "message", "status": "completed", "role": "assistant", "content": [{"type": "audio", "transcript": "The weather is nice today."}]}], "usage": {"total_tokens": 61, "input_tokens": 50, "output_tokens": 11, "input_tokens_details": {"text_tokens": 20, "audio_tokens": 30}, "output_tokens_details": {"text_tokens": 6, "audio_tokens": 5}}}}
{"event_id": "event_S18", "type": "session.finished"}"""

EXAMPLE_TEXT_MODE = """\
{"event_id": "event_T9", "type": "response.text.text", "response_id": "resp_R1", "item_id": "item_T1", "output_index": 0, "content_index": 0, "text": "The weather is"}
{"event_id": "event_T13", "type": "response.text.done", "response_id": "resp_R1", "item_id": "item_T1", "output_index": 0, "content_index": 0, "text": "The weather is nice today."}"""

EXAMPLE_ERRORS = """\
{"event_id": "event_E1", "type": "error",
 "error": {"type": "invalid_request_error", "code": "invalid_value",
           "message": "Invalid modalities: ['audio']. Supported combinations are: ['text'] and ['audio', 'text'].",
           "param": "session.modalities"}}"""

EXAMPLE_ASR_FAILED = """\
{"event_id": "event_E2", "type": "conversation.item.input_audio_transcription.failed", "item_id": "item_A4", "content_index": 0,
 "error": {"code": "InternalError", "message": "recognition failed", "param": null}}"""

EXAMPLE_MANUAL_ACKS = """\
{"event_id": "event_M1", "type": "input_audio_buffer.committed"}
{"event_id": "event_M2", "type": "input_audio_buffer.cleared"}"""

SDK_1X_DEFAULT_UPDATE = """\
  {"event_id": "event_ec94…", "type": "session.update",
   "session": {"modalities": ["text", "audio"], "voice": "Tina",
               "input_audio_format": "pcm16", "output_audio_format": "pcm16",
               "input_audio_transcription": {"model": null},
               "turn_detection": {"type": "server_vad", "threshold": 0.2, "prefix_padding_ms": 300, "silence_duration_ms": 800},
               "translation": {"language": "en"}}}"""
"""DASHSCOPE.md §5.6: what ``OmniRealtimeConversation.update_session()`` sends by default."""

ELIDED_DELTA = ("AAABAAIA…", "AAABAAIA")
"""The doc elides the base64 audio with "…"; the decodable prefix is 6 bytes of PCM."""


def example_frames() -> list[str]:
    """S2…S18 of §5.3, one frame each, with the elided audio made decodable."""
    return [line.replace(*ELIDED_DELTA) for line in EXAMPLE_SEQUENCE.splitlines()]


def frame_dict(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(text)
    return parsed


# ------------------------------------------------------------------------ valid frames by name

_BY_TYPE = {frame_dict(f)["type"]: frame_dict(f) for f in example_frames()}
SERVER_FRAMES: dict[str, dict[str, Any]] = {
    **_BY_TYPE,
    "session.created": frame_dict(EXAMPLE_SESSION_CREATED),
    "error": frame_dict(EXAMPLE_ERRORS),
    "fatal-error": {
        "event_id": "event_F1",
        "type": "error",
        "error": {"type": "server_error", "code": "InternalError", "message": "boom"},
    },
    **{frame_dict(f)["type"]: frame_dict(f) for f in EXAMPLE_TEXT_MODE.splitlines()},
    "conversation.item.input_audio_transcription.failed": frame_dict(EXAMPLE_ASR_FAILED),
    **{frame_dict(f)["type"]: frame_dict(f) for f in EXAMPLE_MANUAL_ACKS.splitlines()},
}
"""One valid server frame per §5.3 event type (plus a fatal error), as dicts."""

CLIENT_FRAMES: dict[str, dict[str, Any]] = {
    "session.update": frame_dict(SDK_1X_DEFAULT_UPDATE),
    "input_audio_buffer.append": {
        "event_id": "event_5b2e",
        "type": "input_audio_buffer.append",
        "audio": "AAAAAP7/AQAAAP//",
    },
    "input_image_buffer.append": {
        "event_id": "event_77aa",
        "type": "input_image_buffer.append",
        "image": "/9j/4AAQSkZJRgABAQ==",
    },
    "input_audio_buffer.commit": {"event_id": "event_9f10", "type": "input_audio_buffer.commit"},
    "input_audio_buffer.clear": {"event_id": "event_9f11", "type": "input_audio_buffer.clear"},
    "session.finish": {"event_id": "event_a2d5", "type": "session.finish"},
}
"""One valid client frame per §5.2 event type, as dicts."""

NEUTRAL_UPDATE = {
    "event_id": "event_fr01",
    "type": "session.update",
    "session": {"translation": {"language": "fr"}},
}
INVALID_UPDATE = {
    "event_id": "event_bad1",
    "type": "session.update",
    "session": {"modalities": ["audio"]},
}

# ------------------------------------------------------------------------- table checks


def check_client_step(before: ClientState, events: list[Any], after: ClientState) -> None:
    """One client input produced exactly one event, and the table allows it."""
    assert len(events) == 1, events
    (event,) = events
    if isinstance(event, m.ProtocolViolation):
        assert after is ClientState.ERROR
        return
    assert (before, type(event)) in CLIENT_TRANSITIONS, (before, event)
    assert after is CLIENT_TRANSITIONS[before, type(event)], (before, event, after)


def check_server_step(before: ServerState, events: list[Any], after: ServerState) -> None:
    """One server input produced exactly one event; outside the table only BadRequest."""
    assert len(events) == 1, events
    assert after is not ServerState.ERROR  # a client can never push the server into ERROR
    (event,) = events
    key = (before, type(event))
    if isinstance(event, m.BadRequest):
        assert after is before
    else:
        assert key in SERVER_TRANSITIONS, (before, event)
        assert after is SERVER_TRANSITIONS[key], (before, event, after)


# -------------------------------------------------------------------------------- the pair


class Pair:
    """A RealtimeClient wired to a RealtimeServer over a perfect in-memory wire."""

    def __init__(self, model: str = MODEL) -> None:
        self.client = RealtimeClient(event_ids=event_ids())
        self.server = RealtimeServer(model, ids=server_ids(), session_id=SESSION_ID)
        self.wire: list[tuple[Side, bytes | str]] = []
        """Every frame sent, with the side that sent it."""
        self.sources: dict[str, str] = {}
        """Translation item → ASR item, from the CreateItem commands (an independent oracle)."""

    def core(self, side: Side) -> Core:
        return self.client if side == "client" else self.server

    def last_frame(self) -> Any:
        frame = self.wire[-1][1]
        return frame if isinstance(frame, bytes) else json.loads(frame)

    def deliver(self, side: Side, data: bytes | str | None) -> list[Any]:
        """Feed raw ``data`` to ``side``'s receive_data; the events, checked against the table."""
        if side == "client":
            before_c = self.client.state
            self.client.receive_data(data)
            events = list(self.client.events())
            check_client_step(before_c, events, self.client.state)
        else:
            before_s = self.server.state
            self.server.receive_data(data)
            events = list(self.server.events())
            check_server_step(before_s, events, self.server.state)
        return events

    def send(
        self, side: Side, commands: Any, expect: Literal["match"] | list[Any] | None = "match"
    ) -> list[Any]:
        """Send ``commands`` from ``side``; deliver each frame to the other side.

        ``expect="match"`` asserts the observed events are the commands' mirrors; a
        list asserts equality; ``None`` checks only the state tables.
        """
        if not isinstance(commands, list):
            commands = [commands]
        receiver: Side = "server" if side == "client" else "client"
        observed: list[Any] = []
        mirrored: list[Any] = []
        for command in commands:
            before = self.server.session
            frame = self.core(side).send(command)
            self.wire.append((side, frame))
            mirrored.append(self.mirror(command, frame, before))
            observed.extend(self.deliver(receiver, frame))
        if expect == "match":
            assert observed == mirrored
        elif expect is not None:
            assert observed == expect
        return observed

    def mirror(self, command: Any, frame: str, server_session: Any) -> Any:
        """The event the peer should observe for ``command`` (sent as ``frame``)."""
        event_id = json.loads(frame).get("event_id")
        server = self.server
        part = "audio" if server.audio_output else "text"
        source = self.sources.get(getattr(command, "item_id", ""))
        match command:
            case m.UpdateSession(settings):
                update = settings.to_wire()
                merged = merge_session(server_session, update, server.default)
                return m.SessionUpdateRequested(event_id, update, merged)
            case m.AppendAudio(pcm):
                return m.AudioAppended(event_id, pcm)
            case m.AppendImage(jpeg):
                return m.ImageAppended(event_id, jpeg)
            case m.Commit():
                return m.CommitRequested(event_id)
            case m.Clear():
                return m.ClearRequested(event_id)
            case m.FinishSession():
                return m.FinishRequested(event_id)
            case m.CreateSession():
                return m.SessionCreated(server.default)
            case m.ConfirmSession():
                return m.SessionUpdated(server.session)
            case m.SendError(code, message, param, offending):
                return m.ServerError("invalid_request_error", code, message, param, offending)
            case m.FailSession(code, message, kind, param, offending):
                return m.FatalServerError(kind, code, message, param, offending)
            case m.StartSpeech(ms, item_id):
                return m.SpeechStarted(ms, item_id)
            case m.StopSpeech(ms, item_id):
                return m.SpeechStopped(ms, item_id)
            case m.AckCommit(item_id, previous):
                return m.AudioCommitted(item_id, previous)
            case m.AckClear():
                return m.AudioCleared()
            case m.CreateItem(item_id, previous, role):
                if previous is not None and role != "user":
                    self.sources[item_id] = previous
                return m.ItemCreated(item_id, previous, role)
            case m.SendSourcePartial(item_id, text, stash, language, emotion):
                return m.SourcePartial(item_id, text, stash, language, emotion)
            case m.SendSourceFinal(item_id, transcript, language, emotion):
                return m.SourceFinal(item_id, transcript, language, emotion)
            case m.SendSourceFailed(item_id, code, message):
                return m.SourceFailed(item_id, code, message)
            case m.CreateResponse(response_id):
                return m.ResponseCreated(response_id)
            case m.AddOutputItem(response_id, item_id):
                return m.OutputItemAdded(response_id, item_id)
            case m.AddContentPart(response_id, item_id):
                return m.ContentPartAdded(response_id, item_id, part)
            case m.SendTranslationPartial(response_id, item_id, text, stash):
                return m.TranslationPartial(response_id, item_id, text, stash, source)
            case m.SendAudioDelta(response_id, item_id, pcm):
                return m.AudioDelta(response_id, item_id, pcm, source)
            case m.SendTranslationFinal(response_id, item_id, text):
                return m.TranslationFinal(response_id, item_id, text, source)
            case m.FinishAudio(response_id, item_id):
                return m.AudioDone(response_id, item_id)
            case m.FinishContentPart(response_id, item_id, text):
                return m.ContentPartDone(response_id, item_id, part, text)
            case m.FinishOutputItem(response_id, item_id):
                return m.OutputItemDone(response_id, item_id, "completed")
            case m.FinishResponse(response_id, item_id, _, usage, status):
                return m.ResponseDone(response_id, status, usage or WireUsage(), source)
            case m.FinishSessionReply():
                return m.SessionFinished()
        raise AssertionError(f"no mirror for {command!r}")

    def close(self) -> tuple[list[Any], list[Any]]:
        """The transport closes under both sides; returns (client events, server events)."""
        return self.deliver("client", None), self.deliver("server", None)

    # ---- drivers: reach a state through a real sequence

    def create(self) -> None:
        """CONNECTING/CONNECTED → READY/ACTIVE."""
        self.send("server", m.CreateSession())

    def configure(self, settings: SessionSettings = SETTINGS) -> None:
        """… → CONFIGURING: session.update sent and received, not yet confirmed."""
        self.create()
        self.send("client", m.UpdateSession(settings))

    def stream(self, settings: SessionSettings = SETTINGS) -> None:
        """… → STREAMING/ACTIVE."""
        self.configure(settings)
        self.send("server", m.ConfirmSession())

    def finish(self, settings: SessionSettings = SETTINGS) -> None:
        """… → FINISHING on both sides."""
        self.stream(settings)
        self.send("client", m.FinishSession())

    def finished(self) -> None:
        """… → FINISHED on both sides."""
        self.finish()
        self.send("server", m.FinishSessionReply())

    def states(self) -> tuple[ClientState, ServerState]:
        return self.client.state, self.server.state


LIVE_CLIENT = [s for s in ClientState if s is not ClientState.ERROR]
LIVE_SERVER = [s for s in ServerState if s is not ServerState.ERROR]


def pair_in(state: ClientState) -> Pair:
    """A pair whose client is in ``state`` (not ERROR) and server in its peer state."""
    pair = Pair()
    if state is ClientState.READY:
        pair.create()
    elif state is ClientState.CONFIGURING:
        pair.configure()
    elif state is ClientState.STREAMING:
        pair.stream()
    elif state is ClientState.FINISHING:
        pair.finish()
    elif state is ClientState.FINISHED:
        pair.finished()
    elif state is ClientState.FAILED:
        pair.stream()
        pair.send("server", m.FailSession("InternalError", "boom"))
    elif state is ClientState.CLOSED:
        pair.stream()
        pair.close()
    elif state is ClientState.ERROR:
        raise ValueError("use client_in for ERROR: one side reaches it alone")
    assert pair.states() == (state, PEER_STATE[state])
    return pair


def client_in(state: ClientState) -> RealtimeClient:
    """A client core in ``state``; ERROR by sending audio before session.created."""
    if state is not ClientState.ERROR:
        return pair_in(state).client
    client = Pair().client
    try:
        client.send(m.AppendAudio(PCM))
    except LocalProtocolError:
        pass
    assert client.state is ClientState.ERROR
    return client


OPEN_RESPONSE = ("resp_open", "item_open")
"""The response a loaded server has open (ACTIVE/FINISHING)."""


_CLIENT_PEER = {
    ServerState.CONNECTED: ClientState.CONNECTING,
    ServerState.ACTIVE: ClientState.STREAMING,
    ServerState.FINISHING: ClientState.FINISHING,
    ServerState.FINISHED: ClientState.FINISHED,
    ServerState.FAILED: ClientState.FAILED,
    ServerState.CLOSED: ClientState.CLOSED,
}


def server_in(state: ServerState, *, loaded: bool = False) -> RealtimeServer:
    """A server core in ``state``; ERROR by confirming an update nobody sent.

    ``loaded`` (CONNECTED, ACTIVE, FINISHING): the server also holds an unconfirmed
    ``session.update`` and, once active, the open response OPEN_RESPONSE.
    """
    if state is ServerState.ERROR:
        server = Pair().server
        try:
            server.send(m.ConfirmSession())
        except LocalProtocolError:
            pass
        assert server.state is ServerState.ERROR
        return server
    if not loaded:
        return pair_in(_CLIENT_PEER[state]).server
    server = Pair().server
    if state is not ServerState.CONNECTED:
        server.send(m.CreateSession())
        server.send(m.CreateResponse(*OPEN_RESPONSE))
    server.receive_data(dumps(NEUTRAL_UPDATE))
    if state is ServerState.FINISHING:
        server.receive_data(dumps(CLIENT_FRAMES["session.finish"]))
    list(server.events())
    assert server.state is state, (server.state, state)
    return server


def copy_frame(name: str, **changes: Any) -> dict[str, Any]:
    """A deep copy of SERVER_FRAMES[name] with top-level ``changes``."""
    frame = copy.deepcopy(SERVER_FRAMES[name])
    frame.update(changes)
    return frame


def decoded(frame: str) -> Any:
    return msgspec.json.decode(frame)
