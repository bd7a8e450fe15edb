"""Is the peer alive? The facts a connection's liveness watch reads, and the watch itself.

:class:`Liveness` is the only owner of those facts: when a frame last came from
the server (:meth:`heard`), and since when audio has gone unanswered
(:meth:`sent_audio`; silence does not count: a quiet recognizer is not a dead
connection). :meth:`watch` pings on an interval with a pong deadline (a
half-open socket never answers) and declares a stall when audio went out but
no server frame came back for ``stall_s``; once the finish command is sent, the
finish deadline governs instead of the stall watch (:meth:`finishing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from engine.errors import Disconnected

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["Liveness"]


class Liveness:
    """See the module docstring; times are trio times."""

    def __init__(self, *, stall_s: float, ping_interval_s: float, pong_timeout_s: float) -> None:
        self.stall_s = stall_s
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.last_heard_t = 0.0
        self.unanswered_since: float | None = None  # first audio sent after the last frame heard
        self._finishing = False

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

    async def watch(self, transport: Transport) -> tuple[str, Disconnected]:
        """Watch until the connection looks dead; return the close reason and the error.

        Wakes only at its next deadline (the next ping, or half a stall timeout),
        not on a fixed tick: with thousands of streams, idle timers are the cost.
        A stall is therefore detected between ``stall_s`` and 1.5 times it.
        """
        next_ping = trio.current_time() + self.ping_interval_s
        while True:
            await trio.sleep_until(min(next_ping, trio.current_time() + self.stall_s / 2))
            now = trio.current_time()
            since = self.unanswered_since
            if since is not None and not self._finishing and now - since >= self.stall_s:
                return "stalled", Disconnected(
                    f"the server sent nothing for {now - since:.0f} s while audio was flowing (stall)"
                )
            if now >= next_ping:
                with trio.move_on_after(self.pong_timeout_s) as scope:
                    await transport.ping()
                if scope.cancelled_caught:
                    return "ping-timeout", Disconnected(
                        f"no pong within {self.pong_timeout_s:g} s (the connection is half-open)"
                    )
                next_ping = trio.current_time() + self.ping_interval_s
