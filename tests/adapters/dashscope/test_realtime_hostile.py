"""Hostile frames: what a broken or malicious peer can send never breaks a realtime core.

A client fed any server frame, in any live state, yields exactly one event: the
normal one when the frame really is valid, an ``UnknownEvent`` for a type it
does not know, or a ``ProtocolViolation`` that leaves it in ERROR. A server fed
any client frame yields exactly one event and never leaves its state for
ERROR: invalid input is a ``BadRequest``. Neither raises from ``receive_data``
outside ERROR.
"""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from hostile_frames import json_values, mutated, nested
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from realtime_helpers import (
    CLIENT_FRAMES,
    LIVE_CLIENT,
    LIVE_SERVER,
    PCM,
    SERVER_FRAMES,
    check_client_step,
    check_server_step,
    client_in,
    copy_frame,
    dumps,
    server_in,
)

from adapters.dashscope import realtime_messages as m
from adapters.dashscope._realtime_state import ClientState, ServerState
from adapters.dashscope.realtime import MAX_TEXT_FRAME, RealtimeClient, RealtimeServer
from adapters.dashscope.realtime_wire import CLIENT_TYPES, SERVER_TYPES
from engine.errors import LocalProtocolError

HOSTILE = settings(
    max_examples=250,
    deadline=timedelta(seconds=2),  # generous: a hang, not a slow CI box, should trip it
    suppress_health_check=[HealthCheck.too_slow],
)
STREAM_STATES = [ClientState.STREAMING, ClientState.FINISHING]

# What each normalized client event may come from (TranslationPartial: two frame types …).
EVENT_TYPES: dict[type[Any], set[str]] = {
    m.SessionCreated: {"session.created"},
    m.SessionUpdated: {"session.updated"},
    m.SpeechStarted: {"input_audio_buffer.speech_started"},
    m.SpeechStopped: {"input_audio_buffer.speech_stopped"},
    m.AudioCommitted: {"input_audio_buffer.committed"},
    m.AudioCleared: {"input_audio_buffer.cleared"},
    m.ItemCreated: {"conversation.item.created"},
    m.SourcePartial: {"conversation.item.input_audio_transcription.text"},
    m.SourceFinal: {"conversation.item.input_audio_transcription.completed"},
    m.SourceFailed: {"conversation.item.input_audio_transcription.failed"},
    m.ResponseCreated: {"response.created"},
    m.OutputItemAdded: {"response.output_item.added"},
    m.ContentPartAdded: {"response.content_part.added"},
    m.TranslationPartial: {"response.audio_transcript.text", "response.text.text"},
    m.TranslationFinal: {"response.audio_transcript.done", "response.text.done"},
    m.AudioDelta: {"response.audio.delta"},
    m.AudioDone: {"response.audio.done"},
    m.ContentPartDone: {"response.content_part.done"},
    m.OutputItemDone: {"response.output_item.done"},
    m.ResponseDone: {"response.done"},
    m.ServerError: {"error"},
    m.FatalServerError: {"error"},
    m.SessionFinished: {"session.finished"},
}
REQUEST_TYPES: dict[type[Any], str] = {
    m.SessionUpdateRequested: "session.update",
    m.SessionUpdateRejected: "session.update",
    m.AudioAppended: "input_audio_buffer.append",
    m.ImageAppended: "input_image_buffer.append",
    m.CommitRequested: "input_audio_buffer.commit",
    m.ClearRequested: "input_audio_buffer.clear",
    m.FinishRequested: "session.finish",
}

# ----------------------------------------------------------------------------- strategies


@st.composite
def retyped(draw: st.DrawFn, templates: dict[str, dict[str, Any]], known: frozenset[str]) -> str:
    """A valid frame whose ``type`` is another known type or arbitrary text."""
    frame = copy.deepcopy(draw(st.sampled_from(list(templates.values()))))
    frame["type"] = draw(st.sampled_from(sorted(known)) | st.text(max_size=20))
    return dumps(frame)


def hostile(
    templates: dict[str, dict[str, Any]], known: frozenset[str], hole: tuple[str, str]
) -> st.SearchStrategy[bytes | str]:
    return st.one_of(
        st.sampled_from([dumps(f) for f in templates.values()]),
        mutated(templates),
        retyped(templates, known),
        json_values.filter(lambda v: not isinstance(v, dict)).map(dumps),
        st.dictionaries(st.text(max_size=6), json_values, max_size=3).map(dumps),
        st.text(max_size=40),
        st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=8),
        st.binary(max_size=40),
        nested(hole),
    )


