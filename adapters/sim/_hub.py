"""One reader for every fast-lane connection of a simulator process.

Theory of operation
-------------------
A paced client sends one small frame per session every 100 ms. Waiting for each
socket in its own task costs a trio wake per frame per connection — an
``epoll_ctl``, a reschedule and a task switch, more than the frame's own work. The
:class:`ReadHub` holds one ``select.epoll`` object with the connections' sockets
registered once (level-triggered) and one trio task that waits for *that* descriptor
and then calls each ready connection's ``on_readable()`` synchronously, in the hub's
task: the connection reads once, parses and handles what it can without awaiting
(audio into the recognizer, results out with non-blocking writes).

Rules:

1. A reader is registered only while its connection's task is parked waiting for it;
   anything that needs an await (a control frame, a fault, a partial write, a close)
   is handed back to that task, which :meth:`ReadHub.discard`\\ s the descriptor first
   — a level-triggered descriptor nobody reads would be reported on every round.
2. ``on_readable`` must not block and should read at most once per call (fairness:
   level-triggering reports a socket with more bytes again next round).
3. ``on_readable`` must not raise; if it does, the hub logs it and drops the reader
   (the connection's own task is its owner and decides what happens next).

Rounds start at most every ``min_round_s`` (2 ms): an idle hub answers at once, a
busy one lets frames gather so that one wake serves many sockets.

Checkpoints: :meth:`ReadHub.run` checkpoints once or twice per round (its waits); a
round handles at most ``_MAX_EVENTS`` ready sockets.
"""

from __future__ import annotations

import math
import select
from typing import TYPE_CHECKING, Final, NoReturn, final

import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ReadHub"]

_log = structlog.get_logger()

_MAX_EVENTS: Final = 1024  # ready sockets handled per round (the rest come next round)
# Rounds start at most this often: under load a round then serves every socket that became
# ready meanwhile (a 100 ms frame waits ≤ 2 ms), instead of one wake per frame.
_MIN_ROUND_S: Final = 0.002


@final
class ReadHub:
    """Waits for many sockets in one task and calls their readers synchronously.

    Build one per process (:func:`~.server.serve` does) and run :meth:`run` in a
    nursery; connections :meth:`add` and :meth:`discard` their descriptors.

    Args:
        min_round_s: the least time from one round's start to the next's.

    Resource handling:
        The epoll object is closed when :meth:`run` ends (cancelled); the sockets
        stay their owners'.
    """

    def __init__(self, *, min_round_s: float = _MIN_ROUND_S) -> None:
        if min_round_s < 0:
            raise ValueError("min_round_s must be >= 0")
        self._min_round_s = min_round_s
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self.rounds = 0
        """Rounds of the hub's loop so far (one wait, then every ready reader)."""
        self.calls = 0
        """Reader calls so far."""
        self.now = -math.inf
        """trio's clock at the start of the current round, for its readers: one clock read
        per round, not one per socket. A reader's "now" is early by at most the round's
        length (milliseconds while the hub keeps up; the timers it feeds count seconds)."""

    def __len__(self) -> int:
        return len(self._readers)

    def add(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable()`` from the hub's task whenever ``fd`` has bytes (or EOF).

        Not a checkpoint. The descriptor must stay open until :meth:`discard`.

        Raises:
            ValueError: ``fd`` is already registered.
        """
        if fd in self._readers:
            raise ValueError(f"descriptor {fd} is already in the hub")
        self._epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        self._readers[fd] = on_readable

    def discard(self, fd: int) -> None:
        """Stop watching ``fd`` (no-op if it is not watched). Not a checkpoint."""
        if self._readers.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass  # closed meanwhile: the kernel dropped it already

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Serve the readers until cancelled.

        Cancellation: the epoll object is closed; registered readers are forgotten.
        """
        try:
            task_status.started()
            poll = self._epoll.poll
            fileno = self._epoll.fileno()
            readers = self._readers
            next_round = -math.inf
            while True:
                await trio.lowlevel.wait_readable(fileno)
                if trio.current_time() < next_round:
                    # Busy: let frames gather, so a round's wake is shared by many sockets.
                    await trio.sleep_until(next_round)
                self.now = now = trio.current_time()
                next_round = now + self._min_round_s
                self.rounds += 1
                for fd, _ in poll(0, _MAX_EVENTS):
                    reader = readers.get(fd)
                    if reader is None:
                        continue  # discarded by an earlier reader of this round
                    self.calls += 1
                    try:
                        reader()
                    except Exception:
                        _log.exception("hub reader crashed; its socket is dropped from the hub")
                        self.discard(fd)
        finally:
            self._readers.clear()
            self._epoll.close()
