"""Stateful Hypothesis test: random conversations between our client and server cores (R12.3).

Rules are the things either peer may do; their preconditions come straight from the
state tables. The :class:`Pair` checks every delivered event against the tables and
the running task id, so the invariants here are the cross-peer ones.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import (
    HEARTBEAT,
    MODEL,
    OUTPUTS,
    PARAMETERS,
    PCM,
    Pair,
    client_frame,
    dumps,
    server_frame,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from adapters.dashscope import messages as m
from adapters.dashscope._state import CLIENT_TRANSITIONS, SERVER_TRANSITIONS, State
from adapters.dashscope.inference import InferenceClient, InferenceServer
from engine.errors import LocalProtocolError

TASK_IDS = st.sampled_from(["task-a", "task-b", "2460889d9b42418b860a6a82c28bb02b"])
CLIENT_COMMANDS: list[Any] = [
    m.RunTask("task-z", MODEL, PARAMETERS),
    m.SendAudio(PCM),
    m.ContinueTask({}),
    m.FinishTask(),
]
TERMINAL_AFTER = 8
"""Frames on the wire before task-failed, the close or a misuse may end the conversation."""
SERVER_COMMANDS: list[Any] = [
    m.StartTask(),
    m.SendResult(OUTPUTS["final"]),
    m.FinishTaskReply(),
    m.FailTask("X", "y"),
]


def client_may(pair: Pair, kind: type[Any]) -> bool:
    return (pair.client.state, kind) in CLIENT_TRANSITIONS


def server_may(pair: Pair, kind: type[Any]) -> bool:
    return (pair.server.state, kind) in SERVER_TRANSITIONS


class InferenceConversation(RuleBasedStateMachine):
    """A client and a server core talking over a perfect wire, plus probes of misuse."""

    pair: Pair
    broken: bool

    @initialize()
    def setup(self) -> None:
        self.pair = Pair()
        self.broken = False  # the client was misused on purpose and is in ERROR
        self.task_ids: list[str] = []
        self.checked = 0  # wire frames already checked by task_ids_echo

    # ---- client rules

    @precondition(lambda self: not self.broken and client_may(self.pair, m.RunTask))
    @rule(task_id=TASK_IDS)
    def run_task(self, task_id: str) -> None:
        self.pair.send("client", m.RunTask(task_id, MODEL, PARAMETERS))
        self.task_ids.append(task_id)

    @precondition(lambda self: not self.broken and client_may(self.pair, m.SendAudio))
    @rule(pcm=st.binary(max_size=64))
    def send_audio(self, pcm: bytes) -> None:
        self.pair.send("client", m.SendAudio(pcm))

    @precondition(lambda self: not self.broken and client_may(self.pair, m.ContinueTask))
    @rule()
    def continue_task(self) -> None:
        self.pair.send("client", m.ContinueTask({"context": [{"role": "user"}]}))

    @precondition(lambda self: not self.broken and client_may(self.pair, m.FinishTask))
    @rule()
    def finish(self) -> None:
        self.pair.send("client", m.FinishTask())

    # ---- server rules

    @precondition(lambda self: not self.broken and server_may(self.pair, m.StartTask))
    @rule()
    def server_start(self) -> None:
        self.pair.send("server", m.StartTask())

    @precondition(lambda self: not self.broken and server_may(self.pair, m.SendResult))
    @rule(name=st.sampled_from(sorted(OUTPUTS)), usage=st.none() | st.just({"duration": 1}))
    def server_result(self, name: str, usage: dict[str, Any] | None) -> None:
        self.pair.send("server", m.SendResult(OUTPUTS[name], usage))

    @precondition(lambda self: not self.broken and server_may(self.pair, m.FinishTaskReply))
    @rule()
    def server_finish(self) -> None:
        self.pair.send("server", m.FinishTaskReply({"duration": 1}))

    # terminal rules wait for some traffic, so most runs get past the first task
    @precondition(
        lambda self: (
            not self.broken
            and len(self.pair.wire) >= TERMINAL_AFTER
            and server_may(self.pair, m.FailTask)
        )
    )
    @rule(code=st.sampled_from(["CLIENT_ERROR", "Throttling.RateQuota", "InvalidParameter"]))
    def server_fail(self, code: str) -> None:
        self.pair.send("server", m.FailTask(code, "failed"))

    @precondition(lambda self: not self.broken and len(self.pair.wire) >= TERMINAL_AFTER)
    @rule()
    def close(self) -> None:
        assert self.pair.close() == ([m.ConnectionClosed()], [m.ConnectionClosed()])

    # ---- what a less polite peer does, straight onto the wire

    @precondition(lambda self: not self.broken)
    @rule(kind=st.sampled_from(["unknown-event", "heartbeat", "raw-audio", "foreign-finish"]))
    def impolite(self, kind: str) -> None:
        """Inputs our own peer never produces; each is absorbed without a state change."""
        client, server = self.pair.client, self.pair.server
        before = (client.state, server.state)
        if kind == "unknown-event" and client_may(self.pair, m.UnknownEvent):
            frame = dumps(server_frame("speech-started", client.task_id))
            assert self.pair.deliver("client", frame) == [m.UnknownEvent("speech-started")]
        elif kind == "heartbeat" and server_may(self.pair, m.SendResult):
            heartbeat = m.Heartbeat(self.task_ids[-1])
            assert self.pair.send("server", m.SendResult(HEARTBEAT)) == [heartbeat]
        elif kind == "raw-audio" and server_may(self.pair, m.AudioReceived):
            # audio before task-started or after finish-task: the server keeps or drops it
            assert self.pair.deliver("server", PCM) == [m.AudioReceived(PCM)]
        elif kind == "foreign-finish":
            frame = dumps(client_frame("finish-task", "no-such-task"))
            assert self.pair.deliver("server", frame) == []
        assert (client.state, server.state) == before

    # ---- misuse: probes on throw-away twins, and one real misuse

    @precondition(lambda self: not self.broken)
    @rule(command=st.sampled_from(CLIENT_COMMANDS + SERVER_COMMANDS))
    def probe(self, command: Any) -> None:
        """A twin in the same state accepts exactly the commands the table lists."""
        twin: InferenceClient | InferenceServer
        if command in CLIENT_COMMANDS:
            twin, allowed = InferenceClient(), client_may(self.pair, type(command))
            twin._state, twin.task_id = self.pair.client.state, self.pair.client.task_id
        else:
            twin, allowed = InferenceServer(), server_may(self.pair, type(command))
            twin._state, twin.task_id = self.pair.server.state, self.pair.server.task_id
        if allowed:
            twin.send(command)
        else:
            with pytest.raises(LocalProtocolError):
                twin.send(command)
            assert twin.state is State.ERROR

    @precondition(lambda self: not self.broken and len(self.pair.wire) >= TERMINAL_AFTER)
    @rule(command=st.sampled_from(CLIENT_COMMANDS))
    def misuse_client(self, command: Any) -> None:
        if client_may(self.pair, type(command)):
            return
        with pytest.raises(LocalProtocolError):
            self.pair.client.send(command)
        self.broken = True

    @precondition(lambda self: self.broken)
    @rule(command=st.sampled_from(CLIENT_COMMANDS), data=st.sampled_from([None, PCM, "{}"]))
    def poke_broken_client(self, command: Any, data: bytes | str | None) -> None:
        with pytest.raises(LocalProtocolError):
            self.pair.client.send(command)
        with pytest.raises(LocalProtocolError):
            self.pair.client.receive_data(data)

    # ---- invariants

    @invariant()
    def states_agree(self) -> None:
        """With every frame delivered, both peers are in the same state."""
        if not self.broken:
            assert self.pair.client.state is self.pair.server.state

    @invariant()
    def error_is_sticky(self) -> None:
        assert (self.pair.client.state is State.ERROR) == self.broken
        assert self.pair.server.state is not State.ERROR

    @invariant()
    def task_ids_echo(self) -> None:
        """Every text frame since the last check names the task the client started last."""
        for _, frame in self.pair.wire[self.checked :]:
            if isinstance(frame, str):
                assert json.loads(frame)["header"]["task_id"] == self.task_ids[-1]
        self.checked = len(self.pair.wire)

    @invariant()
    def peers_share_task(self) -> None:
        if self.task_ids:
            assert self.pair.client.task_id == self.pair.server.task_id == self.task_ids[-1]


InferenceConversation.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TestConversation(InferenceConversation.TestCase):
    """Hypothesis drives InferenceConversation; pytest collects it through this class."""