SERVER_SENDS = hostile(
    SERVER_FRAMES,
    SERVER_TYPES,
    ('{"type": "conversation.item.created", "item": {"id": "i", "content": [{"x": ', "}]}}"),
)
CLIENT_SENDS = hostile(
    CLIENT_FRAMES,
    CLIENT_TYPES,
    (
        '{"type": "session.update", "session": {"translation": {"same_language_skip_options": ',
        "}}}",
    ),
)

# --------------------------------------------------------------------------------- oracles


def feed_client(client: RealtimeClient, frame: bytes | str) -> Any:
    """Feed one frame; check the outcome against the table and the frame itself."""
    before = client.state
    client.receive_data(frame)
    events = list(client.events())
    check_client_step(before, events, client.state)
    (event,) = events
    if isinstance(event, m.ProtocolViolation):
        return event
    assert isinstance(frame, str)
    kind = json.loads(frame)["type"]
    if isinstance(event, m.UnknownEvent):
        assert kind == event.name
        assert kind not in SERVER_TYPES
        assert client.state is before
        return event
    assert kind in EVENT_TYPES[type(event)]
    return event


def feed_server(server: RealtimeServer, frame: bytes | str) -> Any:
    before = server.state
    server.receive_data(frame)
    events = list(server.events())
    check_server_step(before, events, server.state)
    (event,) = events
    if isinstance(event, m.BadRequest):
        return event
    assert isinstance(frame, str)
    message = json.loads(frame)
    assert message["type"] == REQUEST_TYPES[type(event)]
    if isinstance(event, m.AudioAppended):
        assert base64.b64encode(event.pcm).decode() == message["audio"]
    return event


# ------------------------------------------------------------------------ generated frames


class TestHostileServerFrames:
    @HOSTILE
    @given(state=st.sampled_from(LIVE_CLIENT), frame=SERVER_SENDS)
    def test_client_survives(self, state: ClientState, frame: bytes | str) -> None:
        """Any server frame yields one event: the valid one, UnknownEvent, or a violation."""
        feed_client(client_in(state), frame)

    @settings(max_examples=60, deadline=None)
    @given(state=st.sampled_from(STREAM_STATES), frames=st.lists(SERVER_SENDS, max_size=6))
    def test_violation_is_sticky(self, state: ClientState, frames: list[bytes | str]) -> None:
        """After a violation every later input raises instead of being half-parsed."""
        client = client_in(state)
        for frame in frames:
            if isinstance(feed_client(client, frame), m.ProtocolViolation):
                with pytest.raises(LocalProtocolError, match="in ERROR state"):
                    client.receive_data(dumps(SERVER_FRAMES["session.created"]))
                with pytest.raises(LocalProtocolError, match="in ERROR state"):
                    client.send(m.FinishSession())
                assert client.state is ClientState.ERROR
                return


class TestHostileClientFrames:
    @HOSTILE
    @given(state=st.sampled_from(LIVE_SERVER), frame=CLIENT_SENDS)
    def test_server_survives(self, state: ServerState, frame: bytes | str) -> None:
        """Any client frame yields one event, and invalid ones are BadRequest."""
        feed_server(server_in(state), frame)

    @settings(max_examples=60, deadline=None)
    @given(frames=st.lists(CLIENT_SENDS, max_size=8))
    def test_server_keeps_serving(self, frames: list[bytes | str]) -> None:
        """After any run of junk an active server still confirms, answers and finishes, always.

        Junk can at most finish the session (a valid session.finish among it), so the
        server is ACTIVE or FINISHING; either way each accepted session.update is
        confirmed, a translation response goes out in §5.4 order, our client reads it
        back as the text sent, and the session can still finish. Planted bug it catches:
        a server that leaves ACTIVE on a BadRequest — the old test skipped its reply
        unless still ACTIVE and never read it.
        """
        server = server_in(ServerState.ACTIVE)
        for frame in frames:
            feed_server(server, frame)
        event(f"after the junk: {server.state.name}, {server.pending_confirms} updates")
        assert server.state in (ServerState.ACTIVE, ServerState.FINISHING)
        updates = server.pending_confirms
        replies = [server.send(m.ConfirmSession()) for _ in range(updates)]
        replies += server.send_all(server.response_commands("ok", source_item_id=None))
        kinds = [json.loads(reply)["type"] for reply in replies]
        transcript = "response.audio_transcript" if server.audio_output else "response.text"
        audio = ["response.audio.done"] if server.audio_output else []
        assert kinds == [
            *["session.updated"] * updates,
            "conversation.item.created",
            "response.created",
            "response.output_item.added",
            "response.content_part.added",
            f"{transcript}.done",
            *audio,
            "response.content_part.done",
            "response.output_item.done",
            "response.done",
        ]
        client = client_in(ClientState.STREAMING)
        for reply in replies[updates:]:
            client.receive_data(reply)
        read = list(client.events())
        (final,) = [e for e in read if isinstance(e, m.TranslationFinal)]
        assert final.text == "ok"
        assert isinstance(read[-1], m.ResponseDone) and read[-1].status == "completed"
        assert client.state is ClientState.STREAMING
        if server.state is ServerState.ACTIVE:
            server.receive_data(dumps(CLIENT_FRAMES["session.finish"]))
            assert [type(e) for e in server.events()] == [m.FinishRequested]
        assert json.loads(server.send(m.FinishSessionReply()))["type"] == "session.finished"
        assert server.state is ServerState.FINISHED


