"""Peer-pair tests of the realtime cores: our client against our server, frame by frame (R12.1),
plus the DASHSCOPE.md §5.3 example replayed verbatim into the client and reproduced by the server."""

from __future__ import annotations

import base64
import itertools
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from realtime_helpers import (
    EXAMPLE_ASR_FAILED,
    EXAMPLE_ERRORS,
    EXAMPLE_MANUAL_ACKS,
    EXAMPLE_SESSION_CREATED,
    EXAMPLE_TEXT_MODE,
    INVALID_UPDATE,
    JPEG,
    MODEL,
    PCM,
    SDK_1X_DEFAULT_UPDATE,
    SERVER_FRAMES,
    SESSION_ID,
    Pair,
    dumps,
    example_frames,
    frame_dict,
    pair_in,
)

from adapters.dashscope import realtime_messages as m
from adapters.dashscope._realtime_state import ClientState, ServerState
from adapters.dashscope.realtime import RealtimeClient, RealtimeServer, new_event_id
from adapters.dashscope.realtime_session import (
    ServerVad,
    SessionSettings,
    TranscriptionSettings,
    TranslationSettings,
    VoiceCloneOptions,
)
from adapters.dashscope.realtime_wire import WireTranscription, WireTurnDetection, WireUsage
from engine.errors import LocalProtocolError

TEXT_ONLY = SessionSettings(modalities=("text",))
ASR_OFF = SessionSettings(input_audio_transcription=TranscriptionSettings(model=None))
MANUAL = SessionSettings(turn_detection=None)
EXAMPLE_PCM = b"\x00\x00\x01\x00\x02\x00"
EXAMPLE_USAGE = WireUsage(
    total_tokens=61,
    input_tokens=50,
    output_tokens=11,
    input_tokens_details={"text_tokens": 20, "audio_tokens": 30},
    output_tokens_details={"text_tokens": 6, "audio_tokens": 5},
)


@pytest.fixture(name="pair")
def _pair() -> Pair:
    return Pair()


def example_server(first_event: int) -> RealtimeServer:
    """A server whose ids are those of the §5.3 example: event_S<n>, conv_C1, sess_Q8d2."""
    events = (f"event_S{n}" for n in itertools.count(first_event))
    ids = {"conv": lambda: "conv_C1", "event": lambda: next(events)}
    return RealtimeServer(MODEL, ids=lambda prefix: ids[prefix](), session_id=SESSION_ID)


