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

Checkpoints: :meth:`EpollHub.serve` checkpoints once or twice per round (its waits);
a round handles at most :data:`MAX_EVENTS` ready sockets (the rest come next round).
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

__all__ = ["MAX_EVENTS", "EpollHub"]

_log = structlog.get_logger("steno.hub")

MAX_EVENTS: Final = 1024
"""Ready sockets handled per round (the rest come next round)."""


class EpollHub:
    """Waits for many sockets in one task (:meth:`serve`) and calls their steps.

    Args:
        min_round_s: the least time from one round's start to the next's.

    Resource handling:
        The epoll set is closed when :meth:`serve` ends (cancelled); the sockets
        stay their owners'.
    """

    __slots__ = ("_epoll", "_min_round_s", "_readers", "calls", "now", "rounds")

    def __init__(self, *, min_round_s: float = 0.0) -> None:
        if min_round_s < 0:
            raise ValueError("min_round_s must be >= 0")
        self._min_round_s = min_round_s
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self.rounds = 0
        """Rounds so far (one wait, then every ready step)."""
        self.calls = 0
        """Step calls so far."""
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
        next_round = -math.inf
        try:
            while True:
                await trio.lowlevel.wait_readable(fileno)
                if min_round_s and trio.current_time() < next_round:
                    # Busy: let sockets gather, so a round's wake is shared by many.
                    await trio.sleep_until(next_round)
                self.now = now = trio.current_time()
                next_round = now + min_round_s
                self.rounds += 1
                for fd, _ in poll(0, MAX_EVENTS):
                    step = readers.get(fd)
                    if step is None:
                        continue  # discarded by an earlier step of this round
                    self.calls += 1
                    try:
                        step()
                    except Exception:  # rule 3: a bug in a step; its owner decides
                        _log.exception("hub.step_crashed", fd=fd)
                        self.discard(fd)
        finally:
            readers.clear()
            trio.lowlevel.notify_closing(fileno)
            self._epoll.close()