# --------------------------------------------------------------------------- named frames


def mutate(name: str, path: tuple[Any, ...], value: Any = ..., /) -> str:
    """SERVER_FRAMES[name] with the value at ``path`` replaced (or deleted with ``...``)."""
    frame = copy_frame(name)
    parent = frame
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return dumps(frame)


INVALID_SERVER_FRAMES = {
    "delta not base64": mutate("response.audio.delta", ("delta",), "AAABAAIA…"),
    "delta a number": mutate("response.audio.delta", ("delta",), 12),
    "audio_start_ms a string": mutate(
        "input_audio_buffer.speech_started", ("audio_start_ms",), "420"
    ),
    "audio_start_ms missing": mutate("input_audio_buffer.speech_started", ("audio_start_ms",)),
    "error without type": mutate("error", ("error", "type")),
    "error not an object": mutate("error", ("error",), "boom"),
    "session without id": mutate("session.created", ("session", "id")),
    "session id null": mutate("session.created", ("session", "id"), None),
    "modalities a string": mutate("session.created", ("session", "modalities"), "text"),
    "response without status": mutate("response.done", ("response", "status")),
    "usage a list": mutate("response.done", ("response", "usage"), [61]),
    "item without id": mutate("conversation.item.created", ("item", "id")),
    "transcript missing": mutate(
        "conversation.item.input_audio_transcription.completed", ("transcript",)
    ),
    "text a number": mutate("response.audio_transcript.text", ("text",), 5),
    "stash null": mutate("response.audio_transcript.text", ("stash",), None),
    "response_id missing": mutate("response.audio_transcript.done", ("response_id",)),
    "content_index a float": mutate("response.audio.done", ("content_index",), 0.5),
    "part without type": mutate("response.content_part.done", ("part", "type")),
    "type missing": mutate("response.audio.done", ("type",)),
    "type a number": mutate("response.audio.done", ("type",), 7),
    "non-object JSON": "[1, 2, 3]",
    "JSON string": '"session.created"',
    "malformed JSON": '{"type": "session.created"',
    "empty text": "",
    "lone surrogate": '{"type": "\ud800"}',
    "nesting past the recursion limit": '{"type": "conversation.item.created", "item": {"id": "i", "content": [{"x": '
    + "[" * 100_000
    + "]" * 100_000
    + "}]}}",
    "binary frame": b'{"type": "session.finished"}',
    "over 1 MiB": mutate("response.audio_transcript.text", ("text",), "x" * MAX_TEXT_FRAME),
}


class TestInvalidServerFrames:
    @pytest.mark.parametrize(
        "frame", INVALID_SERVER_FRAMES.values(), ids=INVALID_SERVER_FRAMES.keys()
    )
    def test_violation(self, frame: bytes | str) -> None:
        """Each malformed or mistyped frame is a ProtocolViolation, and the client is in ERROR."""
        client = client_in(ClientState.STREAMING)
        assert isinstance(feed_client(client, frame), m.ProtocolViolation)
        assert client.state is ClientState.ERROR