class TestSessionSetup:
    def test_session_created_is_the_example(self) -> None:
        """The server's first frame is §5.3's session.created, field for field."""
        server = example_server(1)
        frame = server.send(m.CreateSession())
        assert json.loads(frame) == frame_dict(EXAMPLE_SESSION_CREATED)
        assert server.state is ServerState.ACTIVE

    def test_update_sends_explicit_values(self, pair: Pair) -> None:
        """session.update carries every setting explicitly (§10 item 17), ASR model included."""
        pair.configure()
        assert pair.last_frame() == {
            "event_id": "event_" + "0" * 31 + "1",
            "type": "session.update",
            "session": {
                "modalities": ["text", "audio"],
                "voice": "Tina",
                "sample_rate": 16000,
                "input_audio_format": "pcm",
                "output_audio_format": "pcm",
                "input_audio_transcription": {"model": "qwen3-asr-flash-realtime"},
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.2,
                    "silence_duration_ms": 1000,
                },
                "translation": {"language": "en"},
            },
        }
        assert pair.states() == (ClientState.CONFIGURING, ServerState.ACTIVE)
        assert pair.client.pending_update == "event_" + "0" * 31 + "1"

    def test_default_event_ids_look_like_the_sdk(self) -> None:
        """Without an injected source, event ids are ``event_`` + 32 hex digits."""
        assert re.fullmatch(r"event_[0-9a-f]{32}", new_event_id())
        client = RealtimeClient()
        client.receive_data(dumps(SERVER_FRAMES["session.created"]))
        frame = json.loads(client.send(m.UpdateSession(SessionSettings())))
        assert re.fullmatch(r"event_[0-9a-f]{32}", frame["event_id"])

    def test_updated_echoes_the_full_config(self, pair: Pair) -> None:
        """session.updated carries the whole effective session; the client keeps it."""
        settings = SessionSettings(
            translation=TranslationSettings(language="ja", phrases={"通义千问": "Qwen"}),
            input_audio_transcription=TranscriptionSettings(language="zh"),
        )
        pair.stream(settings)
        session = pair.last_frame()["session"]
        assert session["id"] == SESSION_ID
        assert session["translation"] == {
            "language": "ja",
            "corpus": {"phrases": {"通义千问": "Qwen"}},
        }
        assert session["input_audio_transcription"] == {
            "model": "qwen3-asr-flash-realtime",
            "language": "zh",
        }
        assert session["turn_detection"]["prefix_padding_ms"] == 300  # kept from the defaults
        assert pair.client.session == pair.server.session
        assert pair.client.pending_update is None

    def test_update_before_created(self, pair: Pair) -> None:
        """The 1.x SDK's session.update may arrive before session.created went out (§11.11)."""
        [event] = pair.deliver("server", SDK_1X_DEFAULT_UPDATE)
        assert isinstance(event, m.SessionUpdateRequested)
        assert pair.server.state is ServerState.CONNECTED
        created = pair.server.send(m.CreateSession())
        # session.created shows what the service created: the defaults
        assert json.loads(created)["session"]["input_audio_format"] == "pcm"
        updated = json.loads(pair.server.send(m.ConfirmSession()))["session"]
        assert updated["input_audio_format"] == "pcm16"

    def test_sdk_1x_default_update_accepted(self, pair: Pair) -> None:
        """§5.6's default update (pcm16, ASR model null, 800 ms silence) is valid; ASR goes off."""
        pair.create()
        [event] = pair.deliver("server", SDK_1X_DEFAULT_UPDATE)
        assert isinstance(event, m.SessionUpdateRequested)
        assert event.event_id == "event_ec94…"
        session = event.session
        assert (session.input_audio_format, session.output_audio_format) == ("pcm16", "pcm16")
        assert session.input_audio_transcription == WireTranscription(model=None)
        assert session.turn_detection == WireTurnDetection(
            type="server_vad",
            threshold=0.2,
            prefix_padding_ms=300,
            silence_duration_ms=800,
            create_response=True,
            interrupt_response=True,
        )
        assert not pair.server.asr_enabled
        assert pair.server.audio_output

    def test_sdk_null_voice_means_default(self, pair: Pair) -> None:
        """``voice: null`` (the 1.x SDK without a voice) keeps the model's default voice."""
        frame = frame_dict(SDK_1X_DEFAULT_UPDATE)
        frame["session"]["voice"] = None
        [event] = pair.deliver("server", dumps(frame))
        assert isinstance(event, m.SessionUpdateRequested)
        assert event.session.voice == "Tina"

    def test_rejected_update(self, pair: Pair) -> None:
        """modalities ['audio'] alone → §5.3's invalid_value error; the client is READY again."""
        pair.create()
        pair.client.send(m.UpdateSession(SessionSettings()))  # what we sent …
        before = pair.server.session
        [event] = pair.deliver("server", dumps(INVALID_UPDATE))  # … and what a peer might send
        assert isinstance(event, m.SessionUpdateRejected)
        assert pair.server.session == before  # the previous config stays in force
        assert event.reply == m.SendError(
            "invalid_value",
            "Invalid modalities: ['audio']. Supported combinations are: ['text'] and ['audio', 'text'].",
            "session.modalities",
            "event_bad1",
        )
        [error] = pair.send("server", event.reply)
        expected = frame_dict(EXAMPLE_ERRORS)["error"] | {"event_id": "event_bad1"}
        assert pair.last_frame()["error"] == expected
        assert isinstance(error, m.ServerError)
        assert pair.states() == (ClientState.READY, ServerState.ACTIVE)
        assert pair.client.pending_update is None
        pair.send("client", m.UpdateSession(TEXT_ONLY))  # a corrected retry
        pair.send("server", m.ConfirmSession())
        assert pair.client.state is ClientState.STREAMING

    @pytest.mark.parametrize(("voice", "accepted"), [("Tina", False), ("default", True)])
    def test_voice_clone_rule(self, pair: Pair, voice: str, accepted: bool) -> None:
        """Cloning once/always needs voice 'default' (param session.voice otherwise)."""
        update = {
            "type": "session.update",
            "session": {
                "voice": voice,
                "enable_voice_clone": True,
                "voice_clone_options": {"frequency": "once"},
            },
        }
        [event] = pair.deliver("server", dumps(update))
        if accepted:
            assert isinstance(event, m.SessionUpdateRequested)
        else:
            assert isinstance(event, m.SessionUpdateRejected)
            assert event.reply.param == "session.voice"


