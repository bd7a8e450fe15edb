"""One ``select.epoll`` set served by one trio task: the core of both read hubs.

The client's (``adapters/dashscope/_read_hub.py``: every connection of a trio run)
and the simulator's (``adapters/sim/_hub.py``: every fast-lane connection of a
server) wait for many sockets the same way: the sockets are registered in one
epoll set (level-triggered), one task waits for *that* descriptor with trio's
``wait_readable``, and each round calls every ready socket's step synchronously,
in the hub's task. Each hub's module says who registers, when, and what a step may
do; the rules they share:

1. A descriptor is in the set only while its owner waits for it (:meth:`add` before,
   :meth:`discard` after, in a ``finally``); a socket leaves the set before its
   owner closes it.
2. A step must not block, and should read at most once per call (fairness: a
   level-triggered socket with more bytes is reported again next round).
3. A step must not raise; if one does all the same, the hub logs it and drops that
   descriptor (the step's owner decides what happens next): the hub's task never
   dies of one socket's failure.

Rounds start at most every ``min_round_s``: 0 answers every wake at once; a busy
hub with a pause lets sockets gather so that one wake serves many.

A round is bounded: it calls at most ``max_per_round`` ready sockets' steps (epoll
hands out a level-triggered set round-robin: the sockets left over are reported first
next round), then checkpoints, so the other runnable tasks (above all the pacer's
tick, whose frames are due) run before the next round. A round cut by this bound is
followed by the next one at once, without the ``min_round_s`` pause: the pause lets
sockets gather, and these already have. So after a stall (a long collection, a burst
of arrivals) the backlog is worked off in slices of bounded length, never as one
round that holds the loop for all of it.

Checkpoints: :meth:`EpollHub.serve` checkpoints once or twice per round (its waits).
"""

from __future__ import annotations

import contextlib
import math
import select
from typing import TYPE_CHECKING, Final, NoReturn

import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_MAX_PER_ROUND", "MAX_EVENTS", "EpollHub"]

_log = structlog.get_logger("steno.hub")

MAX_EVENTS: Final = 1024
"""The largest ``max_per_round`` (one ``epoll_wait``'s result)."""

DEFAULT_MAX_PER_ROUND: Final = 32
"""Ready sockets a round serves at most by default: a step costs ~40-80 µs (a result
decoded and delivered, or a simulator's frames read), so a round stays within ~1-3 ms,
the engine's send-lag budget, and a 1,000-stream backlog goes in ~30 slices."""


class EpollHub:
    """Waits for many sockets in one task (:meth:`serve`) and calls their steps.

    Args:
        min_round_s: the least time from one round's start to the next's (after a
            round that served every ready socket).
        max_per_round: ready sockets served per round at most (1 to :data:`MAX_EVENTS`).

    Resource handling:
        The epoll set is closed when :meth:`serve` ends (cancelled); the sockets
        stay their owners'.
    """

    __slots__ = (
        "_epoll",
        "_max_per_round",
        "_min_round_s",
        "_readers",
        "calls",
        "cut_rounds",
        "longest_round_s",
        "now",
        "rounds",
    )

    def __init__(
        self, *, min_round_s: float = 0.0, max_per_round: int = DEFAULT_MAX_PER_ROUND
    ) -> None:
        if min_round_s < 0:
            raise ValueError("min_round_s must be >= 0")
        if not 1 <= max_per_round <= MAX_EVENTS:
            raise ValueError(f"max_per_round must be in 1..{MAX_EVENTS}, got {max_per_round}")
        self._min_round_s = min_round_s
        self._max_per_round = max_per_round
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self.rounds = 0
        """Rounds so far (one wait, then every ready step)."""
        self.calls = 0
        """Step calls so far."""
        self.cut_rounds = 0
        """Rounds that left ready sockets to the next round (``max_per_round`` reached)."""
        self.longest_round_s = 0.0
        """The longest round so far (its first step called -> its last one returned)."""
        self.now = -math.inf
        """trio's clock at the start of the current round, for its steps: one clock read
        per round, not one per socket. A step's "now" is early by at most the round's
        length (milliseconds while the hub keeps up)."""

    def __len__(self) -> int:
        """Descriptors registered now."""
        return len(self._readers)

    def add(self, fd: int, step: Callable[[], None]) -> None:
        """Call ``step()`` from the hub's task whenever ``fd`` has bytes (or EOF).

        Not a checkpoint. The descriptor must stay open until :meth:`discard`.

        Raises:
            ValueError: ``fd`` is already registered.
        """
        if fd in self._readers:
            raise ValueError(f"descriptor {fd} is already in the hub")
        self._epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        self._readers[fd] = step

    def discard(self, fd: int) -> None:
        """Stop watching ``fd`` (no-op if it is not watched). Not a checkpoint."""
        if self._readers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):  # closed, or the hub stopped
                self._epoll.unregister(fd)

    async def serve(self) -> NoReturn:
        """Serve the steps until cancelled; then forget them and close the epoll set."""
        poll = self._epoll.poll
        fileno = self._epoll.fileno()
        readers = self._readers
        min_round_s = self._min_round_s
        max_per_round = self._max_per_round
        next_round = -math.inf
        try:
            while True:
                await trio.lowlevel.wait_readable(fileno)
                if min_round_s and trio.current_time() < next_round:
                    # Busy: let sockets gather, so a round's wake is shared by many.
                    await trio.sleep_until(next_round)
                self.now = now = trio.current_time()
                self.rounds += 1
                ready = poll(0, max_per_round)
                if len(ready) == max_per_round:  # maybe more: next round at once
                    self.cut_rounds += 1
                    next_round = -math.inf
                else:
                    next_round = now + min_round_s
                for fd, _ in ready:
                    step = readers.get(fd)
                    if step is None:
                        continue  # discarded by an earlier step of this round
                    self.calls += 1
                    try:
                        step()
                    except Exception:  # rule 3: a bug in a step; its owner decides
                        _log.exception("hub.step_crashed", fd=fd)
                        self.discard(fd)
                busy = trio.current_time() - now
                if busy > self.longest_round_s:
                    self.longest_round_s = busy
        finally:
            readers.clear()
            trio.lowlevel.notify_closing(fileno)
            self._epoll.close()
