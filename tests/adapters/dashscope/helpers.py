"""Test helpers for the DashScope inference cores: a client/server pair, wire frames, drivers.

:class:`Pair` wires an :class:`InferenceClient` to an :class:`InferenceServer` the
way h11's ``ConnectionPair`` wires two connections: ``pair.send(side, commands)``
sends from one side, delivers every frame to the other side's ``receive_data`` and
returns the events observed there. Every delivery is checked against the state
tables, so any test that uses the pair also proves "no event without a table entry".
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from adapters.dashscope import messages as m
from adapters.dashscope._state import CLIENT_TRANSITIONS, SERVER_TRANSITIONS, State
from adapters.dashscope.inference import InferenceClient, InferenceServer
from engine.errors import LocalProtocolError

Side = Literal["client", "server"]
Core = InferenceClient | InferenceServer

TASK_ID = "2460889d9b42418b860a6a82c28bb02b"
OTHER_TASK_ID = "7a1c0e53a2b94f04a41a3d3e0c3b6d15"
MODEL = "paraformer-realtime-v2"
PARAMETERS: dict[str, Any] = {"sample_rate": 16000, "format": "pcm", "heartbeat": True}
PCM = b"\x01\x00" * 1600  # 100 ms of 16 kHz mono s16le

# ------------------------------------------------------- payload.output shapes (DASHSCOPE.md §3–4)

PARTIAL: dict[str, Any] = {
    "sentence": {
        "sentence_id": 1,
        "begin_time": 240,
        "end_time": None,
        "text": "Good morn",
        "heartbeat": False,
        "sentence_end": False,
        "words": [{"begin_time": 240, "end_time": 520, "text": "Good", "punctuation": ""}],
    }
}
FINAL: dict[str, Any] = {
    "sentence": {
        "sentence_id": 1,
        "begin_time": 240,
        "end_time": 1380,
        "text": "Good morning, everyone.",
        "heartbeat": False,
        "sentence_end": True,
        "words": [
            {"begin_time": 240, "end_time": 520, "text": "Good", "punctuation": ""},
            {"begin_time": 520, "end_time": 930, "text": "morning", "punctuation": ","},
            {"begin_time": 930, "end_time": 1380, "text": "everyone", "punctuation": "."},
        ],
    }
}
HEARTBEAT: dict[str, Any] = {
    "sentence": {
        "sentence_id": 0,
        "begin_time": 61000,
        "end_time": None,
        "text": "",
        "heartbeat": True,
        "sentence_end": False,
        "words": [],
    }
}
GUMMY_PARTIAL: dict[str, Any] = {
    "transcription": {
        "sentence_id": 0,
        "begin_time": 180,
        "end_time": None,
        "current_time": 1500,
        "text": "今天天",
        "sentence_end": False,
        "vad_pre_end": False,
        "words": [
            {
                "begin_time": 180,
                "end_time": 700,
                "text": "今天",
                "punctuation": "",
                "fixed": False,
                "speaker_id": None,
            },
            {
                "begin_time": 700,
                "end_time": 1500,
                "text": "天",
                "punctuation": "",
                "fixed": False,
                "speaker_id": None,
            },
        ],
    },
    "translations": [
        {
            "sentence_id": 0,
            "lang": "en",
            "begin_time": 180,
            "end_time": None,
            "current_time": 1500,
            "text": "Today the",
            "sentence_end": False,
            "vad_pre_end": False,
            "words": [
                {
                    "begin_time": 180,
                    "end_time": 1500,
                    "text": "Today the",
                    "punctuation": "",
                    "fixed": False,
                    "speaker_id": None,
                }
            ],
        }
    ],
}
GUMMY_FINAL: dict[str, Any] = {
    "transcription": {
        "sentence_id": 0,
        "begin_time": 180,
        "end_time": 2400,
        "text": "今天天气很好。",
        "sentence_end": True,
        "vad_pre_end": False,
        "words": [
            {
                "begin_time": 180,
                "end_time": 2400,
                "text": "今天天气很好。",
                "punctuation": "。",
                "fixed": True,
                "speaker_id": None,
            }
        ],
        "stash": {
            "sentence_id": 1,
            "text": "",
            "begin_time": 2400,
            "current_time": 2400,
            "words": [],
        },
    },
    "translations": [
        {
            "sentence_id": 0,
            "lang": "en",
            "begin_time": 180,
            "end_time": 2400,
            "text": "The weather is nice today.",
            "sentence_end": True,
            "vad_pre_end": False,
            "words": [
                {
                    "begin_time": 180,
                    "end_time": 2400,
                    "text": "The weather is nice today.",
                    "punctuation": ".",
                    "fixed": True,
                    "speaker_id": None,
                }
            ],
        }
    ],
}
OUTPUTS: dict[str, dict[str, Any]] = {
    "partial": PARTIAL,
    "final": FINAL,
    "gummy-partial": GUMMY_PARTIAL,
    "gummy-final": GUMMY_FINAL,
}

# ------------------------------------------------------------------------------ raw frames


def server_frame(
    event: str, task_id: str | None = TASK_ID, payload: Any = None, **header: Any
) -> dict[str, Any]:
    """A server event as a JSON-ready dict; ``task_id=None`` leaves the key out."""
    head: dict[str, Any] = {"event": event, "attributes": {}, **header}
    if task_id is not None:
        head["task_id"] = task_id
    return {"header": head, "payload": {} if payload is None else payload}


def client_frame(action: str, task_id: str = TASK_ID, payload: Any = None) -> dict[str, Any]:
    """A client action as a JSON-ready dict."""
    header = {"action": action, "task_id": task_id, "streaming": "duplex"}
    return {"header": header, "payload": {"input": {}} if payload is None else payload}


def run_task_payload(model: str = MODEL) -> dict[str, Any]:
    return {
        "task_group": "audio",
        "task": "asr",
        "function": "recognition",
        "model": model,
        "parameters": dict(PARAMETERS),
        "input": {},
    }


def dumps(frame: Any) -> str:
    """Serialise like the SDK: UTF-8, non-ASCII not escaped."""
    return json.dumps(frame, ensure_ascii=False)


SERVER_FRAMES: dict[str, dict[str, Any]] = {
    "task-started": server_frame("task-started"),
    "partial": server_frame("result-generated", payload={"output": PARTIAL}),
    "final": server_frame("result-generated", payload={"output": FINAL, "usage": {"duration": 2}}),
    "heartbeat": server_frame("result-generated", payload={"output": HEARTBEAT}),
    "gummy-partial": server_frame(
        "result-generated", payload={"output": GUMMY_PARTIAL, "usage": None}
    ),
    "gummy-final": server_frame(
        "result-generated", payload={"output": GUMMY_FINAL, "usage": {"duration": 3}}
    ),
    "task-finished": server_frame(
        "task-finished", payload={"output": {}, "usage": {"duration": 7}}
    ),
    "task-failed": server_frame(
        "task-failed", error_code="CLIENT_ERROR", error_message="request timeout after 23 seconds."
    ),
}
"""Valid server frames (DASHSCOPE.md §2.3, §3.2, §4.2), addressed to TASK_ID."""

CLIENT_FRAMES: dict[str, dict[str, Any]] = {
    "run-task": client_frame("run-task", payload=run_task_payload()),
    "continue-task": client_frame("continue-task", payload={"input": {"context": []}}),
    "finish-task": client_frame("finish-task"),
}
"""Valid client frames (DASHSCOPE.md §2.2) for TASK_ID."""

WIRE_EVENT: dict[type[Any], str] = {
    m.TaskStarted: "task-started",
    m.ResultGenerated: "result-generated",
    m.Heartbeat: "result-generated",
    m.TaskFinished: "task-finished",
    m.TaskFailed: "task-failed",
}
WIRE_ACTION: dict[type[Any], str] = {
    m.RunTaskRequested: "run-task",
    m.ContinueRequested: "continue-task",
    m.FinishRequested: "finish-task",
}

# ------------------------------------------------------------------------- table checks


def check_client_step(before: State, events: list[Any], after: State) -> None:
    """One client input produced exactly one event, and the table allows it."""
    assert len(events) == 1, events
    (event,) = events
    if isinstance(event, m.ProtocolViolation):
        assert after is State.ERROR
        return
    assert (before, type(event)) in CLIENT_TRANSITIONS, (before, event)
    assert after is CLIENT_TRANSITIONS[before, type(event)], (before, event, after)


def check_server_step(before: State, events: list[Any], after: State) -> None:
    """One server input produced at most one event; outside the table only BadRequest."""
    assert len(events) <= 1, events
    assert after is not State.ERROR  # a client can never push the server into ERROR
    if not events:
        assert after is before  # an ignored finish-task
        return
    (event,) = events
    key = (before, type(event))
    if key in SERVER_TRANSITIONS:
        assert after is SERVER_TRANSITIONS[key], (before, event, after)
    else:
        assert isinstance(event, m.BadRequest), (before, event)
        assert after is before


# -------------------------------------------------------------------------------- the pair


class Pair:
    """An InferenceClient wired to an InferenceServer over a perfect in-memory wire."""

    def __init__(self) -> None:
        self.client = InferenceClient()
        self.server = InferenceServer()
        self.wire: list[tuple[Side, bytes | str]] = []
        """Every frame sent, with the side that sent it."""

    def core(self, side: Side) -> Core:
        return self.client if side == "client" else self.server

    def last_frame(self) -> Any:
        """The last frame on the wire, parsed when it is text."""
        frame = self.wire[-1][1]
        return frame if isinstance(frame, bytes) else json.loads(frame)

    def deliver(self, side: Side, data: bytes | str | None) -> list[Any]:
        """Feed raw ``data`` to ``side``'s receive_data; return the events, checked against the table."""
        core = self.core(side)
        before = core.state
        core.receive_data(data)
        events = list(core.events())
        if side == "client":
            check_client_step(before, events, core.state)
        else:
            check_server_step(before, events, core.state)
        for event in events:
            task_id = getattr(event, "task_id", None)
            if task_id is not None:  # task ids echo: every event names the running task
                assert task_id == core.task_id, (event, core.task_id)
        return events

    def send(
        self,
        side: Side,
        commands: Any,
        expect: Literal["match"] | list[Any] | None = "match",
    ) -> list[Any]:
        """Send ``commands`` from ``side`` and deliver each frame to the other side.

        Returns the events the other side observed. ``expect="match"`` asserts they
        are the mirror images of the commands (see :func:`mirror`); a list asserts
        equality; ``None`` checks nothing beyond the state tables.
        """
        if not isinstance(commands, list):
            commands = [commands]
        sender = self.core(side)
        receiver: Side = "server" if side == "client" else "client"
        observed: list[Any] = []
        mirrored: list[Any] = []
        for command in commands:
            frame = sender.send(command)
            self.wire.append((side, frame))
            mirrored.append(mirror(sender, command))
            observed.extend(self.deliver(receiver, frame))
        if expect == "match":
            assert observed == mirrored
        elif expect is not None:
            assert observed == expect
        return observed

    def close(self) -> tuple[list[Any], list[Any]]:
        """The transport closes under both sides; returns (client events, server events)."""
        return self.deliver("client", None), self.deliver("server", None)

    # ---- drivers: reach a state through a real sequence

    def run_task(self, task_id: str = TASK_ID) -> None:
        """IDLE → STARTING on both sides."""
        self.send("client", m.RunTask(task_id, MODEL, dict(PARAMETERS)))

    def start(self, task_id: str = TASK_ID) -> None:
        """IDLE → STREAMING on both sides."""
        self.run_task(task_id)
        self.send("server", m.StartTask())

    def complete(self, task_id: str = TASK_ID) -> None:
        """IDLE → a whole task → IDLE on both sides."""
        self.start(task_id)
        self.send("client", m.FinishTask())
        self.send("server", m.FinishTaskReply({"duration": 1}))