class TestAudio:
    @settings(max_examples=60, deadline=None)
    @given(pcm=st.binary(max_size=4096))
    def test_base64_round_trip(self, pcm: bytes) -> None:
        """Audio goes up as standard base64 and comes out of the server as the same bytes."""
        pair = pair_in(ClientState.STREAMING)
        [event] = pair.send("client", m.AppendAudio(pcm))
        assert pair.last_frame()["audio"] == base64.b64encode(pcm).decode()
        assert event.pcm == pcm

    def test_image_append(self, pair: Pair) -> None:
        """A JPEG frame goes up base64-encoded in input_image_buffer.append."""
        pair.stream()
        [event] = pair.send("client", m.AppendImage(JPEG))
        assert pair.last_frame()["type"] == "input_image_buffer.append"
        assert pair.last_frame()["image"] == base64.b64encode(JPEG).decode()
        assert event == m.ImageAppended(pair.last_frame()["event_id"], JPEG)

    def test_audio_delta_round_trip(self, pair: Pair) -> None:
        """Translated speech comes down base64 and reaches the engine decoded."""
        pair.stream()
        commands = pair.server.response_commands("Hi.", source_item_id="item_A", audio=[PCM])
        events = pair.send("server", commands)
        [delta] = [e for e in events if isinstance(e, m.AudioDelta)]
        assert delta.pcm == PCM
        assert delta.source_item_id == "item_A"

    def test_oversized_append_refused(self) -> None:
        """An append larger than MAX_AUDIO_APPEND or an image over 500 KB is refused up front."""
        with pytest.raises(ValueError, match="at most"):
            m.AppendAudio(bytes(m.MAX_AUDIO_APPEND + 1))
        with pytest.raises(ValueError, match="at most"):
            m.AppendImage(bytes(m.MAX_IMAGE_BYTES + 1))


