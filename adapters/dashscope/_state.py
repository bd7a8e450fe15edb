"""State tables of the DashScope inference ("task") protocol, client and server roles.

Theory of operation
-------------------
One WebSocket connection runs at most one task at a time (binary audio frames
carry no task id). A task is ``run-task`` … ``task-started`` … audio and
results … ``finish-task`` … ``task-finished``; after ``task-finished`` the
connection may run another task, after ``task-failed`` it may not.

Rule 1: every input (a command we send, or an event we receive) is looked up
in the role's table by ``(state, type(input))``. A missing key is a protocol
error: the core raises :class:`LocalProtocolError` for our own commands, and
reports a violation for the peer's events; either way the state becomes
``ERROR``.

Rule 2: ``ERROR`` is sticky. Every later call raises.

Rule 3: ``CLOSED`` is reached from any state when the transport closes, and is
final. ``FAILED`` (after ``task-failed``) only allows the close.

This module holds data only; the cores in ``inference.py`` apply it.
"""

from __future__ import annotations

import enum
from typing import Final

from . import messages as m

__all__ = ["CLIENT_TRANSITIONS", "SERVER_TRANSITIONS", "State"]


class State(enum.Enum):
    IDLE = "idle"  # no task: may send run-task
    STARTING = "starting"  # run-task sent, task-started not yet received
    STREAMING = "streaming"  # task running: audio flows up, results flow down
    FINISHING = "finishing"  # finish-task sent; reading until task-finished
    FAILED = "failed"  # task-failed: the server closes, the socket cannot be reused
    CLOSED = "closed"
    ERROR = "error"


_S = State

CLIENT_TRANSITIONS: Final[dict[tuple[State, type[object]], State]] = {
    # our commands
    (_S.IDLE, m.RunTask): _S.STARTING,
    (_S.STREAMING, m.SendAudio): _S.STREAMING,
    (_S.STREAMING, m.ContinueTask): _S.STREAMING,
    (_S.STREAMING, m.FinishTask): _S.FINISHING,
    # server events
    (_S.STARTING, m.TaskStarted): _S.STREAMING,
    (_S.STARTING, m.TaskFailed): _S.FAILED,
    (_S.STREAMING, m.ResultGenerated): _S.STREAMING,
    (_S.STREAMING, m.Heartbeat): _S.STREAMING,
    (_S.STREAMING, m.TaskFinished): _S.IDLE,  # gummy-chat may end on its own
    (_S.STREAMING, m.TaskFailed): _S.FAILED,
    (_S.FINISHING, m.ResultGenerated): _S.FINISHING,
    (_S.FINISHING, m.Heartbeat): _S.FINISHING,
    (_S.FINISHING, m.TaskFinished): _S.IDLE,
    (_S.FINISHING, m.TaskFailed): _S.FAILED,
    # lenient: unknown event names are reported, not fatal (checklist §10.8)
    **{(s, m.UnknownEvent): s for s in (_S.STARTING, _S.STREAMING, _S.FINISHING, _S.IDLE)},
    # the transport closing ends everything
    **{(s, m.ConnectionClosed): _S.CLOSED for s in State if s is not _S.ERROR},
}

SERVER_TRANSITIONS: Final[dict[tuple[State, type[object]], State]] = {
    # client requests
    (_S.IDLE, m.RunTaskRequested): _S.STARTING,
    # a fast client may send audio before it read task-started; keep it
    (_S.STARTING, m.AudioReceived): _S.STARTING,
    (_S.STREAMING, m.AudioReceived): _S.STREAMING,
    (_S.STREAMING, m.ContinueRequested): _S.STREAMING,
    (_S.STREAMING, m.FinishRequested): _S.FINISHING,
    # finish-task before we sent task-started: task-started must still go out first,
    # so stay STARTING; the FinishRequested event tells the server to finish after it
    (_S.STARTING, m.FinishRequested): _S.STARTING,
    # late audio or a repeated finish after finish-task: ignored
    (_S.FINISHING, m.AudioReceived): _S.FINISHING,
    (_S.FINISHING, m.FinishRequested): _S.FINISHING,
    (_S.FINISHING, m.ContinueRequested): _S.FINISHING,
    # a finish-task for a finished or unknown task is ignored (no reply, no close)
    (_S.IDLE, m.FinishRequested): _S.IDLE,
    (_S.IDLE, m.AudioReceived): _S.IDLE,
    # an unparsable frame is reported in any state and changes nothing
    **{(s, m.BadRequest): s for s in State if s is not _S.ERROR},
    # our replies
    (_S.STARTING, m.StartTask): _S.STREAMING,
    (_S.STARTING, m.FailTask): _S.FAILED,
    (_S.STREAMING, m.SendResult): _S.STREAMING,
    (_S.STREAMING, m.FinishTaskReply): _S.IDLE,  # gummy-chat's own end
    (_S.STREAMING, m.FailTask): _S.FAILED,
    (_S.FINISHING, m.SendResult): _S.FINISHING,
    (_S.FINISHING, m.FinishTaskReply): _S.IDLE,
    (_S.FINISHING, m.FailTask): _S.FAILED,
    **{(s, m.ConnectionClosed): _S.CLOSED for s in State if s is not _S.ERROR},
}
