"""Stateful Hypothesis test: random realtime sessions between our client and server cores (R12.3).

Rules are what either peer may do; their preconditions come from the state
tables (and, for the server, from what our client can accept: a polite peer).
Several translation responses and ASR items are kept in flight and advanced in
any interleaving, because §5.4 fixes no order between them. The :class:`Pair`
checks every delivered event against the tables and against the mirror of its
command, which includes the translation → ASR item correlation.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from realtime_helpers import JPEG, PCM, Pair, dumps

from adapters.dashscope import realtime_messages as m
from adapters.dashscope._realtime_state import (
    CLIENT_TRANSITIONS,
    PEER_STATE,
    SERVER_TRANSITIONS,
    ClientState,
    ServerState,
)
from adapters.dashscope.realtime import RealtimeClient
from adapters.dashscope.realtime_session import (
    ServerVad,
    SessionSettings,
    TranscriptionSettings,
    TranslationSettings,
)
from engine.errors import LocalProtocolError

SETTINGS = st.builds(
    SessionSettings,
    modalities=st.sampled_from([("text",), ("text", "audio")]),
    input_audio_transcription=st.builds(
        TranscriptionSettings, model=st.sampled_from([None, "qwen3-asr-flash-realtime"])
    ),
    turn_detection=st.none() | st.builds(ServerVad, silence_duration_ms=st.integers(200, 6000)),
    translation=st.builds(TranslationSettings, language=st.sampled_from(["en", "ja", "zh"])),
)
CLIENT_COMMANDS: list[Any] = [
    m.UpdateSession(SessionSettings()),
    m.AppendAudio(PCM),
    m.AppendImage(JPEG),
    m.Commit(),
    m.Clear(),
    m.FinishSession(),
]
TERMINAL_AFTER = 12
"""Frames on the wire before a fatal error, the close or a misuse may end the session."""


def client_may(pair: Pair, kind: type[Any]) -> bool:
    return (pair.client.state, kind) in CLIENT_TRANSITIONS


def server_may(pair: Pair, kind: type[Any]) -> bool:
    return (pair.server.state, kind) in SERVER_TRANSITIONS


def streaming_peer(pair: Pair) -> bool:
    """The server may send stream events, and our client accepts them."""
    return server_may(pair, m.StartSpeech) and client_may(pair, m.SpeechStarted)


class RealtimeSession(RuleBasedStateMachine):
    """A client and a server core talking over a perfect wire, plus probes of misuse."""

    pair: Pair
    broken: bool

    @initialize(streaming=st.booleans(), chosen=SETTINGS)
    def setup(self, streaming: bool, chosen: SessionSettings) -> None:
        """Half the runs start configured, so most steps happen mid-session."""
        self.pair = Pair()
        self.broken = False  # the client was misused on purpose and is in ERROR
        self.responses: dict[str, deque[Any]] = {}  # open response → its remaining commands
        self.asr_items: list[str] = []  # ASR items with speech in progress
        self.sources = 0
        self.errors = 0
        if streaming:
            self.pair.stream(chosen)

    # ---- client rules

    @precondition(lambda self: not self.broken and client_may(self.pair, m.UpdateSession))
    @rule(chosen=SETTINGS)
    def update(self, chosen: SessionSettings) -> None:
        self.pair.send("client", m.UpdateSession(chosen))

    @precondition(lambda self: not self.broken and client_may(self.pair, m.AppendAudio))
    @rule(pcm=st.binary(max_size=64))
    def append_audio(self, pcm: bytes) -> None:
        self.pair.send("client", m.AppendAudio(pcm))

    @precondition(lambda self: not self.broken and client_may(self.pair, m.AppendImage))
    @rule()
    def append_image(self) -> None:
        self.pair.send("client", m.AppendImage(JPEG))

    @precondition(lambda self: not self.broken and client_may(self.pair, m.Commit))
    @rule(clear=st.booleans())
    def commit_or_clear(self, clear: bool) -> None:
        self.pair.send("client", m.Clear() if clear else m.Commit())

    @precondition(lambda self: not self.broken and client_may(self.pair, m.FinishSession))
    @rule()
    def finish(self) -> None:
        self.pair.send("client", m.FinishSession())

    # ---- server rules

    @precondition(lambda self: not self.broken and server_may(self.pair, m.CreateSession))
    @rule()
    def create(self) -> None:
        self.pair.send("server", m.CreateSession())

    @precondition(
        lambda self: (
            not self.broken
            and self.pair.server.pending_confirms > 0
            and server_may(self.pair, m.ConfirmSession)
        )
    )
    @rule()
    def confirm(self) -> None:
        self.pair.send("server", m.ConfirmSession())

    @precondition(
        lambda self: (
            not self.broken
            and server_may(self.pair, m.SendError)
            and client_may(self.pair, m.ServerError)
            and self.pair.client.state is not ClientState.CONFIGURING
            and self.errors < 2
        )
    )
    @rule()
    def send_error(self) -> None:
        self.errors += 1
        self.pair.send("server", m.SendError("invalid_value", "input audio buffer is empty"))

    @precondition(lambda self: not self.broken and streaming_peer(self.pair))
    @rule(asr_text=st.text(max_size=6))
    def speech(self, asr_text: str) -> None:
        """Start a segment, or advance/stop the oldest one: VAD and ASR events."""
        server = self.pair.server
        if not self.asr_items or (len(self.asr_items) < 2 and asr_text):
            self.sources += 1
            item = f"asr_{self.sources}"
            self.asr_items.append(item)
            commands: list[Any] = [m.StartSpeech(self.sources * 1000, item)]
            if server.asr_enabled:
                commands.append(m.SendSourcePartial(item, "", asr_text, "zh", "neutral"))
        else:
            item = self.asr_items.pop(0)
            commands = [m.StopSpeech(self.sources * 1000 + 500, item)]
            if server.asr_enabled:
                commands.append(m.SendSourceFinal(item, asr_text, "zh", "neutral"))
        self.pair.send("server", commands)

    @precondition(
        lambda self: not self.broken and streaming_peer(self.pair) and len(self.responses) < 3
    )
    @rule(text=st.text(max_size=8), chunks=st.integers(0, 2))
    def begin_response(self, text: str, chunks: int) -> None:
        """Plan a whole translation response; open it (item created, response created)."""
        source = self.asr_items[-1] if self.asr_items else None
        commands = deque(
            self.pair.server.response_commands(
                text, source_item_id=source, partials=[(text[:2], text[2:])], audio=[PCM] * chunks
            )
        )
        response_id = commands[1].response_id
        self.pair.send("server", [commands.popleft(), commands.popleft()])
        self.responses[response_id] = commands

    @precondition(lambda self: not self.broken and streaming_peer(self.pair) and self.responses)
    @rule(data=st.data(), count=st.integers(1, 12))
    def step_responses(self, data: st.DataObject, count: int) -> None:
        """Advance the open responses by up to ``count`` frames, interleaved at random."""
        for _ in range(count):
            if not self.responses:
                return
            response_id = data.draw(st.sampled_from(sorted(self.responses)))
            commands = self.responses[response_id]
            self.pair.send("server", commands.popleft())
            if not commands:
                del self.responses[response_id]

    @precondition(
        lambda self: (
            not self.broken
            and server_may(self.pair, m.FinishSessionReply)
            and not self.responses
            and self.pair.server.pending_confirms == 0
        )
    )
    @rule()
    def finished(self) -> None:
        self.pair.send("server", m.FinishSessionReply())

    @precondition(
        lambda self: (
            not self.broken
            and len(self.pair.wire) >= TERMINAL_AFTER
            and server_may(self.pair, m.FailSession)
        )
    )
    @rule()
    def fail(self) -> None:
        self.pair.send("server", m.FailSession("InternalError", "boom"))
        self.responses.clear()

    @precondition(lambda self: not self.broken and len(self.pair.wire) >= TERMINAL_AFTER)
    @rule()
    def close(self) -> None:
        assert self.pair.close() == ([m.ConnectionClosed()], [m.ConnectionClosed()])
        self.responses.clear()

    # ---- what a less polite peer does, straight onto the wire

    @precondition(lambda self: not self.broken)
    @rule(kind=st.sampled_from(["unknown-event", "late-audio", "omni-event", "early-update"]))
    def impolite(self, kind: str) -> None:
        """Inputs our own peer never produces; each is absorbed without a state change."""
        pair = self.pair
        before = pair.states()
        if kind == "unknown-event" and client_may(pair, m.UnknownEvent):
            frame = dumps({"type": "response.audio_transcript.delta", "delta": "Hi"})
            assert pair.deliver("client", frame) == [m.UnknownEvent(json.loads(frame)["type"])]
        elif kind == "late-audio" and pair.server.state is ServerState.FINISHING:
            frame = dumps({"type": "input_audio_buffer.append", "audio": "AAAA"})
            assert pair.deliver("server", frame) == [m.AudioAppended(None, b"\0\0\0")]
        elif kind == "omni-event":
            [bad] = pair.deliver("server", dumps({"type": "response.cancel"}))
            assert isinstance(bad, m.BadRequest)
        assert pair.states() == before

    # ---- misuse: probes on throw-away twins, and one real misuse

    @precondition(lambda self: not self.broken)
    @rule(command=st.sampled_from(CLIENT_COMMANDS))
    def probe(self, command: Any) -> None:
        """A twin in the same state accepts exactly the commands the table lists."""
        twin = RealtimeClient()
        twin._state = self.pair.client.state
        if client_may(self.pair, type(command)):
            twin.send(command)
        else:
            with pytest.raises(LocalProtocolError):
                twin.send(command)
            assert twin.state is ClientState.ERROR

    @precondition(lambda self: not self.broken and len(self.pair.wire) >= TERMINAL_AFTER)
    @rule(command=st.sampled_from(CLIENT_COMMANDS))
    def misuse_client(self, command: Any) -> None:
        if client_may(self.pair, type(command)):
            return
        with pytest.raises(LocalProtocolError):
            self.pair.client.send(command)
        self.broken = True

    @precondition(lambda self: self.broken)
    @rule(command=st.sampled_from(CLIENT_COMMANDS), data=st.sampled_from([None, "{}", "x"]))
    def poke_broken_client(self, command: Any, data: str | None) -> None:
        with pytest.raises(LocalProtocolError):
            self.pair.client.send(command)
        with pytest.raises(LocalProtocolError):
            self.pair.client.receive_data(data)

    # ---- invariants

    @invariant()
    def states_agree(self) -> None:
        """With every frame delivered, the server is in the client's peer state."""
        if not self.broken:
            assert PEER_STATE[self.pair.client.state] is self.pair.server.state

    @invariant()
    def error_is_sticky(self) -> None:
        assert (self.pair.client.state is ClientState.ERROR) == self.broken
        assert self.pair.server.state is not ServerState.ERROR

    @invariant()
    def sessions_agree(self) -> None:
        """Once confirmed, the client holds the session the server enforces."""
        client, server = self.pair.client, self.pair.server
        settled = client.state in (ClientState.STREAMING, ClientState.FINISHING)
        if not self.broken and settled and server.pending_confirms == 0:
            assert client.session == server.session

    @invariant()
    def open_responses_agree(self) -> None:
        """The server's open responses are the ones this test still has frames for."""
        if self.pair.server.state in (ServerState.ACTIVE, ServerState.FINISHING):
            assert set(self.pair.server.open_responses) == set(self.responses)

    @invariant()
    def client_event_ids(self) -> None:
        """Every client frame has a fresh event_id: ``event_`` + 32 hex digits."""
        seen: set[str] = set()
        for side, frame in self.pair.wire:
            if side == "client":
                event_id = json.loads(frame)["event_id"]
                assert event_id.startswith("event_") and len(event_id) == 38
                assert event_id not in seen
                seen.add(event_id)


RealtimeSession.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class TestSession(RealtimeSession.TestCase):
    """Hypothesis drives RealtimeSession; pytest collects it through this class."""
