"""SIGINT and SIGTERM for a ``steno`` verb: the first asks for a graceful end, a later one stops.

Every verb that runs for a while watches signals through :class:`Interrupts`:
``transcribe``/``translate`` and ``listen`` drain on the first (each stream
finishes its task) and cancel on the second; ``batch … --wait`` stops waiting
on the first. The daemon's manager keeps its own (SIGHUP reloads there).
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Interrupts"]


@final
class Interrupts:
    """Counts a verb's interrupts; :meth:`watch` runs its reactions.

    Attributes:
        count: SIGINT/SIGTERM received so far.
    """

    def __init__(self) -> None:
        self.count = 0

    @property
    def interrupted(self) -> bool:
        """A signal asked the run to end (the exit code is then 130)."""
        return self.count > 0

    async def watch(
        self,
        *,
        first: Callable[[], object],
        then: Callable[[], object],
        notice: str | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``first`` on the first signal (printing ``notice``), ``then`` on the next.

        Runs until cancelled, or until ``then`` has been called. Started with
        ``nursery.start``, the handlers are installed when it returns.

        Cancellation: leaving restores the previous signal handlers.
        """
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for _ in signals:
                self.count += 1
                if self.count > 1:
                    then()
                    return
                if notice is not None:
                    print(f"steno: {notice}", file=sys.stderr, flush=True)
                first()
