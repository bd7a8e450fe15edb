"""(state × input) sweeps of the realtime cores against the state tables (R12.2).

Every state is reached through real traffic (``client_in`` / ``server_in``) and
every input is a real command or a real wire frame, so the sweep exercises the
cores exactly as a transport does. The sweeps are exhaustive (parametrized over the
whole product, 279 client and 448 server cases, every run): a sampled sweep drew
400 of the 448 server combinations per run, so a core diverging from its table in
one of the other 48 could pass a run (planted: the server refusing an image
before ``session.created`` — 2 of the 448 cases fail, every run).
"""

from __future__ import annotations

import math
from typing import Any, get_args

import pytest
from realtime_helpers import (
    CLIENT_FRAMES,
    INVALID_UPDATE,
    JPEG,
    OPEN_RESPONSE,
    PCM,
    SERVER_FRAMES,
    client_in,
    dumps,
    server_in,
)

from adapters.dashscope import realtime_messages as m
from adapters.dashscope._realtime_state import (
    CLIENT_TRANSITIONS,
    PEER_STATE,
    SERVER_TRANSITIONS,
    ClientState,
    ServerState,
)
from adapters.dashscope.realtime import RealtimeClient, RealtimeServer
from adapters.dashscope.realtime_session import SessionSettings
from engine.errors import LocalProtocolError

CLIENT_COMMANDS: dict[type[Any], Any] = {
    m.UpdateSession: m.UpdateSession(SessionSettings()),
    m.AppendAudio: m.AppendAudio(PCM),
    m.AppendImage: m.AppendImage(JPEG),
    m.Commit: m.Commit(),
    m.Clear: m.Clear(),
    m.FinishSession: m.FinishSession(),
}
_WIRE_NAME: dict[type[Any], str] = {
    m.SessionCreated: "session.created",
    m.SessionUpdated: "session.updated",
    m.SpeechStarted: "input_audio_buffer.speech_started",
    m.SpeechStopped: "input_audio_buffer.speech_stopped",
    m.AudioCommitted: "input_audio_buffer.committed",
    m.AudioCleared: "input_audio_buffer.cleared",
    m.ItemCreated: "conversation.item.created",
    m.SourcePartial: "conversation.item.input_audio_transcription.text",
    m.SourceFinal: "conversation.item.input_audio_transcription.completed",
    m.SourceFailed: "conversation.item.input_audio_transcription.failed",
    m.ResponseCreated: "response.created",
    m.OutputItemAdded: "response.output_item.added",
    m.ContentPartAdded: "response.content_part.added",
    m.TranslationPartial: "response.audio_transcript.text",
    m.TranslationFinal: "response.audio_transcript.done",
    m.AudioDelta: "response.audio.delta",
    m.AudioDone: "response.audio.done",
    m.ContentPartDone: "response.content_part.done",
    m.OutputItemDone: "response.output_item.done",
    m.ResponseDone: "response.done",
    m.ServerError: "error",
    m.FatalServerError: "fatal-error",
    m.SessionFinished: "session.finished",
}
CLIENT_EVENTS: dict[type[Any], str | None] = {
    **{kind: dumps(SERVER_FRAMES[name]) for kind, name in _WIRE_NAME.items()},
    m.UnknownEvent: dumps({"type": "response.audio_transcript.delta", "delta": "x"}),
    m.ConnectionClosed: None,
}
"""For each client event type, a wire input that produces it (when the table allows it)."""

SERVER_COMMANDS: dict[type[Any], Any] = {
    m.CreateSession: m.CreateSession(),
    m.ConfirmSession: m.ConfirmSession(),
    m.SendError: m.SendError("invalid_value", "bad"),
    m.FailSession: m.FailSession("InternalError", "boom"),
    m.StartSpeech: m.StartSpeech(100, "item_A"),
    m.StopSpeech: m.StopSpeech(900, "item_A"),
    m.AckCommit: m.AckCommit("item_A", None),
    m.AckClear: m.AckClear(),
    m.CreateItem: m.CreateItem("item_T", "item_A"),
    m.SendSourcePartial: m.SendSourcePartial("item_A", "你", "好", "zh"),
    m.SendSourceFinal: m.SendSourceFinal("item_A", "你好。", "zh"),
    m.SendSourceFailed: m.SendSourceFailed("item_A", "InternalError", "x"),
    m.CreateResponse: m.CreateResponse("resp_new", "item_new"),
    m.AddOutputItem: m.AddOutputItem(*OPEN_RESPONSE),
    m.AddContentPart: m.AddContentPart(*OPEN_RESPONSE),
    m.SendTranslationPartial: m.SendTranslationPartial(*OPEN_RESPONSE, "Hel", "lo"),
    m.SendAudioDelta: m.SendAudioDelta(*OPEN_RESPONSE, PCM),
    m.SendTranslationFinal: m.SendTranslationFinal(*OPEN_RESPONSE, "Hello."),
    m.FinishAudio: m.FinishAudio(*OPEN_RESPONSE),
    m.FinishContentPart: m.FinishContentPart(*OPEN_RESPONSE, "Hello."),
    m.FinishOutputItem: m.FinishOutputItem(*OPEN_RESPONSE, "Hello."),
    m.FinishResponse: m.FinishResponse(*OPEN_RESPONSE, "Hello."),
    m.FinishSessionReply: m.FinishSessionReply(),
}
SERVER_EVENTS: dict[type[Any], str | bytes | None] = {
    m.SessionUpdateRequested: dumps(CLIENT_FRAMES["session.update"]),
    m.SessionUpdateRejected: dumps(INVALID_UPDATE),
    m.AudioAppended: dumps(CLIENT_FRAMES["input_audio_buffer.append"]),
    m.ImageAppended: dumps(CLIENT_FRAMES["input_image_buffer.append"]),
    m.CommitRequested: dumps(CLIENT_FRAMES["input_audio_buffer.commit"]),
    m.ClearRequested: dumps(CLIENT_FRAMES["input_audio_buffer.clear"]),
    m.FinishRequested: dumps(CLIENT_FRAMES["session.finish"]),
    m.BadRequest: dumps({"type": "response.create"}),
    m.ConnectionClosed: None,
}
NEEDS_CONTEXT = (m.ConfirmSession, *get_args(m.ResponseCommand))
"""Commands that also need an unconfirmed update / the open response (a loaded server)."""

