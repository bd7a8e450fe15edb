"""Hostile frames: what a broken or malicious peer can send never breaks a core.

A client fed any server frame, in any live state, yields exactly one event: the
normal one when the frame really is valid, an ``UnknownEvent``, or a
``ProtocolViolation`` that leaves it in ERROR. A server fed any client frame
yields at most one event and never leaves its state for ERROR: invalid input is
a ``BadRequest``. Neither ever raises from ``receive_data`` outside ERROR.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from helpers import (
    CLIENT_FRAMES,
    FINAL,
    OTHER_TASK_ID,
    PCM,
    SERVER_FRAMES,
    TASK_ID,
    WIRE_ACTION,
    WIRE_EVENT,
    check_client_step,
    check_server_step,
    client_frame,
    client_in,
    dumps,
    run_task_payload,
    server_frame,
    server_in,
)
from hostile_frames import json_values, mutated, nested
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.dashscope import messages as m
from adapters.dashscope._state import State
from adapters.dashscope.inference import MAX_TEXT_FRAME, InferenceClient, InferenceServer
from engine.errors import LocalProtocolError

LIVE = [s for s in State if s is not State.ERROR]
TASK_STATES = [State.STARTING, State.STREAMING, State.FINISHING]
KNOWN_EVENTS = {"task-started", "result-generated", "task-finished", "task-failed"}

HOSTILE = settings(
    max_examples=300,
    deadline=timedelta(seconds=2),  # generous: a hang, not a slow CI box, should trip it
    suppress_health_check=[HealthCheck.too_slow],
)

# ----------------------------------------------------------------------------- strategies


@st.composite
def reheadered(draw: st.DrawFn, templates: dict[str, dict[str, Any]], key: str) -> str:
    """A valid frame whose header ``key`` is arbitrary text (unknown names, foreign ids)."""
    frame = copy.deepcopy(draw(st.sampled_from(list(templates.values()))))
    frame["header"][key] = draw(st.text(max_size=20) | st.sampled_from([TASK_ID, OTHER_TASK_ID]))
    return dumps(frame)


@st.composite
def headless(draw: st.DrawFn, templates: dict[str, dict[str, Any]]) -> str:
    frame = copy.deepcopy(draw(st.sampled_from(list(templates.values()))))
    del frame["header"]
    return dumps(frame)


def hostile(
    templates: dict[str, dict[str, Any]], key: str, hole: tuple[str, str]
) -> st.SearchStrategy[bytes | str]:
    return st.one_of(
        st.sampled_from([dumps(f) for f in templates.values()]),
        mutated(templates),
        reheadered(templates, key),
        reheadered(templates, "task_id"),
        headless(templates),
        json_values.filter(lambda v: not isinstance(v, dict)).map(dumps),
        json_values.map(lambda v: dumps({"header": v, "payload": {}})),
        st.text(max_size=40),
        st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=8),
        st.binary(max_size=40),
        nested(hole),
    )


SERVER_SENDS = hostile(
    SERVER_FRAMES,
    "event",
    (
        f'{{"header": {{"event": "task-started", "task_id": "{TASK_ID}", "attributes": {{"x": ',
        "}}}",
    ),
)
CLIENT_SENDS = hostile(
    CLIENT_FRAMES,
    "action",
    (
        f'{{"header": {{"action": "continue-task", "task_id": "{TASK_ID}"}}, "payload": {{"x": ',
        "}}",
    ),
)

# --------------------------------------------------------------------------------- oracles


def feed_client(client: InferenceClient, frame: bytes | str) -> Any:
    """Feed one frame; check the outcome against the table and the frame itself."""
    before = client.state
    client.receive_data(frame)
    events = list(client.events())
    check_client_step(before, events, client.state)
    (event,) = events
    if isinstance(event, m.ProtocolViolation):
        return event
    assert isinstance(frame, str)
    header = json.loads(frame)["header"]
    if isinstance(event, m.UnknownEvent):
        assert header["event"] == event.name
        assert event.name not in KNOWN_EVENTS
        assert client.state is before
        return event
    assert header["event"] == WIRE_EVENT[type(event)]
    assert header.get("task_id") in (None, client.task_id) or client.task_id is None
    if isinstance(event, m.TaskFailed):
        assert (event.code, event.message) == (header["error_code"], header["error_message"])
    return event


def feed_server(server: InferenceServer, frame: bytes | str) -> Any:
    before = server.state
    server.receive_data(frame)
    events = list(server.events())
    check_server_step(before, events, server.state)
    if not events:  # ignored: only a finish-task for a task that is not ours
        assert isinstance(frame, str)
        header = json.loads(frame)["header"]
        assert header["action"] == "finish-task"
        assert header["task_id"] != server.task_id
        return None
    (event,) = events
    if isinstance(event, m.BadRequest):
        return event
    if isinstance(event, m.AudioReceived):
        assert event.pcm == frame
        return event
    assert isinstance(frame, str)
    message = json.loads(frame)
    assert message["header"]["action"] == WIRE_ACTION[type(event)]
    if isinstance(event, m.ContinueRequested):
        assert event.task_id == server.task_id
    if isinstance(event, m.RunTaskRequested):
        assert isinstance(message["payload"]["model"], str)
        assert isinstance(message["payload"]["parameters"], dict)
    return event


# ------------------------------------------------------------------------ generated frames


class TestHostileServerFrames:
    @HOSTILE
    @given(state=st.sampled_from(LIVE), frame=SERVER_SENDS)
    def test_client_survives(self, state: State, frame: bytes | str) -> None:
        """Any server frame yields one event: the valid one, UnknownEvent, or a violation."""
        feed_client(client_in(state), frame)

    @settings(max_examples=50, deadline=None)
    @given(state=st.sampled_from(LIVE), frame=SERVER_SENDS)
    def test_violation_is_sticky(self, state: State, frame: bytes | str) -> None:
        """After a violation, every later input raises instead of being half-parsed."""
        client = client_in(state)
        if isinstance(feed_client(client, frame), m.ProtocolViolation):
            with pytest.raises(LocalProtocolError, match="in ERROR state"):
                client.receive_data(dumps(SERVER_FRAMES["task-started"]))
            with pytest.raises(LocalProtocolError, match="in ERROR state"):
                client.send(m.FinishTask())
            assert client.state is State.ERROR


class TestHostileClientFrames:
    @HOSTILE
    @given(state=st.sampled_from(LIVE), frame=CLIENT_SENDS)
    def test_server_survives(self, state: State, frame: bytes | str) -> None:
        """Any client frame yields at most one event, and invalid ones are BadRequest."""
        feed_server(server_in(state), frame)

    @settings(max_examples=50, deadline=None)
    @given(frames=st.lists(CLIENT_SENDS, max_size=8))
    def test_server_keeps_serving(self, frames: list[bytes | str]) -> None:
        """After any run of junk a streaming server still takes audio and replies, always.

        Junk can at most finish the task (a valid finish-task among it), so the server
        is STREAMING or FINISHING; either way the result goes out for our task, word for
        word, our client reads it back as that sentence, and the task can still finish.
        Planted bug it catches: a server that closes the task (IDLE) on a BadRequest
        — the old test skipped its reply unless still STREAMING and never read it.
        """
        server = server_in(State.STREAMING)
        for frame in frames:
            feed_server(server, frame)
        event(f"after the junk: {server.state.name}")
        assert server.state in (State.STREAMING, State.FINISHING)
        server.receive_data(PCM)
        assert list(server.events()) == [m.AudioReceived(PCM)]
        reply = server.send(m.SendResult(FINAL))
        assert json.loads(reply) == server_frame("result-generated", payload={"output": FINAL})
        client = client_in(State.STREAMING)
        client.receive_data(reply)
        (result,) = client.events()
        assert isinstance(result, m.ResultGenerated) and result.task_id == TASK_ID
        assert result.output.sentence is not None
        assert result.output.sentence.text == FINAL["sentence"]["text"]
        done = json.loads(server.send(m.FinishTaskReply({"duration": 2})))
        assert done["header"] == server_frame("task-finished")["header"]
        assert server.state is State.IDLE


# --------------------------------------------------------------------------- named frames


def result(sentence: dict[str, Any] | None = None, **changes: Any) -> str:
    body = copy.deepcopy(FINAL["sentence"]) if sentence is None else sentence
    body.update(changes)
    return dumps(server_frame("result-generated", payload={"output": {"sentence": body}}))


def with_word(**word: Any) -> str:
    body = copy.deepcopy(FINAL["sentence"])
    body["words"] = [{"begin_time": 0, "end_time": 1, "text": "a", "punctuation": ""} | word]
    return result(body)


INVALID_SERVER_FRAMES = {
    "begin_time as string": result(begin_time="240"),
    "text as number": result(text=42),
    "words not a list": result(words={"text": "a"}),
    "word end_time null": with_word(end_time=None),
    "sentence_end as string": result(sentence_end="true"),
    "end_time as float": result(end_time=1380.5),
    "sentence not an object": dumps(
        server_frame("result-generated", payload={"output": {"sentence": "hi"}})
    ),
    "result without payload": dumps({"header": server_frame("result-generated")["header"]}),
    "result with empty output": dumps(server_frame("result-generated", payload={"output": {}})),
    "translations not a list": dumps(
        server_frame("result-generated", payload={"output": {"translations": {"lang": "en"}}})
    ),
    "usage not an object": dumps(
        server_frame("result-generated", payload={"output": FINAL, "usage": 3})
    ),
    "task-failed without error_code": dumps(
        server_frame("task-failed", error_message="request timeout after 23 seconds.")
    ),
    "task-failed without error_message": dumps(server_frame("task-failed", error_code="X")),
    "error_code as number": dumps(server_frame("task-failed", error_code=44, error_message="x")),
    "foreign task id": dumps(server_frame("result-generated", OTHER_TASK_ID, {"output": FINAL})),
    "event not a string": dumps(server_frame("task-started") | {"header": {"event": 1}}),
    "missing header": dumps({"payload": {"output": FINAL}}),
    "header not an object": dumps({"header": "task-started", "payload": {}}),
    "attributes null": dumps(server_frame("task-started", attributes=None)),
    "non-object JSON": "[1, 2, 3]",
    "JSON string": '"task-started"',
    "malformed JSON": '{"header": {"event": "task-started"',
    "empty text": "",
    "lone surrogate": '{"header": {"event": "\ud800"}}',
    "nesting past the recursion limit": '{"header": {"event": "task-started", "attributes": {"x": '
    + "[" * 100_000
    + "]" * 100_000
    + "}}}",
    "binary frame": b'{"header": {"event": "task-started"}}',
    "over 1 MiB": result(text="x" * MAX_TEXT_FRAME),
}


class TestInvalidServerFrames:
    @pytest.mark.parametrize(
        "frame", INVALID_SERVER_FRAMES.values(), ids=INVALID_SERVER_FRAMES.keys()
    )
    def test_violation(self, frame: bytes | str) -> None:
        """Each malformed or mistyped frame is a ProtocolViolation, and the client is in ERROR."""
        client = client_in(State.STREAMING)
        assert isinstance(feed_client(client, frame), m.ProtocolViolation)
        assert client.state is State.ERROR


VALID_SERVER_VARIANTS = {
    "extra header and payload fields": (
        dumps(
            server_frame(
                "result-generated", payload={"output": FINAL, "request_id": "r", "future": [1]}
            )
            | {"extra": {"deep": [1, {"x": None}]}}
        ),
        m.ResultGenerated,
    ),
    "no task_id in header": (
        dumps(server_frame("result-generated", None, {"output": FINAL})),
        m.ResultGenerated,
    ),
    "usage null": (
        dumps(server_frame("result-generated", payload={"output": FINAL, "usage": None})),
        m.ResultGenerated,
    ),
    "sentence without sentence_id": (
        result(sentence_id=None).replace('"sentence_id": null, ', ""),
        m.ResultGenerated,
    ),
    "task-finished without payload": (
        dumps({"header": server_frame("task-finished")["header"]}),
        m.TaskFinished,
    ),
    "task-finished with finished flag": (
        dumps(server_frame("task-finished", payload={"output": {"finished": True}})),
        m.TaskFinished,
    ),
    "unknown event name": (dumps(server_frame("speech-started", OTHER_TASK_ID)), m.UnknownEvent),
    "big but legal text": (result(text="語" * (MAX_TEXT_FRAME // 2)), m.ResultGenerated),
}


class TestValidServerVariants:
    @pytest.mark.parametrize(
        ("frame", "kind"), VALID_SERVER_VARIANTS.values(), ids=VALID_SERVER_VARIANTS.keys()
    )
    def test_accepted(self, frame: str, kind: type[Any]) -> None:
        """Venue payloads grow fields and omit optional ones: such frames still decode."""
        client = client_in(State.STREAMING)
        assert type(feed_client(client, frame)) is kind

    def test_exactly_the_limit(self) -> None:
        """A frame of exactly MAX_TEXT_FRAME characters is accepted, one more is not."""
        padding = MAX_TEXT_FRAME - len(result(text=""))
        frame = result(text="x" * padding)
        assert len(frame) == MAX_TEXT_FRAME
        assert isinstance(feed_client(client_in(State.STREAMING), frame), m.ResultGenerated)
        longer = result(text="x" * (padding + 1))
        assert isinstance(feed_client(client_in(State.STREAMING), longer), m.ProtocolViolation)

    @pytest.mark.parametrize("state", TASK_STATES)
    def test_huge_frame_in_every_task_state(self, state: State) -> None:
        """An oversized frame is refused before it is parsed, whatever the state."""
        event = feed_client(client_in(state), "{" * (MAX_TEXT_FRAME + 1))
        assert isinstance(event, m.ProtocolViolation)
        assert "exceeds" in event.reason


INVALID_CLIENT_FRAMES = {
    "task_id as number": dumps({"header": {"action": "finish-task", "task_id": 5}, "payload": {}}),
    "task_id missing": dumps({"header": {"action": "finish-task"}, "payload": {}}),
    "action missing": dumps({"header": {"task_id": TASK_ID}, "payload": {}}),
    "unknown action": dumps(client_frame("pause-task")),
    "run-task without model": dumps(
        client_frame(
            "run-task", payload={k: v for k, v in run_task_payload().items() if k != "model"}
        )
    ),
    "run-task parameters as list": dumps(
        client_frame("run-task", payload=run_task_payload() | {"parameters": []})
    ),
    "payload not an object": dumps(client_frame("run-task") | {"payload": "x"}),
    "missing header": dumps({"payload": run_task_payload()}),
    "non-object JSON": "[]",
    "malformed JSON": "{",
    "lone surrogate": '{"header": {"action": "\udfff"}}',
    "nesting past the recursion limit": '{"header": {"action": "run-task", "task_id": "t"}, "payload": {"x": '
    + "[" * 100_000
    + "]" * 100_000
    + "}}",
    "over 1 MiB": dumps(
        client_frame("continue-task", payload={"input": {"x": "y" * MAX_TEXT_FRAME}})
    ),
}


class TestInvalidClientFrames:
    @pytest.mark.parametrize("state", LIVE)
    @pytest.mark.parametrize(
        "frame", INVALID_CLIENT_FRAMES.values(), ids=INVALID_CLIENT_FRAMES.keys()
    )
    def test_bad_request(self, frame: str, state: State) -> None:
        """Each malformed client frame is a BadRequest and leaves the server's state alone."""
        server = server_in(state)
        assert isinstance(feed_server(server, frame), m.BadRequest)
        assert server.state is state

    def test_run_task_lenient_fields(self) -> None:
        """run-task tolerates a non-object input and missing task_group/task/function."""
        payload = {"model": "m", "parameters": {}, "input": [1]}
        event = feed_server(server_in(State.IDLE), dumps(client_frame("run-task", payload=payload)))
        assert event == m.RunTaskRequested(
            task_id=TASK_ID,
            model="m",
            parameters={},
            input={},
            task_group=None,
            task=None,
            function=None,
            streaming="duplex",
        )
