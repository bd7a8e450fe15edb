"""Is the peer alive? The facts and the schedule of a connection's liveness watch (pure).

:class:`Liveness` is the only owner of those facts: when a frame last came from
the server (:meth:`heard`), and since when audio has gone unanswered
(:meth:`sent_audio`; silence does not count: a quiet recognizer is not a dead
connection). The watch pings on an interval with a pong deadline (a half-open
socket never answers) and declares a stall when audio went out but no server
frame came back for ``stall_s``; once the finish command is sent, the finish
deadline governs instead of the stall watch (:meth:`finishing`).

The watch has no task of its own: the connection's reader waits for its next
frame with :attr:`Liveness.wake_t` as the deadline and, when that passes, asks
:meth:`Liveness.check` what is due. It wakes only at its next deadline (the next
ping, or half a stall timeout after the last check), not on a fixed tick: with
thousands of streams, idle timers are the cost. A stall is therefore detected
between ``stall_s`` and 1.5 times it. While a ping waits for its pong there is
no check (the pong's deadline governs); the pong (:meth:`ponged`) schedules the
next ping. No trio, no clock: times are trio times the caller passes in.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["Liveness"]

Due = Literal["stall", "ping"] | None
"""What a check found: a stall (the connection is dead), a ping to send, or nothing."""


class Liveness:
    """See the module docstring; times are trio times."""

    __slots__ = (
        "_finishing",
        "_next_ping",
        "last_heard_t",
        "ping_interval_s",
        "pong_timeout_s",
        "stall_s",
        "unanswered_since",
        "wake_t",
    )

    def __init__(self, *, stall_s: float, ping_interval_s: float, pong_timeout_s: float) -> None:
        self.stall_s = stall_s
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.last_heard_t = 0.0
        self.unanswered_since: float | None = None  # first audio sent after the last frame heard
        self._finishing = False
        self._next_ping = math.inf
        self.wake_t = math.inf
        """When the watch must next check (inf: not watching yet, or a ping is out)."""

    def heard(self, now: float) -> None:
        """A frame came from the server."""
        self.last_heard_t = now
        self.unanswered_since = None

    def sent_audio(self, now: float, *, voiced: bool = True) -> None:
        """Real audio went out: an answer is due, unless it was silence.

        A recognizer says nothing during silence (unless it sends heartbeats), so
        silence does not arm the stall watch; pongs keep proving the socket alive.
        """
        if voiced and self.unanswered_since is None:
            self.unanswered_since = now

    def finishing(self) -> None:
        """The finish command went: the finish deadline governs from now on."""
        self._finishing = True

    def start(self, now: float) -> None:
        """Begin watching (the task has started): the first ping is one interval away."""
        self._schedule(now)

    def check(self, now: float) -> Due:
        """The watch's step at :attr:`wake_t`: what is due now, and the next wake.

        ``"ping"``: send a ping and report its pong with :meth:`ponged` (no check
        until then). ``"stall"``: the connection is dead (:meth:`stall_message`).
        """
        since = self.unanswered_since
        if since is not None and not self._finishing and now - since >= self.stall_s:
            return "stall"
        if now >= self._next_ping:
            self._next_ping = self.wake_t = math.inf
            return "ping"
        self.wake_t = min(self._next_ping, now + self.stall_s / 2)
        return None

    def ponged(self, now: float) -> None:
        """The pong of the last ping came: the next ping is one interval away."""
        self._schedule(now)

    def stall_message(self, now: float) -> str:
        since = self.unanswered_since
        silent = now - (since if since is not None else now)
        return f"the server sent nothing for {silent:.0f} s while audio was flowing (stall)"

    def pong_message(self) -> str:
        return f"no pong within {self.pong_timeout_s:g} s (the connection is half-open)"

    def _schedule(self, now: float) -> None:
        self._next_ping = now + self.ping_interval_s
        self.wake_t = min(self._next_ping, now + self.stall_s / 2)