CLIENT_INPUTS = [*CLIENT_COMMANDS, *CLIENT_EVENTS]
SERVER_INPUTS = [*SERVER_COMMANDS, *SERVER_EVENTS]


def names(values: list[Any]) -> list[str]:
    return [getattr(v, "name", None) or v.__name__ for v in values]


def assert_sticky(core: RealtimeClient | RealtimeServer, commands: dict[type[Any], Any]) -> None:
    """In ERROR every verb raises, and the core stays in ERROR."""
    for command in commands.values():
        with pytest.raises(LocalProtocolError):
            core.send(command)
        assert core.state.name == "ERROR"
    for data in [PCM, "{}", dumps(SERVER_FRAMES["session.created"]), None]:
        with pytest.raises(LocalProtocolError):
            core.receive_data(data)
        assert core.state.name == "ERROR"


class TestClientSweep:
    @pytest.mark.parametrize("kind", CLIENT_INPUTS, ids=names(CLIENT_INPUTS))
    @pytest.mark.parametrize("state", list(ClientState), ids=names(list(ClientState)))
    def test_client(self, state: ClientState, kind: type[Any]) -> None:
        """Each client input lands in the table's state, or in sticky ERROR."""
        client = client_in(state)
        key = (state, kind)
        if state is ClientState.ERROR:
            assert_sticky(client, CLIENT_COMMANDS)
            return
        if kind in CLIENT_COMMANDS:
            if key not in CLIENT_TRANSITIONS:
                with pytest.raises(LocalProtocolError):
                    client.send(CLIENT_COMMANDS[kind])
                assert_sticky(client, CLIENT_COMMANDS)
                return
            assert isinstance(client.send(CLIENT_COMMANDS[kind]), str)
            assert list(client.events()) == []
            assert client.state is CLIENT_TRANSITIONS[key]
            return
        client.receive_data(CLIENT_EVENTS[kind])
        events = list(client.events())
        if key in CLIENT_TRANSITIONS:
            assert [type(e) for e in events] == [kind]
            assert client.state is CLIENT_TRANSITIONS[key]
        else:
            # the server broke the protocol: reported as an event, then sticky ERROR
            assert [type(e) for e in events] == [m.ProtocolViolation]
            assert_sticky(client, CLIENT_COMMANDS)


class TestServerSweep:
    @pytest.mark.parametrize("loaded", [False, True], ids=["plain", "loaded"])
    @pytest.mark.parametrize("kind", SERVER_INPUTS, ids=names(SERVER_INPUTS))
    @pytest.mark.parametrize("state", list(ServerState), ids=names(list(ServerState)))
    def test_server(self, state: ServerState, kind: type[Any], loaded: bool) -> None:
        """Each server input lands in the table's state; bad client input is a BadRequest."""
        loadable = state in (ServerState.CONNECTED, ServerState.ACTIVE, ServerState.FINISHING)
        loaded = loaded and loadable
        server = server_in(state, loaded=loaded)
        key = (state, kind)
        if state is ServerState.ERROR:
            assert_sticky(server, SERVER_COMMANDS)
            return
        if kind in SERVER_COMMANDS:
            context_ok = (
                loaded if kind in NEEDS_CONTEXT else not (loaded and kind is m.FinishSessionReply)
            )
            if kind in NEEDS_CONTEXT[1:] and state is ServerState.CONNECTED:
                context_ok = False  # no response can be open before session.created
            if key not in SERVER_TRANSITIONS or not context_ok:
                with pytest.raises(LocalProtocolError):
                    server.send(SERVER_COMMANDS[kind])
                assert_sticky(server, SERVER_COMMANDS)
                return
            assert isinstance(server.send(SERVER_COMMANDS[kind]), str)
            assert list(server.events()) == []
            assert server.state is SERVER_TRANSITIONS[key]
            return
        server.receive_data(SERVER_EVENTS[kind])
        events = list(server.events())
        if key in SERVER_TRANSITIONS:
            assert [type(e) for e in events] == [kind]
            assert server.state is SERVER_TRANSITIONS[key]
        else:
            # the client broke the protocol: the server reports it and stays usable
            assert [type(e) for e in events] == [m.BadRequest]
            assert server.state is state


