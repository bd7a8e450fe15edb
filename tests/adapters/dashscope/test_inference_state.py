"""(state × input) sweeps of the inference cores against the state tables (R12.2).

Every state is reached through real traffic (``client_in`` / ``server_in``), and
every input is a real command or a real wire frame, so the sweep exercises the
cores exactly as a transport does. Both sweeps are exhaustive (parametrized over
the whole product, 77 cases each, every run) rather than sampled: a sampled sweep
can miss the one combination where a core diverges from its table (planted: the
server answering audio in IDLE with a BadRequest — 1 case of 77 fails).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    CLIENT_FRAMES,
    FINAL,
    MODEL,
    PARAMETERS,
    PCM,
    SERVER_FRAMES,
    TASK_ID,
    client_in,
    dumps,
    server_frame,
    server_in,
)

from adapters.dashscope import messages as m
from adapters.dashscope._state import CLIENT_TRANSITIONS, SERVER_TRANSITIONS, State
from adapters.dashscope.inference import InferenceClient, InferenceServer
from engine.errors import LocalProtocolError

CLIENT_COMMANDS: dict[type[Any], Any] = {
    m.RunTask: m.RunTask(TASK_ID, MODEL, PARAMETERS),
    m.SendAudio: m.SendAudio(PCM),
    m.ContinueTask: m.ContinueTask({"context": []}),
    m.FinishTask: m.FinishTask(),
}
CLIENT_EVENTS: dict[type[Any], str | None] = {
    m.TaskStarted: dumps(SERVER_FRAMES["task-started"]),
    m.ResultGenerated: dumps(SERVER_FRAMES["final"]),
    m.Heartbeat: dumps(SERVER_FRAMES["heartbeat"]),
    m.TaskFinished: dumps(SERVER_FRAMES["task-finished"]),
    m.TaskFailed: dumps(SERVER_FRAMES["task-failed"]),
    m.UnknownEvent: dumps(server_frame("speech-started")),
    m.ConnectionClosed: None,
}
"""For each client event type, a wire input that produces it (when the table allows it)."""

SERVER_COMMANDS: dict[type[Any], Any] = {
    m.StartTask: m.StartTask(),
    m.SendResult: m.SendResult(FINAL, {"duration": 2}),
    m.FinishTaskReply: m.FinishTaskReply({"duration": 2}),
    m.FailTask: m.FailTask("CLIENT_ERROR", "request timeout after 23 seconds."),
}
SERVER_EVENTS: dict[type[Any], bytes | str | None] = {
    m.RunTaskRequested: dumps(CLIENT_FRAMES["run-task"]),
    m.AudioReceived: PCM,
    m.ContinueRequested: dumps(CLIENT_FRAMES["continue-task"]),
    m.FinishRequested: dumps(CLIENT_FRAMES["finish-task"]),
    m.BadRequest: '{"header": {"action": "run-task"}}',
    m.ConnectionClosed: None,
}

CLIENT_INPUTS = [*CLIENT_COMMANDS, *CLIENT_EVENTS]
SERVER_INPUTS = [*SERVER_COMMANDS, *SERVER_EVENTS]


def names(values: list[Any]) -> list[str]:
    return [getattr(v, "name", None) or v.__name__ for v in values]


def client_apply(client: InferenceClient, kind: type[Any]) -> list[Any]:
    if kind in CLIENT_COMMANDS:
        client.send(CLIENT_COMMANDS[kind])
    else:
        client.receive_data(CLIENT_EVENTS[kind])
    return list(client.events())


def server_apply(server: InferenceServer, kind: type[Any]) -> list[Any]:
    if kind in SERVER_COMMANDS:
        server.send(SERVER_COMMANDS[kind])
    else:
        server.receive_data(SERVER_EVENTS[kind])
    return list(server.events())


def assert_sticky(core: InferenceClient | InferenceServer, commands: dict[type[Any], Any]) -> None:
    """In ERROR every verb that could move the core raises, and the core stays in ERROR."""
    inputs: list[bytes | str | None] = [PCM, "{}", dumps(SERVER_FRAMES["task-started"]), None]
    for command in commands.values():
        with pytest.raises(LocalProtocolError):
            core.send(command)
        assert core.state is State.ERROR
    for data in inputs:
        with pytest.raises(LocalProtocolError):
            core.receive_data(data)
        assert core.state is State.ERROR


class TestClientSweep:
    @pytest.mark.parametrize("kind", CLIENT_INPUTS, ids=names(CLIENT_INPUTS))
    @pytest.mark.parametrize("state", list(State), ids=names(list(State)))
    def test_client(self, state: State, kind: type[Any]) -> None:
        """Each client input lands in the table's state, or in sticky ERROR."""
        client = client_in(state)
        key = (state, kind)
        if state is State.ERROR:
            assert_sticky(client, CLIENT_COMMANDS)
            return
        if kind in CLIENT_COMMANDS and key not in CLIENT_TRANSITIONS:
            with pytest.raises(LocalProtocolError):
                client_apply(client, kind)
            assert client.state is State.ERROR
            assert_sticky(client, CLIENT_COMMANDS)
            return
        events = client_apply(client, kind)
        if kind in CLIENT_COMMANDS:
            assert events == []
            assert client.state is CLIENT_TRANSITIONS[key]
        elif key in CLIENT_TRANSITIONS:
            assert [type(e) for e in events] == [kind]
            assert client.state is CLIENT_TRANSITIONS[key]
        else:
            # the server broke the protocol: reported as an event, then sticky ERROR
            assert [type(e) for e in events] == [m.ProtocolViolation]
            assert client.state is State.ERROR
            assert_sticky(client, CLIENT_COMMANDS)


