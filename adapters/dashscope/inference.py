"""Sans-IO cores of the DashScope inference protocol, client and server roles.

Each core has three verbs (house rule R1):

* ``receive_data(data)`` — a received frame (``str`` text, ``bytes`` binary) or
  ``None`` when the transport closed;
* ``events()`` — the events that input produced;
* ``send(command)`` — the frame to put on the wire for a command (``str`` for
  text, ``bytes`` for binary), after checking it against the state table.

No I/O, no clock, no logging: the transport in ``ws.py`` and the simulator do that.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from . import messages as m
from ._core import MAX_TEXT_FRAME, UNDECODABLE, Core
from ._state import CLIENT_TRANSITIONS, SERVER_TRANSITIONS, State

__all__ = ["MAX_TEXT_FRAME", "InferenceClient", "InferenceServer"]

_SERVER_EVENT_NAMES: Final = frozenset(
    {"task-started", "result-generated", "task-finished", "task-failed"}
)


class _Core(Core):
    """State bookkeeping shared by both roles of the inference protocol."""

    _table: dict[tuple[State, type[object]], State]
    _error = State.ERROR

    def __init__(self) -> None:
        super().__init__(State.IDLE)
        self.task_id: str | None = None

    @property
    def state(self) -> State:
        state: State = self._state
        return state


class InferenceClient(_Core):
    """The client (engine) role: sends actions and audio, reads server events."""

    _table = CLIENT_TRANSITIONS

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(m.ServerMessage)

    def send(self, command: m.ClientCommand) -> bytes | str:
        if type(command) is m.SendAudio and self._state is State.STREAMING:
            return command.pcm  # every audio frame: the table's STREAMING row, no match (#11)
        self._local(command)
        match command:
            case m.SendAudio(pcm):
                return pcm
            case m.RunTask(task_id, model, parameters, input_, resources):
                self.task_id = task_id
                payload: dict[str, Any] = {
                    "task_group": "audio",
                    "task": "asr",
                    "function": "recognition",
                    "model": model,
                    "parameters": parameters,
                    "input": input_,
                }
                if resources:
                    payload["resources"] = resources
                return self._frame("run-task", payload)
            case m.ContinueTask(input_):
                return self._frame("continue-task", {"input": input_})
            case m.FinishTask():
                return self._frame("finish-task", {"input": {}})
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    def _frame(self, action: str, payload: dict[str, Any]) -> str:
        assert self.task_id is not None
        header = {"action": action, "task_id": self.task_id, "streaming": "duplex"}
        return self._encoder.encode({"header": header, "payload": payload}).decode()

    def receive_data(self, data: bytes | str | None) -> None:
        self._check_live()
        if data is None:
            self._deliver(m.ConnectionClosed())
            return
        if isinstance(data, bytes):
            self._violation("the server sent a binary frame on the inference endpoint")
            return
        if len(data) > MAX_TEXT_FRAME:
            self._violation(f"text frame of {len(data)} characters exceeds {MAX_TEXT_FRAME}")
            return
        try:
            message = self._decoder.decode(data)
        except UNDECODABLE as exc:
            self._violation(f"malformed server frame: {exc}")
            return
        event = self._interpret(message)
        if event is not None:
            self._deliver(event)

    def _interpret(self, message: m.ServerMessage) -> m.ClientEvent | None:
        header = message.header
        if header.event not in _SERVER_EVENT_NAMES:
            return m.UnknownEvent(header.event)
        task_id = header.task_id if header.task_id is not None else (self.task_id or "")
        if self.task_id is not None and header.task_id not in (None, self.task_id):
            self._violation(f"{header.event} for task {header.task_id!r}, ours is {self.task_id!r}")
            return None
        match header.event:
            case "task-started":
                return m.TaskStarted(task_id)
            case "task-failed":
                if header.error_code is None or header.error_message is None:
                    self._violation("task-failed without error_code or error_message")
                    return None
                return m.TaskFailed(task_id, header.error_code, header.error_message)
            case "task-finished":
                usage = message.payload.usage if message.payload is not None else None
                return m.TaskFinished(task_id, usage)
        # result-generated
        payload = message.payload
        if payload is None or payload.output is None:
            self._violation("result-generated without payload.output")
            return None
        output = payload.output
        if output.sentence is not None and output.sentence.heartbeat:
            return m.Heartbeat(task_id)
        if output.sentence is None and output.transcription is None and output.translations is None:
            self._violation("result-generated with no sentence, transcription or translations")
            return None
        return m.ResultGenerated(task_id, output, payload.usage)

    def _deliver(self, event: m.ClientEvent) -> None:
        state_before = self._state
        if self._transition(event):
            self._events.append(event)
        else:
            self._events.append(
                m.ProtocolViolation(
                    f"{type(event).__name__} is not allowed in state {state_before.name}"
                )
            )

    def _violation(self, reason: str) -> None:
        self._state = State.ERROR
        self._events.append(m.ProtocolViolation(reason))


class InferenceServer(_Core):
    """The server (simulator) role: reads actions and audio, sends events."""

    _table = SERVER_TRANSITIONS

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(m.ClientMessage)

    def receive_data(self, data: bytes | str | None) -> None:
        self._check_live()
        if data is None:
            self._deliver(m.ConnectionClosed())
            return
        if isinstance(data, bytes):
            self._deliver(m.AudioReceived(data))
            return
        if len(data) > MAX_TEXT_FRAME:
            self._deliver(m.BadRequest(f"text frame of {len(data)} characters is too large"))
            return
        try:
            message = self._decoder.decode(data)
        except UNDECODABLE as exc:
            self._deliver(m.BadRequest(f"malformed client frame: {exc}"))
            return
        self._deliver(self._interpret(message))

    def take_audio(self, data: bytes) -> bool:
        """Take a binary frame in place if it is the streaming task's audio.

        While a task streams (and no event waits to be read), a binary frame is its
        audio and changes nothing here: True, and no :class:`~.messages.AudioReceived`
        is queued — the caller handles ``data`` as that event's ``pcm`` now. In any
        other state False, with nothing done: give the frame to :meth:`receive_data`.
        Not a checkpoint; never raises.
        """
        return self._state is State.STREAMING and not self._events

    def _interpret(self, message: m.ClientMessage) -> m.ServerEvent:
        header, payload = message.header, message.payload
        match header.action:
            case "run-task":
                model = payload.get("model")
                parameters = payload.get("parameters")
                input_ = payload.get("input", {})
                if not isinstance(model, str) or not isinstance(parameters, dict):
                    return m.BadRequest("run-task needs payload.model and payload.parameters")
                return m.RunTaskRequested(
                    task_id=header.task_id,
                    model=model,
                    parameters=parameters,
                    input=input_ if isinstance(input_, dict) else {},
                    task_group=_str_or_none(payload.get("task_group")),
                    task=_str_or_none(payload.get("task")),
                    function=_str_or_none(payload.get("function")),
                    streaming=header.streaming,
                )
            case "continue-task":
                if header.task_id != self.task_id:
                    # side data for another task must not reach the running one
                    return m.BadRequest(
                        f"continue-task for task {header.task_id!r}, ours is {self.task_id!r}"
                    )
                input_ = payload.get("input", {})
                return m.ContinueRequested(
                    header.task_id, input_ if isinstance(input_, dict) else {}
                )
            case "finish-task":
                return m.FinishRequested(header.task_id)
        return m.BadRequest(f"unknown action {header.action!r}")

    def _deliver(self, event: m.ServerEvent) -> None:
        if isinstance(event, m.RunTaskRequested) and self._state is State.IDLE:
            self.task_id = event.task_id
        if isinstance(event, m.FinishRequested) and event.task_id != self.task_id:
            return  # finish-task for a task that is not running: ignored (§11.9)
        state_before = self._state
        if self._transition(event):
            self._events.append(event)
        else:
            # A client action not allowed now (a second run-task while a task runs):
            # keep the connection usable and let the server reply task-failed.
            self._state = state_before
            self._events.append(
                m.BadRequest(f"{type(event).__name__} is not allowed in state {state_before.name}")
            )

    def send(self, command: m.ServerCommand) -> str:
        self._local(command)
        task_id = self.task_id or ""
        match command:
            case m.StartTask():
                return self._frame("task-started", task_id, {})
            case m.SendResult(output, usage):
                payload: dict[str, Any] = {"output": output}
                if usage is not None:
                    payload["usage"] = usage
                return self._frame("result-generated", task_id, payload)
            case m.FinishTaskReply(usage):
                # A non-empty payload with an empty output: the 1.x SDK's on_complete needs it.
                return self._frame(
                    "task-finished", task_id, {"output": {}, "usage": usage or {"duration": 0}}
                )
            case m.FailTask(code, message):
                return self._frame(
                    "task-failed",
                    task_id,
                    {},
                    error_code=code,
                    error_message=message,
                )
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    def _frame(self, event: str, task_id: str, payload: dict[str, Any], **extra: str) -> str:
        header: dict[str, Any] = {"task_id": task_id, "event": event, **extra, "attributes": {}}
        return self._encoder.encode({"header": header, "payload": payload}).decode()


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
