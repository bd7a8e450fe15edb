"""Peer-pair tests of the inference cores: our client against our server, frame by frame (R12.1)."""

from __future__ import annotations

import pytest
from helpers import (
    FINAL,
    GUMMY_FINAL,
    GUMMY_PARTIAL,
    HEARTBEAT,
    MODEL,
    OTHER_TASK_ID,
    PARAMETERS,
    PARTIAL,
    PCM,
    TASK_ID,
    Pair,
    client_frame,
    dumps,
    pair_in,
    run_task_payload,
)

from adapters.dashscope import messages as m
from adapters.dashscope._state import State
from engine.errors import LocalProtocolError

TIMEOUT = m.FailTask("CLIENT_ERROR", "request timeout after 23 seconds.")


@pytest.fixture(name="pair")
def _pair() -> Pair:
    return Pair()


def states(pair: Pair) -> tuple[State, State]:
    return pair.client.state, pair.server.state


class TestFullTask:
    def test_run_task_frame(self, pair: Pair) -> None:
        """run-task carries the header keys and the audio/asr/recognition payload of §2.2."""
        pair.run_task()
        assert pair.wire[-1][0] == "client"
        assert isinstance(pair.wire[-1][1], str)
        assert pair.last_frame() == {
            "header": {"action": "run-task", "task_id": TASK_ID, "streaming": "duplex"},
            "payload": {
                "task_group": "audio",
                "task": "asr",
                "function": "recognition",
                "model": MODEL,
                "parameters": PARAMETERS,
                "input": {},
            },
        }
        assert states(pair) == (State.STARTING, State.STARTING)

    def test_run_task_resources(self, pair: Pair) -> None:
        """Hot-phrase resources go into payload.resources; raw input into payload.input."""
        resources = [{"resource_id": "phrase-1", "resource_type": "asr_phrase"}]
        context = {"context": [{"role": "user", "content": []}]}
        pair.send("client", m.RunTask(TASK_ID, MODEL, PARAMETERS, context, resources))
        payload = pair.last_frame()["payload"]
        assert payload["resources"] == resources
        assert payload["input"] == context

    def test_task_started_frame(self, pair: Pair) -> None:
        """task-started echoes the task id with empty attributes and payload."""
        pair.run_task()
        events = pair.send("server", m.StartTask())
        assert events == [m.TaskStarted(TASK_ID)]
        assert pair.last_frame() == {
            "header": {"task_id": TASK_ID, "event": "task-started", "attributes": {}},
            "payload": {},
        }
        assert states(pair) == (State.STREAMING, State.STREAMING)

    def test_audio_is_a_binary_frame(self, pair: Pair) -> None:
        """Audio travels as the raw bytes of a binary frame, not inside JSON."""
        pair.start()
        events = pair.send("client", m.SendAudio(PCM))
        assert pair.wire[-1] == ("client", PCM)
        assert events == [m.AudioReceived(PCM)]

    def test_partial_then_final(self, pair: Pair) -> None:
        """A partial (end_time null) and a final (integer end_time, usage) decode in order."""
        pair.start()
        partial, final = pair.send(
            "server", [m.SendResult(PARTIAL), m.SendResult(FINAL, {"duration": 2})]
        )
        assert isinstance(partial, m.ResultGenerated)
        assert isinstance(final, m.ResultGenerated)
        assert partial.output.sentence is not None
        assert not partial.output.sentence.is_final
        assert partial.output.sentence.text == "Good morn"
        assert partial.usage is None
        assert final.output.sentence is not None
        assert final.output.sentence.is_final
        assert [w.text for w in final.output.sentence.words] == ["Good", "morning", "everyone"]
        assert final.usage == {"duration": 2}

    def test_result_frame(self, pair: Pair) -> None:
        """result-generated puts the output under payload.output and omits an absent usage."""
        pair.start()
        pair.send("server", m.SendResult(PARTIAL))
        assert pair.last_frame() == {
            "header": {"task_id": TASK_ID, "event": "result-generated", "attributes": {}},
            "payload": {"output": PARTIAL},
        }

    def test_finish_task_frame(self, pair: Pair) -> None:
        """finish-task has the same header keys and the payload {"input": {}}."""
        pair.start()
        events = pair.send("client", m.FinishTask())
        assert events == [m.FinishRequested(TASK_ID)]
        assert pair.last_frame() == {
            "header": {"action": "finish-task", "task_id": TASK_ID, "streaming": "duplex"},
            "payload": {"input": {}},
        }
        assert states(pair) == (State.FINISHING, State.FINISHING)

    def test_results_after_finish(self, pair: Pair) -> None:
        """Results for buffered audio may still arrive after finish-task."""
        pair.start()
        pair.send("client", m.FinishTask())
        pair.send("server", m.SendResult(FINAL))
        assert states(pair) == (State.FINISHING, State.FINISHING)

    def test_task_finished_frame(self, pair: Pair) -> None:
        """task-finished has a non-empty payload: an empty output and the usage."""
        pair.start()
        pair.send("client", m.FinishTask())
        events = pair.send("server", m.FinishTaskReply({"duration": 7}))
        assert events == [m.TaskFinished(TASK_ID, {"duration": 7})]
        assert pair.last_frame() == {
            "header": {"task_id": TASK_ID, "event": "task-finished", "attributes": {}},
            "payload": {"output": {}, "usage": {"duration": 7}},
        }
        assert states(pair) == (State.IDLE, State.IDLE)

    def test_task_finished_without_usage(self, pair: Pair) -> None:
        """Without a usage the payload still is non-empty, so the 1.x SDK's on_complete fires."""
        pair.start()
        pair.send("client", m.FinishTask())
        pair.send("server", m.FinishTaskReply())
        payload = pair.last_frame()["payload"]
        assert payload == {"output": {}, "usage": {"duration": 0}}

    def test_whole_task(self, pair: Pair) -> None:
        """run → started → audio → partial/final → finish → finished, with every state agreeing."""
        seen = []
        pair.run_task()
        seen.append(states(pair))
        pair.send("server", m.StartTask())
        seen.append(states(pair))
        pair.send("client", [m.SendAudio(PCM), m.SendAudio(PCM)])
        pair.send("server", [m.SendResult(PARTIAL), m.SendResult(FINAL)])
        seen.append(states(pair))
        pair.send("client", m.FinishTask())
        seen.append(states(pair))
        pair.send("server", m.FinishTaskReply({"duration": 1}))
        seen.append(states(pair))
        assert [c for c, s in seen if c is s] == [
            State.STARTING,
            State.STREAMING,
            State.STREAMING,
            State.FINISHING,
            State.IDLE,
        ]

    def test_continue_task(self, pair: Pair) -> None:
        """continue-task carries side data in payload.input and gets no reply."""
        context = {
            "context": [{"role": "user", "content": [{"type": "input_text", "text": "ACME"}]}]
        }
        pair.start()
        events = pair.send("client", m.ContinueTask(context))
        assert events == [m.ContinueRequested(TASK_ID, context)]
        assert pair.last_frame() == {
            "header": {"action": "continue-task", "task_id": TASK_ID, "streaming": "duplex"},
            "payload": {"input": context},
        }
        assert states(pair) == (State.STREAMING, State.STREAMING)


