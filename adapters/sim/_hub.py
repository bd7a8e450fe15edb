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

The waiting itself (one epoll set, one task, rounds, the rules every step keeps) is
the shared :class:`~adapters._epoll_hub.EpollHub`. Here, a reader is registered only
while its connection's task is parked waiting for it; anything that needs an await (a
control frame, a fault, a partial write, a close) is handed back to that task, which
:meth:`ReadHub.discard`\\ s the descriptor first — a level-triggered descriptor nobody
reads would be reported on every round.

Rounds start at most every ``min_round_s`` (2 ms): an idle hub answers at once, a
busy one lets frames gather so that one wake serves many sockets.
"""

from __future__ import annotations

from typing import Final, NoReturn, final

import trio

from adapters._epoll_hub import EpollHub

__all__ = ["ReadHub"]

# Rounds start at most this often: under load a round then serves every socket that became
# ready meanwhile (a 100 ms frame waits ≤ 2 ms), instead of one wake per frame.
_MIN_ROUND_S: Final = 0.002


@final
class ReadHub(EpollHub):
    """Waits for many sockets in one task and calls their readers synchronously
    (:class:`~adapters._epoll_hub.EpollHub`, with rounds at most every 2 ms).

    Build one per process (:func:`~.server.serve` does) and run :meth:`run` in a
    nursery; connections :meth:`add` and :meth:`discard` their descriptors.

    Args:
        min_round_s: the least time from one round's start to the next's.

    Resource handling:
        The epoll object is closed when :meth:`run` ends (cancelled); the sockets
        stay their owners'.
    """

    __slots__ = ()

    def __init__(self, *, min_round_s: float = _MIN_ROUND_S) -> None:
        super().__init__(min_round_s=min_round_s)

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Serve the readers until cancelled.

        Cancellation: the epoll object is closed; registered readers are forgotten.
        """
        task_status.started()
        await self.serve()
