"""The per-connection context, and the seam where seeded fault plans plug in.

Every connection the simulator serves gets one :class:`ConnectionContext`: its
id, the configuration, the shared recognizer and, optionally, a
:class:`FaultPlan`. The handlers consult the plan at three points only — the
HTTP upgrade, each accepted ``run-task``, and each outgoing frame — so a seeded
plan (drop the socket at t, delay or omit events, fail a task with a chosen
code, 401/503 at the upgrade, throttling) needs no change to the handlers.
Half-open sockets and packet-level faults belong one layer down: wrap the
``trio.abc.Stream`` given to :meth:`SimServer.serve_stream`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from adapters.recognizers.base import Recognizer

    from .config import SimConfig
    from .validation import Rejection, TaskSpec

__all__ = ["ConnectionContext", "FaultPlan"]


class FaultPlan(Protocol):
    """Hooks a fault plan implements; each returns "no fault" to let things be."""

    def on_upgrade(self, path: str) -> int | None:
        """An HTTP status to reject the upgrade with, or None to go on.

        ``path`` is the request target with its query (which may hold an
        ``api_key``: never log it).
        """
        ...

    def on_run_task(self, spec: TaskSpec) -> Rejection | None:
        """A ``task-failed`` to answer an otherwise valid run-task with, or None."""
        ...

    async def before_send(self, frame: str) -> str | None:
        """The frame to send (may sleep to delay it), or None to swallow it."""
        ...


@dataclass(slots=True)
class ConnectionContext:
    """What one connection's handlers share. Built by the server, never by clients."""

    conn_id: int
    config: SimConfig
    recognizer: Recognizer
    faults: FaultPlan | None = None