class TestConnectionReuse:
    def test_second_task(self, pair: Pair) -> None:
        """After task-finished the connection runs another task under a new id."""
        pair.complete(TASK_ID)
        pair.start(OTHER_TASK_ID)
        assert pair.client.task_id == pair.server.task_id == OTHER_TASK_ID
        pair.send("server", m.SendResult(FINAL))
        assert pair.last_frame()["header"]["task_id"] == OTHER_TASK_ID
        pair.send("client", m.FinishTask())
        assert pair.last_frame()["header"]["task_id"] == OTHER_TASK_ID
        pair.send("server", m.FinishTaskReply())
        assert states(pair) == (State.IDLE, State.IDLE)

    def test_reused_task_id(self, pair: Pair) -> None:
        """A task id used before is accepted again (the 1.x SDK reuses it)."""
        pair.complete(TASK_ID)
        pair.complete(TASK_ID)
        assert states(pair) == (State.IDLE, State.IDLE)

    def test_close_after_task(self, pair: Pair) -> None:
        """Closing the transport between tasks ends both sides in CLOSED."""
        pair.complete()
        client_events, server_events = pair.close()
        assert client_events == [m.ConnectionClosed()]
        assert server_events == [m.ConnectionClosed()]
        assert states(pair) == (State.CLOSED, State.CLOSED)