class TestServerSweep:
    @pytest.mark.parametrize("kind", SERVER_INPUTS, ids=names(SERVER_INPUTS))
    @pytest.mark.parametrize("state", list(State), ids=names(list(State)))
    def test_server(self, state: State, kind: type[Any]) -> None:
        """Each server input lands in the table's state; bad client input is a BadRequest."""
        server = server_in(state)
        key = (state, kind)
        if state is State.ERROR:
            assert_sticky(server, SERVER_COMMANDS)
            return
        if kind in SERVER_COMMANDS and key not in SERVER_TRANSITIONS:
            with pytest.raises(LocalProtocolError):
                server_apply(server, kind)
            assert server.state is State.ERROR
            assert_sticky(server, SERVER_COMMANDS)
            return
        events = server_apply(server, kind)
        if kind in SERVER_COMMANDS:
            assert events == []
            assert server.state is SERVER_TRANSITIONS[key]
        elif key in SERVER_TRANSITIONS:
            assert [type(e) for e in events] == [kind]
            assert server.state is SERVER_TRANSITIONS[key]
        else:
            # the client broke the protocol: the server reports it and stays usable
            assert [type(e) for e in events] == [m.BadRequest]
            assert server.state is state


class TestServerTakeAudio:
    @pytest.mark.parametrize("state", list(State), ids=names(list(State)))
    def test_only_a_streaming_task_takes_audio_in_place(self, state: State) -> None:
        """take_audio says yes exactly where receive_data would give AudioReceived and stay
        in STREAMING; it changes nothing and queues no event either way."""
        server = server_in(state)
        expected = SERVER_TRANSITIONS.get((state, m.AudioReceived)) is State.STREAMING and (
            state is State.STREAMING
        )
        assert server.take_audio(PCM) is expected
        assert server.state is state
        assert list(server.events()) == []

    def test_not_with_events_waiting(self) -> None:
        """An event not yet read keeps audio on the general path (order is kept)."""
        server = server_in(State.STREAMING)
        server.receive_data(dumps(CLIENT_FRAMES["continue-task"]))
        assert not server.take_audio(PCM)
        assert [type(e) for e in server.events()] == [m.ContinueRequested]
        assert server.take_audio(PCM)