def mirror(sender: Core, command: Any) -> Any:
    """The event the peer should observe for ``command`` just sent by ``sender``."""
    task_id = sender.task_id or ""
    match command:
        case m.RunTask(tid, model, parameters, input_):
            return m.RunTaskRequested(
                task_id=tid,
                model=model,
                parameters=parameters,
                input=input_,
                task_group="audio",
                task="asr",
                function="recognition",
                streaming="duplex",
            )
        case m.SendAudio(pcm):
            return m.AudioReceived(pcm)
        case m.ContinueTask(input_):
            return m.ContinueRequested(task_id, input_)
        case m.FinishTask():
            return m.FinishRequested(task_id)
        case m.StartTask():
            return m.TaskStarted(task_id)
        case m.SendResult(output, usage):
            if output.get("sentence", {}).get("heartbeat"):
                return m.Heartbeat(task_id)
            return m.ResultGenerated(task_id, msgspec.convert(output, m.Output), usage)
        case m.FinishTaskReply(usage):
            return m.TaskFinished(task_id, usage or {"duration": 0})
        case m.FailTask(code, message):
            return m.TaskFailed(task_id, code, message)
    raise AssertionError(f"no mirror for {command!r}")


def pair_in(state: State) -> Pair:
    """A pair whose two sides are both in ``state`` (not ERROR), reached by real traffic.

    Every state is reached after one completed task, so the server knows TASK_ID.
    """
    pair = Pair()
    pair.complete()
    if state is State.CLOSED:
        pair.close()
    elif state is State.STARTING:
        pair.run_task()
    elif state is State.STREAMING:
        pair.start()
    elif state is State.FINISHING:
        pair.start()
        pair.send("client", m.FinishTask())
    elif state is State.FAILED:
        pair.start()
        pair.send("server", m.FailTask("CLIENT_ERROR", "request timeout after 23 seconds."))
    elif state is State.ERROR:
        raise ValueError("use client_in/server_in for ERROR: it is reached by one side alone")
    assert (pair.client.state, pair.server.state) == (state, state)
    return pair


def client_in(state: State) -> InferenceClient:
    """A client core in ``state``; ERROR is reached by sending finish-task while IDLE."""
    if state is not State.ERROR:
        return pair_in(state).client
    client = pair_in(State.IDLE).client
    try:
        client.send(m.FinishTask())
    except LocalProtocolError:
        pass
    assert client.state is State.ERROR
    return client


def server_in(state: State) -> InferenceServer:
    """A server core in ``state``; ERROR is reached by sending task-started while IDLE."""
    if state is not State.ERROR:
        return pair_in(state).server
    server = pair_in(State.IDLE).server
    try:
        server.send(m.StartTask())
    except LocalProtocolError:
        pass
    assert server.state is State.ERROR
    return server
