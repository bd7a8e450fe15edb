"""The per-connection context, and the seams where fault plans plug in.

Every connection the simulator serves gets one :class:`ConnectionContext`: its
id, the configuration, the shared recognizer and, when the connection has
faults, its :class:`ConnectionFaults`. The handlers consult those hooks at a
few points only — each accepted ``run-task``, each received and each outgoing
frame — and start the hooks' :meth:`ConnectionFaults.run` beside the reader, so
seeded plans (``faults.py``) need no change to the handlers. The upgrade and
the byte stream (drop, half-open) are handled one layer down, by the server
(``server.py``, ``_faultrun.py``, ``_faultstream.py``).

:class:`FaultHooks` is the small hand-written seam: one object shared by all
connections (a test double, say), which the server adapts to
:class:`ConnectionFaults`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    from adapters.recognizers.base import Recognizer

    from .config import SimConfig
    from .translate import Translator
    from .validation import Rejection, TaskSpec

__all__ = ["ConnectionContext", "ConnectionFaults", "FaultControl", "FaultHooks", "FrameTap"]


@runtime_checkable
class FaultHooks(Protocol):
    """Hand-written fault hooks shared by every connection; each returns "no fault" to pass."""

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


@runtime_checkable
class FrameTap(Protocol):
    """Sees every client message a connection handles, before the handler does.

    A :class:`FaultHooks` object that also has this method is told each frame with
    its connection's id (numbered 1, 2, … per server): tests record what a client
    sends with it. It must not block or raise; it cannot change or drop the frame.
    """

    def received(self, conn_id: int, frame: bytes | str) -> None: ...


class FaultControl(Protocol):
    """What a connection lets its fault hooks do (the inference handler implements it)."""

    async def fail_task(self, code: str, message: str) -> bool:
        """Send ``task-failed`` for the open task and end the connection; False if none is open."""
        ...

    async def write_frame(self, frame: str) -> bool:
        """Write a frame the hooks held back (a delayed event); False if the socket is closed."""
        ...


class ConnectionFaults(Protocol):
    """One connection's fault hooks, as the handlers see them."""

    def on_run_task(self, spec: TaskSpec) -> Rejection | None:
        """A ``task-failed`` to answer an otherwise valid run-task with, or None."""
        ...

    async def on_receive(self, frame: bytes | str) -> bool:
        """Called with every client message before it is handled; False drops it unhandled."""
        ...

    async def before_send(self, frame: str) -> str | None:
        """The frame to send now, or None when it is swallowed or held back for later."""
        ...

    async def run(
        self,
        control: FaultControl,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Timed faults; started (``nursery.start``) beside the reader, cancelled with it."""
        ...

    async def drain(self, control: FaultControl) -> None:
        """After the handler's tasks ended: write the frames still held back."""
        ...


@dataclass(slots=True)
class ConnectionContext:
    """What one connection's handlers share. Built by the server, never by clients."""

    conn_id: int
    config: SimConfig
    recognizer: Recognizer
    faults: ConnectionFaults | None = None
    translator: Translator | None = None
    """Renders translations (gummy, livetranslate); None: the labelled stand-in."""