class TestTables:
    @pytest.mark.parametrize(
        ("table", "inputs"),
        [(CLIENT_TRANSITIONS, CLIENT_INPUTS), (SERVER_TRANSITIONS, SERVER_INPUTS)],
        ids=["client", "server"],
    )
    def test_keys_are_inputs(self, table: dict[Any, State], inputs: list[type[Any]]) -> None:
        """Every table key names a state and a command or event type of that role."""
        for state, kind in table:
            assert isinstance(state, State)
            assert kind in inputs

    @pytest.mark.parametrize("table", [CLIENT_TRANSITIONS, SERVER_TRANSITIONS])
    def test_error_is_a_sink(self, table: dict[Any, State]) -> None:
        """No entry leaves ERROR and no entry leads into it: ERROR comes only from a miss."""
        assert all(state is not State.ERROR for state, _ in table)
        assert State.ERROR not in table.values()

    @pytest.mark.parametrize("table", [CLIENT_TRANSITIONS, SERVER_TRANSITIONS])
    def test_close_from_anywhere(self, table: dict[Any, State]) -> None:
        """The transport closing moves every live state to CLOSED."""
        for state in State:
            if state is not State.ERROR:
                assert table[state, m.ConnectionClosed] is State.CLOSED

    @pytest.mark.parametrize("table", [CLIENT_TRANSITIONS, SERVER_TRANSITIONS])
    def test_closed_and_failed_send_nothing(self, table: dict[Any, State]) -> None:
        """After task-failed or the close, neither role may send anything."""
        commands = [*CLIENT_COMMANDS, *SERVER_COMMANDS]
        for state in (State.FAILED, State.CLOSED):
            assert not [kind for s, kind in table if s is state and kind in commands]

    def test_roles_agree(self) -> None:
        """Each client command the table allows is an event the server accepts in that state."""
        mirror = {
            m.RunTask: m.RunTaskRequested,
            m.SendAudio: m.AudioReceived,
            m.ContinueTask: m.ContinueRequested,
            m.FinishTask: m.FinishRequested,
            m.StartTask: m.TaskStarted,
            m.SendResult: m.ResultGenerated,
            m.FinishTaskReply: m.TaskFinished,
            m.FailTask: m.TaskFailed,
        }
        for (state, kind), after in CLIENT_TRANSITIONS.items():
            if kind in CLIENT_COMMANDS:
                assert SERVER_TRANSITIONS[state, mirror[kind]] is after
        for (state, kind), after in SERVER_TRANSITIONS.items():
            if kind in SERVER_COMMANDS:
                assert CLIENT_TRANSITIONS[state, mirror[kind]] is after


class TestLenientRules:
    """The table's lenient entries, spelled out as the theory of operation states them.

    The sweeps read the table as their oracle, so an entry changed in the table changes
    the oracle too; these literal expectations do not move with it. Mutants they kill
    (tools/mutation/SURVIVORS.md): every UnknownEvent, BadRequest and late-input entry
    deleted or sent elsewhere, (FINISHING, Heartbeat) → FAILED, (IDLE, AudioReceived)
    deleted.
    """

    def test_unknown_events_are_reported_not_fatal(self) -> None:
        """A client keeps its state on an event name it does not know (checklist §10.8)."""
        for state in (State.IDLE, State.STARTING, State.STREAMING, State.FINISHING):
            assert CLIENT_TRANSITIONS[(state, m.UnknownEvent)] is state

    def test_heartbeats_keep_a_running_task(self) -> None:
        for state in (State.STREAMING, State.FINISHING):
            assert CLIENT_TRANSITIONS[(state, m.Heartbeat)] is state

    def test_a_bad_frame_changes_no_server_state(self) -> None:
        """An unparsable client frame is a BadRequest in every state but ERROR."""
        for state in State:
            if state is not State.ERROR:
                assert SERVER_TRANSITIONS[(state, m.BadRequest)] is state

    def test_late_input_after_finish_task_is_ignored(self) -> None:
        """Audio, continue-task or another finish-task after finish-task: still FINISHING;
        stray audio or a finish for an unknown task with no task open: still IDLE."""
        for kind in (m.AudioReceived, m.FinishRequested, m.ContinueRequested):
            assert SERVER_TRANSITIONS[(State.FINISHING, kind)] is State.FINISHING
        for kind in (m.AudioReceived, m.FinishRequested):
            assert SERVER_TRANSITIONS[(State.IDLE, kind)] is State.IDLE
