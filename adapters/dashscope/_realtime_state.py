"""State tables of the DashScope realtime protocol, client and server roles.

Theory of operation
-------------------
One WebSocket is one session (DASHSCOPE.md §5.1, §5.4). The server speaks
first (``session.created``); the client configures it (``session.update`` →
``session.updated``), streams base64 audio (and images) up while ASR, VAD and
translation events stream down, then ends with ``session.finish`` and reads
until ``session.finished``. ASR and response events come in any relative order,
so every streaming state accepts every one of them.

Client:  CONNECTING ─created→ READY ─update→ CONFIGURING ─updated→ STREAMING
         ─finish→ FINISHING ─finished→ FINISHED. A non-fatal ``error`` in
         CONFIGURING is a rejected update: back to READY, the previous config
         stands. Audio may only be sent once configured (§10 item 17).
Server:  CONNECTED ─created→ ACTIVE ─finish received→ FINISHING ─finished→
         FINISHED. A ``session.update`` is accepted before ``session.created``
         went out (the 1.x SDK sends it at once, §11 item 11).

Rule 1: every input (a command we send, or an event we receive) is looked up
in the role's table by ``(state, type(input))``. A missing key is a protocol
error: the core raises :class:`LocalProtocolError` for our own commands (state
``ERROR``); a client reports a server event it cannot accept as a violation
(state ``ERROR``); a server reports a client frame it cannot accept as a
``BadRequest`` and keeps its state (the client must not be able to crash it).

Rule 2: ``ERROR`` is sticky. Every later call raises.

Rule 3: ``CLOSED`` is reached from any live state when the transport closes,
and is final. An ``error`` of any type but ``invalid_request_error`` — and any
``error`` while finishing, as both SDKs treat it (§5.6) — leads to ``FAILED``,
which only allows the close.

This module holds data only; the cores in ``realtime.py`` apply it.
"""

from __future__ import annotations

import enum
from typing import Final, get_args

from . import realtime_messages as m

__all__ = ["CLIENT_TRANSITIONS", "SERVER_TRANSITIONS", "ClientState", "ServerState"]


class ClientState(enum.Enum):
    CONNECTING = "connecting"  # waiting for session.created
    READY = "ready"  # session exists with the service defaults: configure it (or finish)
    CONFIGURING = "configuring"  # session.update sent, waiting for session.updated
    STREAMING = "streaming"  # configured: audio/images up, ASR and responses down
    FINISHING = "finishing"  # session.finish sent; reading until session.finished
    FINISHED = "finished"  # session.finished received: close the socket
    FAILED = "failed"  # a fatal error event: the session is over
    CLOSED = "closed"
    ERROR = "error"


class ServerState(enum.Enum):
    CONNECTED = "connected"  # upgrade done, session.created not yet sent
    ACTIVE = "active"  # session.created sent
    FINISHING = "finishing"  # session.finish received: flush, then session.finished
    FINISHED = "finished"  # session.finished sent
    FAILED = "failed"  # a fatal error sent: close
    CLOSED = "closed"
    ERROR = "error"


_C = ClientState
_S = ServerState

STREAM_EVENTS: Final[tuple[type[object], ...]] = get_args(m.StreamEvent)
STREAM_COMMANDS: Final[tuple[type[object], ...]] = get_args(m.StreamCommand)
CLIENT_REQUESTS: Final[tuple[type[object], ...]] = get_args(m.ClientRequest)
_UPLOADS: Final = (m.AppendAudio, m.AppendImage, m.Commit, m.Clear)
_LATE_INPUT: Final = (
    m.AudioAppended,
    m.ImageAppended,
    m.CommitRequested,
    m.ClearRequested,
    m.FinishRequested,
)
_OPEN_CLIENT: Final = (_C.CONNECTING, _C.READY, _C.CONFIGURING, _C.STREAMING, _C.FINISHING)