class TestExample:
    def test_client_replays_the_example(self) -> None:
        """§5.3 S1–S18 verbatim (the elided audio made decodable) → these normalized events."""
        client = RealtimeClient()
        client.receive_data(EXAMPLE_SESSION_CREATED)
        client.send(m.UpdateSession(SessionSettings()))
        observed: list[Any] = list(client.events())
        for frame in example_frames():
            if '"session.finished"' in frame:
                client.send(m.FinishSession())
            client.receive_data(frame)
            observed.extend(client.events())
        session = observed[1].session
        assert observed[2:] == [
            m.SpeechStarted(420, None),
            m.SourcePartial("item_A1", "", "今天天气", "zh", "neutral"),
            m.ItemCreated("item_T1", "item_A1", "assistant"),
            m.ResponseCreated("resp_R1"),
            m.OutputItemAdded("resp_R1", "item_T1"),
            m.ContentPartAdded("resp_R1", "item_T1", "audio"),
            m.TranslationPartial("resp_R1", "item_T1", "The weather", " today", "item_A1"),
            m.AudioDelta("resp_R1", "item_T1", EXAMPLE_PCM, "item_A1"),
            m.SpeechStopped(2650, None),
            m.SourceFinal("item_A1", "今天天气很好。", "zh", "neutral"),
            m.TranslationFinal("resp_R1", "item_T1", "The weather is nice today.", "item_A1"),
            m.AudioDone("resp_R1", "item_T1"),
            m.ContentPartDone("resp_R1", "item_T1", "audio", "The weather is nice today."),
            m.OutputItemDone("resp_R1", "item_T1", "completed"),
            m.ResponseDone("resp_R1", "completed", EXAMPLE_USAGE, "item_A1"),
            m.SessionFinished(),
        ]
        assert isinstance(observed[0], m.SessionCreated)
        assert observed[0].session.id == "sess_Q8d2"
        assert session.translation is not None
        assert client.state is ClientState.FINISHED

    def test_server_reproduces_the_example(self) -> None:
        """Our server's frames for that session equal §5.3 S1–S18, field for field.

        The example's session.updated (S2) is abridged; ours carries the full
        session, so S2 is checked as "every field of the example, same value".
        """
        server = example_server(1)
        assert json.loads(server.send(m.CreateSession())) == frame_dict(EXAMPLE_SESSION_CREATED)
        server.receive_data(dumps({"type": "session.update", "session": {}}))
        list(server.events())
        s2, produced_s2 = (
            frame_dict(example_frames()[0]),
            json.loads(server.send(m.ConfirmSession())),
        )
        assert produced_s2["event_id"] == s2["event_id"]
        assert produced_s2["session"] | s2["session"] == produced_s2["session"]
        text = "The weather is nice today."
        commands: list[Any] = [
            m.StartSpeech(420),
            m.SendSourcePartial("item_A1", "", "今天天气", "zh", "neutral"),
            m.CreateItem("item_T1", "item_A1"),
            m.CreateResponse("resp_R1", "item_T1"),
            m.AddOutputItem("resp_R1", "item_T1"),
            m.AddContentPart("resp_R1", "item_T1"),
            m.SendTranslationPartial("resp_R1", "item_T1", "The weather", " today"),
            m.SendAudioDelta("resp_R1", "item_T1", EXAMPLE_PCM),
            m.StopSpeech(2650),
            m.SendSourceFinal("item_A1", "今天天气很好。", "zh", "neutral"),
            m.SendTranslationFinal("resp_R1", "item_T1", text),
            m.FinishAudio("resp_R1", "item_T1"),
            m.FinishContentPart("resp_R1", "item_T1", text),
            m.FinishOutputItem("resp_R1", "item_T1", text),
            m.FinishResponse("resp_R1", "item_T1", text, EXAMPLE_USAGE),
        ]
        produced = [json.loads(frame) for frame in server.send_all(commands)]
        expected = [json.loads(frame) for frame in example_frames()[1:-1]]
        assert produced == expected
        server.receive_data(dumps({"type": "session.finish"}))
        list(server.events())
        assert json.loads(server.send(m.FinishSessionReply())) == json.loads(example_frames()[-1])

    def test_segment_commands_follow_the_example(self, pair: Pair) -> None:
        """segment_commands yields §5.3's order: speech, ASR, response, stop, finals."""
        pair.stream()
        commands = pair.server.segment_commands(
            "今天天气很好。",
            "The weather is nice today.",
            start_ms=420,
            end_ms=2650,
            source_partials=[("", "今天天气")],
            translation_partials=[("The weather", " today")],
            audio=[EXAMPLE_PCM],
            language="zh",
        )
        events = pair.send("server", commands)
        kinds = [type(e).__name__ for e in events]
        assert kinds == [
            "SpeechStarted",
            "SourcePartial",
            "ItemCreated",
            "ResponseCreated",
            "OutputItemAdded",
            "ContentPartAdded",
            "TranslationPartial",
            "AudioDelta",
            "SpeechStopped",
            "SourceFinal",
            "TranslationFinal",
            "AudioDone",
            "ContentPartDone",
            "OutputItemDone",
            "ResponseDone",
        ]
        assert pair.server.open_responses == {}

    def test_text_mode_example(self) -> None:
        """§5.3's text-only frames become the same translation events (stash empty)."""
        client = pair_in(ClientState.STREAMING).client
        events = []
        for frame in EXAMPLE_TEXT_MODE.splitlines():
            client.receive_data(frame)
            events.extend(client.events())
        assert events == [
            m.TranslationPartial("resp_R1", "item_T1", "The weather is", "", None),
            m.TranslationFinal("resp_R1", "item_T1", "The weather is nice today.", None),
        ]

    def test_asr_failed_and_manual_acks(self) -> None:
        """§5.3's failed transcription and manual-mode acknowledgements."""
        client = pair_in(ClientState.STREAMING).client
        events = []
        for frame in [EXAMPLE_ASR_FAILED, *EXAMPLE_MANUAL_ACKS.splitlines()]:
            client.receive_data(frame)
            events.extend(client.events())
        assert events == [
            m.SourceFailed("item_A4", "InternalError", "recognition failed"),
            m.AudioCommitted(None, None),
            m.AudioCleared(),
        ]


