"""A scenario's lifecycle as a table (pure; the shape of ``adapters/dashscope/_state.py``).

Theory of operation
-------------------
A scenario waits for its ``start-time``, runs (starts streams as its executor says),
stops (its time is up: no new streams; those in progress get ``graceful-stop``), and
is done. The executor driver (:mod:`engine.scenario.executor`) reports what happened
as :class:`Step` inputs; the progress line and tests read :attr:`Lifecycle.phase`.

Rules:

1. Every transition is in :data:`TRANSITIONS`; a pair missing from it is a bug in the
   driver: :meth:`Lifecycle.fire` raises ``LocalProtocolError`` and the phase
   becomes ``ERROR``.
2. ``ERROR`` is sticky: every later input raises too.
3. ``DONE`` is final; ``CANCELLED`` (the stop deadline passed, or the run was
   aborted or interrupted) ends any phase, and ``interrupted`` remembers it.
"""

from __future__ import annotations

import enum
from typing import Final

from engine.errors import LocalProtocolError

__all__ = ["TRANSITIONS", "Lifecycle", "Phase", "Step"]


class Phase(enum.Enum):
    WAITING = "waiting"  # before start-time
    RUNNING = "running"  # starting streams
    STOPPING = "stopping"  # time is up; streams in progress may finish (graceful stop)
    DONE = "done"
    ERROR = "error"


class Step(enum.Enum):
    STARTED = "started"  # start-time reached
    TIME_UP = "time-up"  # the executor's duration (or max-duration) passed
    ENDED = "ended"  # every stream of the scenario ended
    CANCELLED = "cancelled"  # the stop deadline passed, or the run was aborted


TRANSITIONS: Final[dict[tuple[Phase, Step], Phase]] = {
    (Phase.WAITING, Step.STARTED): Phase.RUNNING,
    (Phase.WAITING, Step.CANCELLED): Phase.DONE,
    (Phase.RUNNING, Step.TIME_UP): Phase.STOPPING,
    (Phase.RUNNING, Step.ENDED): Phase.DONE,  # per-session-iterations that finished early
    (Phase.RUNNING, Step.CANCELLED): Phase.DONE,
    (Phase.STOPPING, Step.ENDED): Phase.DONE,
    (Phase.STOPPING, Step.CANCELLED): Phase.DONE,
}


class Lifecycle:
    """One scenario's phase. Not a checkpoint; not thread-safe."""

    __slots__ = ("interrupted", "phase")

    def __init__(self) -> None:
        self.phase = Phase.WAITING
        self.interrupted = False

    def fire(self, step: Step) -> Phase:
        """Apply ``step``; return the new phase.

        Raises:
            LocalProtocolError: ``step`` is not allowed in this phase (the phase
                becomes, and stays, ``ERROR``).
        """
        new = TRANSITIONS.get((self.phase, step))
        if new is None:
            old, self.phase = self.phase, Phase.ERROR
            raise LocalProtocolError(f"scenario lifecycle: {step.value} in phase {old.value}")
        if step is Step.CANCELLED:
            self.interrupted = True
        self.phase = new
        return new