def sweep_size(test: Any) -> int:
    """How many cases the stacked ``parametrize`` marks of ``test`` make."""
    return math.prod(len(mark.args[1]) for mark in test.pytestmark if mark.name == "parametrize")


def test_the_sweeps_cover_every_combination() -> None:
    """448 server cases (7 states × 32 inputs × loaded or not) and 279 client cases (9 × 31)."""
    assert sweep_size(TestServerSweep.test_server) == 448
    assert sweep_size(TestClientSweep.test_client) == 279


class TestTables:
    @pytest.mark.parametrize(
        ("table", "inputs"),
        [(CLIENT_TRANSITIONS, CLIENT_INPUTS), (SERVER_TRANSITIONS, SERVER_INPUTS)],
        ids=["client", "server"],
    )
    def test_keys_are_inputs(self, table: dict[Any, Any], inputs: list[type[Any]]) -> None:
        """Every table key names a state and a command or event type of that role."""
        for _, kind in table:
            assert kind in inputs

    @pytest.mark.parametrize(
        ("table", "error"),
        [(CLIENT_TRANSITIONS, ClientState.ERROR), (SERVER_TRANSITIONS, ServerState.ERROR)],
    )
    def test_error_is_a_sink(self, table: dict[Any, Any], error: Any) -> None:
        """No entry leaves ERROR and no entry leads into it: ERROR comes only from a miss."""
        assert all(state is not error for state, _ in table)
        assert error not in table.values()

    def test_close_from_anywhere(self) -> None:
        """The transport closing moves every live state to CLOSED."""
        for client_state in ClientState:
            if client_state is not ClientState.ERROR:
                assert CLIENT_TRANSITIONS[client_state, m.ConnectionClosed] is ClientState.CLOSED
        for server_state in ServerState:
            if server_state is not ServerState.ERROR:
                assert SERVER_TRANSITIONS[server_state, m.ConnectionClosed] is ServerState.CLOSED

    def test_terminal_states_send_nothing(self) -> None:
        """After session.finished, a fatal error or the close, neither role may send."""
        commands = [*CLIENT_COMMANDS, *SERVER_COMMANDS]
        terminal = {ClientState.FINISHED, ClientState.FAILED, ClientState.CLOSED}
        terminal |= {ServerState.FINISHED, ServerState.FAILED, ServerState.CLOSED}
        for table in (CLIENT_TRANSITIONS, SERVER_TRANSITIONS):
            assert not [k for s, k in table if s in terminal and k in commands]

    def test_audio_needs_a_configured_session(self) -> None:
        """Audio, images, commit and clear go up only in STREAMING (§10 item 17)."""
        for kind in (m.AppendAudio, m.AppendImage, m.Commit, m.Clear):
            assert [s for s, k in CLIENT_TRANSITIONS if k is kind] == [ClientState.STREAMING]

    def test_client_commands_reach_the_server(self) -> None:
        """Each client command the table allows is a request the peer server accepts."""
        mirror = {
            m.UpdateSession: m.SessionUpdateRequested,
            m.AppendAudio: m.AudioAppended,
            m.AppendImage: m.ImageAppended,
            m.Commit: m.CommitRequested,
            m.Clear: m.ClearRequested,
            m.FinishSession: m.FinishRequested,
        }
        for (state, kind), after in CLIENT_TRANSITIONS.items():
            if kind in mirror:
                server_state = PEER_STATE[state]
                assert SERVER_TRANSITIONS[server_state, mirror[kind]] is PEER_STATE[after]

    def test_server_commands_reach_some_client(self) -> None:
        """Each server command the table allows is an event some peer client state accepts,
        ending in the peer of the server's next state."""
        mirror = {
            m.CreateSession: [m.SessionCreated],
            m.ConfirmSession: [m.SessionUpdated],
            m.SendError: [m.ServerError],
            m.FailSession: [m.FatalServerError],
            m.FinishSessionReply: [m.SessionFinished],
        }
        stream = [k for k in CLIENT_EVENTS if (ClientState.STREAMING, k) in CLIENT_TRANSITIONS]
        for (state, kind), after in SERVER_TRANSITIONS.items():
            if kind not in SERVER_COMMANDS:
                continue
            events = mirror.get(kind, stream)
            peers = [c for c, s in PEER_STATE.items() if s is state]
            assert any(
                PEER_STATE.get(CLIENT_TRANSITIONS.get((c, e), ClientState.ERROR)) is after
                for c in peers
                for e in events
            ), (state, kind)