class TestTaskFailed:
    def test_failed_frame(self, pair: Pair) -> None:
        """task-failed carries error_code and error_message in the header and an empty payload."""
        pair.start()
        events = pair.send("server", TIMEOUT)
        assert events == [m.TaskFailed(TASK_ID, TIMEOUT.code, TIMEOUT.message)]
        assert pair.last_frame() == {
            "header": {
                "task_id": TASK_ID,
                "event": "task-failed",
                "error_code": "CLIENT_ERROR",
                "error_message": "request timeout after 23 seconds.",
                "attributes": {},
            },
            "payload": {},
        }
        assert states(pair) == (State.FAILED, State.FAILED)

    def test_rejected_run_task(self, pair: Pair) -> None:
        """A run-task answered with task-failed ends the task before it started."""
        pair.run_task()
        pair.send("server", m.FailTask("ModelNotFound", "Model not found"))
        assert states(pair) == (State.FAILED, State.FAILED)

    def test_failed_while_finishing(self, pair: Pair) -> None:
        """task-failed after finish-task also ends in FAILED."""
        pair.start()
        pair.send("client", m.FinishTask())
        pair.send("server", TIMEOUT)
        assert states(pair) == (State.FAILED, State.FAILED)

    @pytest.mark.parametrize(
        "command",
        [
            m.RunTask(OTHER_TASK_ID, MODEL, PARAMETERS),
            m.SendAudio(PCM),
            m.ContinueTask({}),
            m.FinishTask(),
        ],
        ids=lambda c: type(c).__name__,
    )
    def test_no_commands_after_failure(self, command: m.ClientCommand) -> None:
        """After task-failed the socket cannot be reused: every command is refused."""
        client = pair_in(State.FAILED).client
        with pytest.raises(LocalProtocolError):
            client.send(command)
        assert client.state is State.ERROR

    def test_server_replies_nothing_after_failure(self) -> None:
        """After task-failed the server may send nothing more either."""
        server = pair_in(State.FAILED).server
        with pytest.raises(LocalProtocolError):
            server.send(m.SendResult(FINAL))
        assert server.state is State.ERROR

    def test_close_after_failure(self) -> None:
        """The close that follows task-failed is the one input FAILED allows."""
        pair = pair_in(State.FAILED)
        pair.close()
        assert states(pair) == (State.CLOSED, State.CLOSED)


class TestHeartbeat:
    def test_heartbeat_event(self, pair: Pair) -> None:
        """A heartbeat sentence becomes a Heartbeat event, not a result."""
        pair.start()
        assert pair.send("server", m.SendResult(HEARTBEAT)) == [m.Heartbeat(TASK_ID)]
        assert states(pair) == (State.STREAMING, State.STREAMING)

    def test_heartbeat_while_finishing(self, pair: Pair) -> None:
        """Heartbeats may also arrive after finish-task."""
        pair.start()
        pair.send("client", m.FinishTask())
        assert pair.send("server", m.SendResult(HEARTBEAT)) == [m.Heartbeat(TASK_ID)]


class TestGummy:
    def test_partial(self, pair: Pair) -> None:
        """A gummy partial decodes its transcription and its translations by lang."""
        pair.start()
        (event,) = pair.send("server", m.SendResult(GUMMY_PARTIAL))
        assert isinstance(event, m.ResultGenerated)
        transcription = event.output.transcription
        assert transcription is not None
        assert transcription.text == "今天天"
        assert transcription.current_time == 1500
        assert not transcription.is_final
        assert [w.fixed for w in transcription.words] == [False, False]
        assert event.output.translations is not None
        assert [(t.lang, t.text) for t in event.output.translations] == [("en", "Today the")]

    def test_final_with_stash(self, pair: Pair) -> None:
        """A gummy final decodes end_time, the stash of the next sentence and the usage."""
        pair.start()
        (event,) = pair.send("server", m.SendResult(GUMMY_FINAL, {"duration": 3}))
        assert isinstance(event, m.ResultGenerated)
        transcription = event.output.transcription
        assert transcription is not None
        assert transcription.is_final
        assert transcription.stash is not None
        assert transcription.stash.sentence_id == 1
        assert event.output.translations is not None
        assert event.output.translations[0].is_final
        assert event.usage == {"duration": 3}

    @pytest.mark.parametrize("key", ["transcription", "translations"])
    def test_one_stream_alone(self, pair: Pair, key: str) -> None:
        """Either stream may be missing in one event (ASR and translation run in parallel)."""
        pair.start()
        (event,) = pair.send("server", m.SendResult({key: GUMMY_PARTIAL[key]}))
        assert isinstance(event, m.ResultGenerated)
        assert (event.output.transcription is None) == (key == "translations")
        assert (event.output.translations is None) == (key == "transcription")