VALID_SERVER_VARIANTS = {
    "extra fields everywhere": (
        dumps(
            copy_frame("response.done", future={"x": [1]})
            | {"response": copy_frame("response.done")["response"] | {"status_details": None}}
        ),
        m.ResponseDone,
    ),
    "no event_id": (mutate("response.audio.done", ("event_id",)), m.AudioDone),
    "speech with item_id": (
        mutate("input_audio_buffer.speech_started", ("item_id",), "item_A1"),
        m.SpeechStarted,
    ),
    "language and emotion null": (
        dumps(
            copy_frame(
                "conversation.item.input_audio_transcription.text", language=None, emotion=None
            )
        ),
        m.SourcePartial,
    ),
    "no stash": (
        mutate("conversation.item.input_audio_transcription.text", ("stash",)),
        m.SourcePartial,
    ),
    "no previous_item_id": (
        mutate("conversation.item.created", ("previous_item_id",)),
        m.ItemCreated,
    ),
    "response.done without usage": (mutate("response.done", ("response", "usage")), m.ResponseDone),
    "error with only a type": (
        dumps({"type": "error", "error": {"type": "server_error"}}),
        m.FatalServerError,
    ),
    "unknown event type": (dumps({"type": "response.audio_transcript.delta"}), m.UnknownEvent),
    "unknown type, odd body": (dumps({"type": "x", "event_id": 5, "y": [None]}), m.UnknownEvent),
    "big but legal text": (
        mutate("response.audio_transcript.text", ("text",), "語" * (MAX_TEXT_FRAME // 2)),
        m.TranslationPartial,
    ),
}


class TestValidServerVariants:
    @pytest.mark.parametrize(
        ("frame", "kind"), VALID_SERVER_VARIANTS.values(), ids=VALID_SERVER_VARIANTS.keys()
    )
    def test_accepted(self, frame: str, kind: type[Any]) -> None:
        """Venue payloads grow fields and omit optional ones: such frames still decode."""
        assert type(feed_client(client_in(ClientState.STREAMING), frame)) is kind

    def test_exactly_the_limit(self) -> None:
        """A frame of exactly MAX_TEXT_FRAME characters is accepted, one more is not."""
        padding = MAX_TEXT_FRAME - len(mutate("response.audio_transcript.text", ("text",), ""))
        frame = mutate("response.audio_transcript.text", ("text",), "x" * padding)
        assert len(frame) == MAX_TEXT_FRAME
        assert isinstance(
            feed_client(client_in(ClientState.STREAMING), frame), m.TranslationPartial
        )
        longer = mutate("response.audio_transcript.text", ("text",), "x" * (padding + 1))
        event = feed_client(client_in(ClientState.STREAMING), longer)
        assert isinstance(event, m.ProtocolViolation)
        assert "exceeds" in event.reason


def client_frame(kind: str, **fields: Any) -> str:
    return dumps({"event_id": "event_x", "type": kind, **fields})


INVALID_CLIENT_FRAMES = {
    "audio not base64": client_frame("input_audio_buffer.append", audio="AAA"),
    "audio a number": client_frame("input_audio_buffer.append", audio=3),
    "audio missing": client_frame("input_audio_buffer.append"),
    "image not base64": client_frame("input_image_buffer.append", image="/9j/4AAQ…"),
    "session missing": client_frame("session.update"),
    "session not an object": client_frame("session.update", session=[]),
    "modalities a string": client_frame("session.update", session={"modalities": "text"}),
    "sample_rate a string": client_frame("session.update", session={"sample_rate": "16000"}),
    "turn_detection a string": client_frame("session.update", session={"turn_detection": "auto"}),
    "phrases not strings": client_frame(
        "session.update", session={"translation": {"corpus": {"phrases": {"a": 1}}}}
    ),
    "event_id a number": dumps({"event_id": 5, "type": "session.finish"}),
    "unknown type": client_frame("response.create", response={}),
    "type missing": dumps({"event_id": "event_x"}),
    "non-object JSON": "[]",
    "malformed JSON": "{",
    "lone surrogate": '{"type": "\udfff"}',
    "binary frame": PCM,
    "nesting past the recursion limit": '{"type": "session.update", "session": {"translation": {"same_language_skip_options": '
    + "[" * 100_000
    + "]" * 100_000
    + "}}}",
    "over 1 MiB": client_frame("input_audio_buffer.append", audio="A" * MAX_TEXT_FRAME),
}


class TestInvalidClientFrames:
    @pytest.mark.parametrize("state", LIVE_SERVER)
    @pytest.mark.parametrize(
        "frame", INVALID_CLIENT_FRAMES.values(), ids=INVALID_CLIENT_FRAMES.keys()
    )
    def test_bad_request(self, frame: bytes | str, state: ServerState) -> None:
        """Each malformed client frame is a BadRequest and leaves the server's state alone."""
        server = server_in(state)
        assert isinstance(feed_server(server, frame), m.BadRequest)
        assert server.state is state

    def test_bad_request_names_the_event(self) -> None:
        """A malformed frame of a known type keeps its event id for the error reply."""
        event = feed_server(
            server_in(ServerState.ACTIVE), INVALID_CLIENT_FRAMES["audio not base64"]
        )
        assert event.event_id == "event_x"
        assert event.reason.startswith("malformed input_audio_buffer.append")

    def test_lenient_client_fields(self) -> None:
        """No event_id, extra fields, and omni-style session fields are accepted."""
        server = server_in(ServerState.ACTIVE)
        assert feed_server(server, dumps({"type": "session.finish", "x": 1})) == (
            m.FinishRequested(None)
        )
        server = server_in(ServerState.ACTIVE)
        update = {"type": "session.update", "session": {"instructions": "be brief", "tools": []}}
        assert isinstance(feed_server(server, dumps(update)), m.SessionUpdateRequested)
