"""The state table of one RFC 6455 connection after the handshake, both roles.

Theory of operation
-------------------
A connection is OPEN until a close frame goes one way and comes back the other
(section 7). Whoever sends the first close may not send data after it; whoever
receives it answers with a close of its own as soon as it can. A peer's
protocol violation FAILS the connection: we may still send one close frame
(with the violation's code), then the connection is over. The byte stream
ending (EOF) ends it in any state.

Rule 1: every input is looked up by ``(state, input)``. A missing key for one
of OUR inputs raises ``LocalProtocolError`` and leaves the state as it was
(unlike ``adapters/dashscope/_state.py``, whose ERROR is sticky: here the usual
cause is a race with the peer's close, which corrupts nothing; the shell maps
it to ``Disconnected``). A peer's input that is missing is ignored (bytes after
a close, for example).

Rule 2: CLOSED is final.

This module holds data only; ``protocol.py`` applies it.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TRANSITIONS", "Input", "State"]


class State(enum.Enum):
    OPEN = "open"
    CLOSE_SENT = "close-sent"  # our close went out; reading until the peer's
    CLOSE_RECEIVED = "close-received"  # the peer's close came; ours is due
    FAILED = "failed"  # the peer broke the protocol; our close (with its code) is due
    CLOSED = "closed"


class Input(enum.Enum):
    SEND_DATA = "send-data"  # a text or binary message
    SEND_PING = "send-ping"
    SEND_PONG = "send-pong"
    SEND_CLOSE = "send-close"
    RECV_DATA = "recv-data"  # a message, ping or pong of the peer
    RECV_CLOSE = "recv-close"
    RECV_VIOLATION = "recv-violation"
    RECV_EOF = "recv-eof"


_S = State
_I = Input

TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (_S.OPEN, _I.SEND_DATA): _S.OPEN,
    (_S.OPEN, _I.SEND_PING): _S.OPEN,
    (_S.OPEN, _I.SEND_PONG): _S.OPEN,
    (_S.OPEN, _I.SEND_CLOSE): _S.CLOSE_SENT,
    (_S.OPEN, _I.RECV_DATA): _S.OPEN,
    (_S.OPEN, _I.RECV_CLOSE): _S.CLOSE_RECEIVED,
    (_S.OPEN, _I.RECV_VIOLATION): _S.FAILED,
    (_S.OPEN, _I.RECV_EOF): _S.CLOSED,
    # after our close: the peer may still send data until its close comes back
    (_S.CLOSE_SENT, _I.RECV_DATA): _S.CLOSE_SENT,
    (_S.CLOSE_SENT, _I.RECV_CLOSE): _S.CLOSED,
    (_S.CLOSE_SENT, _I.RECV_VIOLATION): _S.CLOSED,
    (_S.CLOSE_SENT, _I.RECV_EOF): _S.CLOSED,
    # after the peer's close: only our answering close
    (_S.CLOSE_RECEIVED, _I.SEND_CLOSE): _S.CLOSED,
    (_S.CLOSE_RECEIVED, _I.RECV_EOF): _S.CLOSED,
    (_S.FAILED, _I.SEND_CLOSE): _S.CLOSED,
    (_S.FAILED, _I.RECV_EOF): _S.CLOSED,
}
"""(state, input) -> next state; a missing key is refused (Rule 1)."""