class TestModes:
    def test_text_only(self, pair: Pair) -> None:
        """modalities ['text']: response.text.* frames, text parts, and no audio allowed."""
        pair.stream(TEXT_ONLY)
        assert not pair.server.audio_output
        commands = pair.server.response_commands(
            "Nice.", source_item_id="item_A", partials=[("Ni", "ce")], audio=[PCM]
        )
        pair.send("server", commands)
        types = [json.loads(f)["type"] for _, f in pair.wire[-8:] if isinstance(f, str)]
        assert "response.text.text" in types
        assert "response.text.done" in types
        assert not [t for t in types if t.startswith("response.audio")]
        with pytest.raises(LocalProtocolError, match="audio output is off"):
            pair.server.send(m.SendAudioDelta("r", "i", PCM))

    def test_asr_off(self, pair: Pair) -> None:
        """input_audio_transcription.model null: no source events, and the core refuses them."""
        pair.stream(ASR_OFF)
        assert pair.wire[-2][1].count('"input_audio_transcription":{"model":null}') == 1
        assert not pair.server.asr_enabled
        commands = pair.server.segment_commands("x", "y", start_ms=0, end_ms=10)
        events = pair.send("server", commands)
        assert not [e for e in events if isinstance(e, m.SourcePartial | m.SourceFinal)]
        with pytest.raises(LocalProtocolError, match="transcription is off"):
            pair.server.send(m.SendSourceFinal("item_1", "x"))

    def test_manual_mode(self, pair: Pair) -> None:
        """turn_detection null: the client commits; the server acks; no speech events."""
        pair.stream(MANUAL)
        assert json.loads(pair.wire[-2][1])["session"]["turn_detection"] is None
        assert pair.server.manual_mode
        pair.send("client", [m.AppendAudio(PCM), m.Commit(), m.Clear()])
        pair.send("server", [m.AckCommit("item_U1", None), m.AckClear()])
        commands = pair.server.segment_commands("x", "y", start_ms=0, end_ms=10)
        events = pair.send("server", commands)
        assert not [e for e in events if isinstance(e, m.SpeechStarted | m.SpeechStopped)]

    def test_voice_clone_settings(self, pair: Pair) -> None:
        """Clone options go on the wire and the server accepts voice 'default'."""
        clone = SessionSettings(
            voice="default",
            enable_voice_clone=True,
            voice_clone_options=VoiceCloneOptions(frequency="always"),
            turn_detection=ServerVad(silence_duration_ms=600),
        )
        pair.stream(clone)
        assert pair.server.session.enable_voice_clone is True