class TestSpontaneousFinish:
    def test_finished_while_streaming(self, pair: Pair) -> None:
        """gummy-chat may send task-finished without finish-task: both sides go IDLE."""
        pair.start()
        pair.send("server", [m.SendResult(GUMMY_FINAL), m.FinishTaskReply({"duration": 3})])
        assert states(pair) == (State.IDLE, State.IDLE)

    def test_audio_refused_after(self, pair: Pair) -> None:
        """Once the task ended on its own, the client may no longer send audio."""
        pair.start()
        pair.send("server", m.FinishTaskReply())
        with pytest.raises(LocalProtocolError):
            pair.client.send(m.SendAudio(PCM))

    def test_next_task(self, pair: Pair) -> None:
        """A spontaneous finish leaves the connection reusable."""
        pair.start()
        pair.send("server", m.FinishTaskReply())
        pair.start(OTHER_TASK_ID)
        assert states(pair) == (State.STREAMING, State.STREAMING)


class TestServerLeniency:
    def test_finish_for_unknown_task_on_fresh_server(self, pair: Pair) -> None:
        """A finish-task on a connection that never ran a task is ignored."""
        assert pair.deliver("server", dumps(client_frame("finish-task", OTHER_TASK_ID))) == []
        assert pair.server.state is State.IDLE

    @pytest.mark.parametrize(
        "state", [State.IDLE, State.STARTING, State.STREAMING, State.FINISHING]
    )
    def test_finish_for_other_task(self, state: State) -> None:
        """A finish-task naming another task is ignored: no event, no state change."""
        pair = pair_in(state)
        assert pair.deliver("server", dumps(client_frame("finish-task", OTHER_TASK_ID))) == []
        assert pair.server.state is state

    def test_finish_for_finished_task(self) -> None:
        """A repeated finish-task for the task that just finished changes nothing."""
        pair = pair_in(State.IDLE)
        events = pair.deliver("server", dumps(client_frame("finish-task", TASK_ID)))
        assert events == [m.FinishRequested(TASK_ID)]
        assert pair.server.state is State.IDLE

    def test_audio_before_started(self, pair: Pair) -> None:
        """Audio that overtakes task-started is kept by the server."""
        pair.run_task()
        assert pair.deliver("server", PCM) == [m.AudioReceived(PCM)]
        assert pair.server.state is State.STARTING

    def test_second_run_task(self, pair: Pair) -> None:
        """A second run-task while a task runs is a BadRequest; the running task is untouched."""
        pair.start()
        frame = dumps(client_frame("run-task", OTHER_TASK_ID, run_task_payload()))
        (event,) = pair.deliver("server", frame)
        assert isinstance(event, m.BadRequest)
        assert "RunTaskRequested" in event.reason
        assert pair.server.state is State.STREAMING
        assert pair.server.task_id == TASK_ID
        pair.send("server", m.FailTask("InvalidParameter", "a task is already running"))
        assert states(pair) == (State.FAILED, State.FAILED)

    def test_continue_for_other_task(self, pair: Pair) -> None:
        """continue-task naming another task is a BadRequest, not side data for ours."""
        pair.start()
        frame = dumps(client_frame("continue-task", OTHER_TASK_ID, {"input": {"x": 1}}))
        (event,) = pair.deliver("server", frame)
        assert isinstance(event, m.BadRequest)
        assert pair.server.state is State.STREAMING

    def test_finish_before_started(self, pair: Pair) -> None:
        """A finish-task that overtakes task-started: the server still starts, then finishes."""
        pair.run_task()
        frame = dumps(client_frame("finish-task", TASK_ID))
        assert pair.deliver("server", frame) == [m.FinishRequested(TASK_ID)]
        assert pair.server.state is State.STARTING
        pair.send("server", [m.StartTask(), m.SendResult(FINAL), m.FinishTaskReply()])
        assert pair.server.state is State.IDLE

    def test_bad_frame_in_failed_keeps_reason(self) -> None:
        """A malformed frame after task-failed is reported with its parse error."""
        pair = pair_in(State.FAILED)
        (event,) = pair.deliver("server", "{")
        assert isinstance(event, m.BadRequest)
        assert event.reason.startswith("malformed client frame")
        assert pair.server.state is State.FAILED