CLIENT_TRANSITIONS: Final[dict[tuple[ClientState, type[object]], ClientState]] = {
    # our commands
    (_C.READY, m.UpdateSession): _C.CONFIGURING,
    **{(_C.STREAMING, kind): _C.STREAMING for kind in _UPLOADS},
    **{(s, m.FinishSession): _C.FINISHING for s in (_C.READY, _C.CONFIGURING, _C.STREAMING)},
    # server events
    (_C.CONNECTING, m.SessionCreated): _C.READY,
    (_C.CONFIGURING, m.SessionUpdated): _C.STREAMING,
    (_C.FINISHING, m.SessionUpdated): _C.FINISHING,  # finish sent while the update was pending
    **{(s, kind): s for s in (_C.STREAMING, _C.FINISHING) for kind in STREAM_EVENTS},
    (_C.FINISHING, m.SessionFinished): _C.FINISHED,
    # errors: invalid_request_error goes on (in CONFIGURING: the update was rejected) …
    **{(s, m.ServerError): s for s in (_C.CONNECTING, _C.READY, _C.STREAMING)},
    (_C.CONFIGURING, m.ServerError): _C.READY,
    (_C.FINISHING, m.ServerError): _C.FAILED,  # no session.finished will come
    # … any other type ends the session
    **{(s, m.FatalServerError): _C.FAILED for s in _OPEN_CLIENT},
    # lenient: unknown event types are reported, not fatal (checklist §10.8)
    **{(s, m.UnknownEvent): s for s in _OPEN_CLIENT},
    # the transport closing ends everything
    **{(s, m.ConnectionClosed): _C.CLOSED for s in ClientState if s is not _C.ERROR},
}

SERVER_TRANSITIONS: Final[dict[tuple[ServerState, type[object]], ServerState]] = {
    # client requests: all accepted before session.created went out, except the finish
    **{
        (_S.CONNECTED, kind): _S.CONNECTED
        for kind in CLIENT_REQUESTS
        if kind is not m.FinishRequested
    },
    **{(_S.ACTIVE, kind): _S.ACTIVE for kind in CLIENT_REQUESTS if kind is not m.FinishRequested},
    (_S.ACTIVE, m.FinishRequested): _S.FINISHING,
    # late input after session.finish: reported, the server ignores it
    **{(_S.FINISHING, kind): _S.FINISHING for kind in _LATE_INPUT},
    # an unparsable or unknown frame is reported in any state and changes nothing
    **{(s, m.BadRequest): s for s in ServerState if s is not _S.ERROR},
    # our replies
    (_S.CONNECTED, m.CreateSession): _S.ACTIVE,
    **{(s, m.ConfirmSession): s for s in (_S.ACTIVE, _S.FINISHING)},
    **{(s, kind): s for s in (_S.ACTIVE, _S.FINISHING) for kind in STREAM_COMMANDS},
    **{(s, m.SendError): s for s in (_S.CONNECTED, _S.ACTIVE)},
    (_S.FINISHING, m.SendError): _S.FAILED,
    **{(s, m.FailSession): _S.FAILED for s in (_S.CONNECTED, _S.ACTIVE, _S.FINISHING)},
    (_S.FINISHING, m.FinishSessionReply): _S.FINISHED,
    **{(s, m.ConnectionClosed): _S.CLOSED for s in ServerState if s is not _S.ERROR},
}

PEER_STATE: Final[dict[ClientState, ServerState]] = {
    _C.CONNECTING: _S.CONNECTED,
    _C.READY: _S.ACTIVE,
    _C.CONFIGURING: _S.ACTIVE,
    _C.STREAMING: _S.ACTIVE,
    _C.FINISHING: _S.FINISHING,
    _C.FINISHED: _S.FINISHED,
    _C.FAILED: _S.FAILED,
    _C.CLOSED: _S.CLOSED,
}
"""The server state that goes with each live client state over a perfect wire."""