class TestCorrelation:
    def test_interleaved_segments(self, pair: Pair) -> None:
        """Two responses in flight at once: each translation names its own ASR item."""
        pair.stream()
        first = pair.server.response_commands("One.", source_item_id="asr_1", partials=[("O", "")])
        second = pair.server.response_commands("Two.", source_item_id="asr_2", partials=[("T", "")])
        mixed = [c for pair_ in itertools.zip_longest(first, second) for c in pair_ if c]
        events = pair.send("server", mixed)
        sources = {
            e.text: e.source_item_id
            for e in events
            if isinstance(e, m.TranslationPartial | m.TranslationFinal)
        }
        assert sources == {"O": "asr_1", "One.": "asr_1", "T": "asr_2", "Two.": "asr_2"}

    def test_asr_after_response_done(self, pair: Pair) -> None:
        """ASR events may trail the translation response (any relative order, §5.4)."""
        pair.stream()
        pair.send("server", pair.server.response_commands("Late.", source_item_id="asr_9"))
        events = pair.send("server", m.SendSourceFinal("asr_9", "晚了。", "zh", "neutral"))
        assert events == [m.SourceFinal("asr_9", "晚了。", "zh", "neutral")]

    def test_translation_without_item_created(self) -> None:
        """A translation whose item was never announced has no source (not a violation)."""
        client = pair_in(ClientState.STREAMING).client
        client.receive_data(dumps(SERVER_FRAMES["response.audio_transcript.text"]))
        [event] = client.events()
        assert isinstance(event, m.TranslationPartial)
        assert event.source_item_id is None

    def test_user_items_are_not_sources(self, pair: Pair) -> None:
        """A user audio item (manual mode) is not mistaken for a translation's source link."""
        pair.stream(MANUAL)
        pair.send("server", m.CreateItem("item_U1", "item_U0", role="user"))
        assert pair.client._sources == {}


class TestErrors:
    def test_invalid_request_error_goes_on(self) -> None:
        """invalid_request_error while streaming: reported, the session stays open."""
        client = pair_in(ClientState.STREAMING).client
        client.receive_data(EXAMPLE_ERRORS)
        [event] = client.events()
        assert type(event) is m.ServerError
        assert (event.code, event.param) == ("invalid_value", "session.modalities")
        assert client.state is ClientState.STREAMING

    def test_fatal_error_ends_the_session(self, pair: Pair) -> None:
        """Any other error type: FAILED on both sides; only the close remains."""
        pair.stream()
        [event] = pair.send("server", m.FailSession("InternalError", "boom"))
        assert isinstance(event, m.FatalServerError)
        assert pair.states() == (ClientState.FAILED, ServerState.FAILED)
        assert pair.close() == ([m.ConnectionClosed()], [m.ConnectionClosed()])

    def test_error_while_finishing_fails(self, pair: Pair) -> None:
        """Any error after session.finish: no session.finished will come (as both SDKs)."""
        pair.finish()
        pair.send("server", m.SendError("invalid_value", "invalid event type"))
        assert pair.states() == (ClientState.FAILED, ServerState.FAILED)

    def test_fail_session_is_not_invalid_request(self) -> None:
        with pytest.raises(ValueError, match="not fatal"):
            m.FailSession("x", "y", type="invalid_request_error")

    def test_unknown_event_is_lenient(self) -> None:
        """An event type we do not know is reported and changes nothing (§10.8)."""
        client = pair_in(ClientState.STREAMING).client
        client.receive_data(dumps({"type": "response.audio_transcript.delta", "delta": 5}))
        assert list(client.events()) == [m.UnknownEvent("response.audio_transcript.delta")]
        assert client.state is ClientState.STREAMING

    def test_finished_without_finish_is_a_violation(self) -> None:
        client = pair_in(ClientState.STREAMING).client
        client.receive_data(dumps(SERVER_FRAMES["session.finished"]))
        [event] = client.events()
        assert isinstance(event, m.ProtocolViolation)
        assert client.state is ClientState.ERROR


