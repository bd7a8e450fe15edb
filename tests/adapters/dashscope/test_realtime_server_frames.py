"""The realtime server core's frame mapping, both ways, as pure functions."""

from __future__ import annotations

import msgspec

from adapters.dashscope import realtime_messages as m
from adapters.dashscope import realtime_wire as w
from adapters.dashscope.realtime_server_frames import client_event, server_frame
from adapters.dashscope.realtime_session import default_session

MODEL = "qwen3.5-livetranslate-flash-realtime"
CREATED = default_session(MODEL, "sess_1")
TEXT_ONLY = msgspec.structs.replace(CREATED, modalities=["text"])


def decode(raw: str) -> w.AnyClientFrame:
    return msgspec.json.decode(raw, type=w.AnyClientFrame)


def frame(command: m.ServerCommand, session: w.WireSession = CREATED) -> w.ServerFrame:
    return server_frame(
        command, event_id="event_1", session=session, created=CREATED, conversation_id="conv_1"
    )


class TestClientEvent:
    def test_session_update_is_merged(self) -> None:
        """A valid update carries the merged session, the update itself and the event id."""
        raw = '{"type": "session.update", "event_id": "e1", "session": {"voice": "Cherry"}}'
        event = client_event(decode(raw), session=CREATED, created=CREATED)
        assert isinstance(event, m.SessionUpdateRequested)
        assert event.event_id == "e1" and event.session.voice == "Cherry"
        assert event.session.id == CREATED.id

    def test_bad_update_is_rejected_with_its_error(self) -> None:
        """An invalid update becomes the reply to send, naming the offending event."""
        raw = '{"type": "session.update", "event_id": "e2", "session": {"sample_rate": 7}}'
        event = client_event(decode(raw), session=CREATED, created=CREATED)
        assert isinstance(event, m.SessionUpdateRejected)
        assert isinstance(event.reply, m.SendError) and event.reply.event_id == "e2"

    def test_appends_and_buffer_requests(self) -> None:
        """Audio is decoded from base64; commit, clear and finish map one to one."""
        raw = '{"type": "input_audio_buffer.append", "audio": "AAE="}'
        assert client_event(decode(raw), session=CREATED, created=CREATED) == m.AudioAppended(
            None, b"\x00\x01"
        )
        for kind, event in (
            ("input_audio_buffer.commit", m.CommitRequested),
            ("input_audio_buffer.clear", m.ClearRequested),
            ("session.finish", m.FinishRequested),
        ):
            got = client_event(decode(f'{{"type": "{kind}"}}'), session=CREATED, created=CREATED)
            assert isinstance(got, event)


class TestServerFrame:
    def test_session_created_shows_the_defaults(self) -> None:
        """session.created is the session as created, session.updated the one in force."""
        created = frame(m.CreateSession(), TEXT_ONLY)
        updated = frame(m.ConfirmSession(), TEXT_ONLY)
        assert isinstance(created, w.SessionCreatedFrame) and created.session == CREATED
        assert isinstance(updated, w.SessionUpdatedFrame) and updated.session == TEXT_ONLY

    def test_translation_streams_as_audio_transcript_or_text(self) -> None:
        """With audio output a translation is response.audio_transcript.*, else response.text.*."""
        partial = m.SendTranslationPartial("resp_1", "item_1", "Hal", "")
        assert isinstance(frame(partial), w.AudioTranscriptTextFrame)
        text = frame(partial, TEXT_ONLY)
        assert isinstance(text, w.TextTextFrame) and text.stash is msgspec.UNSET

    def test_optional_ids_are_left_out(self) -> None:
        """An error without an offending event id has no event_id in its error object."""
        error = frame(m.SendError("invalid_value", "bad"))
        assert isinstance(error, w.ErrorFrame)
        assert error.error.event_id is msgspec.UNSET and error.error.type == "invalid_request_error"

    def test_response_done_reports_the_output(self) -> None:
        """response.done carries the finished item with its text under the modality's key."""
        done = frame(m.FinishResponse("resp_1", "item_1", "Hello.", None), TEXT_ONLY)
        assert isinstance(done, w.ResponseDoneFrame)
        assert done.response.conversation_id == "conv_1"
        assert done.response.output[0].content == [{"type": "text", "text": "Hello."}]