class TestFinish:
    def test_flush_then_finished(self, pair: Pair) -> None:
        """After session.finish the server still sends the pending segment, then finished."""
        pair.finish()
        pair.send("server", pair.server.segment_commands("a", "b", start_ms=0, end_ms=5))
        pair.send("server", m.FinishSessionReply())
        assert pair.states() == (ClientState.FINISHED, ServerState.FINISHED)
        assert pair.close() == ([m.ConnectionClosed()], [m.ConnectionClosed()])

    def test_finished_waits_for_open_responses(self, pair: Pair) -> None:
        """The server core refuses session.finished while a response is open."""
        pair.finish()
        pair.send("server", pair.server.response_commands("x", source_item_id=None)[:3])
        with pytest.raises(LocalProtocolError, match="open responses"):
            pair.server.send(m.FinishSessionReply())
        assert pair.server.state is ServerState.ERROR

    def test_finished_only_after_finish(self, pair: Pair) -> None:
        pair.stream()
        with pytest.raises(LocalProtocolError):
            pair.server.send(m.FinishSessionReply())

    def test_finish_while_configuring(self, pair: Pair) -> None:
        """session.finish before session.updated: the late confirmation is still fine."""
        pair.configure()
        pair.send("client", m.FinishSession())
        pair.send("server", [m.ConfirmSession(), m.FinishSessionReply()])
        assert pair.states() == (ClientState.FINISHED, ServerState.FINISHED)

    def test_late_input_after_finish(self, pair: Pair) -> None:
        """Audio after session.finish is reported (to be ignored); an update is a BadRequest."""
        pair.finish()
        append = dumps(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(PCM).decode()}
        )
        assert pair.deliver("server", append) == [m.AudioAppended(None, PCM)]
        [bad] = pair.deliver("server", SDK_1X_DEFAULT_UPDATE)
        assert isinstance(bad, m.BadRequest)
        assert bad.event_id == "event_ec94…"
        assert pair.server.state is ServerState.FINISHING


class TestServerGuards:
    def test_response_ids_must_match(self, pair: Pair) -> None:
        """A response command for another item than the open response's is our bug: ERROR."""
        pair.stream()
        pair.send("server", [m.CreateItem("item_T", "item_A"), m.CreateResponse("resp", "item_T")])
        with pytest.raises(LocalProtocolError, match="open responses"):
            pair.server.send(m.AddOutputItem("resp", "item_X"))
        assert pair.server.state is ServerState.ERROR

    def test_response_id_reuse(self, pair: Pair) -> None:
        pair.stream()
        pair.send("server", m.CreateResponse("resp", "item"))
        with pytest.raises(LocalProtocolError, match="already open"):
            pair.server.send(m.CreateResponse("resp", "item"))

    def test_unknown_client_type(self) -> None:
        """An omni-only event type is a BadRequest that names it and keeps the event id."""
        server = pair_in(ClientState.STREAMING).server
        server.receive_data(dumps({"event_id": "e1", "type": "response.create", "response": {}}))
        assert list(server.events()) == [m.BadRequest("invalid event type 'response.create'", "e1")]

    def test_binary_frames(self) -> None:
        """Binary frames: a violation for the client, a BadRequest for the server."""
        pair = pair_in(ClientState.STREAMING)
        [bad] = pair.deliver("server", PCM)
        assert isinstance(bad, m.BadRequest)
        [violation] = pair.deliver("client", PCM)
        assert isinstance(violation, m.ProtocolViolation)
