"""One reader for every client connection of a trio run: one epoll set, one task.

Theory of operation
-------------------
A client connection receives a few messages per second. Waiting for each socket in
its connection's own task costs, per message, a cancel scope with the liveness
deadline, an ``epoll_ctl`` and a task reschedule: more than the message's own work.
The :class:`ReadHub` holds one ``select.epoll`` set with the sockets of the
connections that are parked on it (level-triggered), and one trio system task that
waits for *that* descriptor (trio's ``wait_readable``) and calls each ready
connection's step synchronously, in the hub's task, in the connection task's
``contextvars`` context (its log context). The step reads what is there and does
everything that needs no await; what needs one is handed back to the connection's
task (``_receive_path.py`` holds the connection's side).

The waiting itself (one epoll set, one task, rounds, the rules every step keeps:
no blocking, one read per call, never raising) is the shared
:class:`~adapters._epoll_hub.EpollHub`. Here:

1. A descriptor is in the set only while its connection's task is parked for it
   (:meth:`ReadHub.add` before the park, :meth:`ReadHub.discard` after, in a
   ``finally``): a cancelled connection leaves nothing registered, and a socket
   leaves the set before its owner closes it (an epoll set holding a closed
   descriptor is a classic bug: the kernel drops it only with the file's last
   reference).
2. A step never raises: it hands its failure to its connection's task (if one
   raises all the same, the hub logs it and drops that descriptor).

Lifetime: one hub per trio run (:func:`shared_hub`, a ``RunVar``), started by its
first user and stopped when the last one leaves (a later user starts a fresh one).

Rounds follow each other without a pause: a busy process batches by itself (the
sockets that became ready while other tasks ran are served in one round), and a
timer to make messages gather costs more than it saves, here (unlike the
simulator's hub, where every stream sends ten frames a second): 2 ms rounds cost
~290 µs per message against ~87 µs at one ready socket per wake
(``tools/bench/stages.py --only receive.``).
"""

from __future__ import annotations

import contextlib
import select
from typing import TYPE_CHECKING, Final, Protocol, final, runtime_checkable

import trio

from adapters._epoll_hub import EpollHub

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["AVAILABLE", "HubReceiver", "MustAwait", "ReadHub", "receiver_of", "shared_hub"]

AVAILABLE: Final = hasattr(select, "epoll")
"""Whether this platform has a hub (Linux); elsewhere every connection reads in its task."""


class MustAwait(Exception):
    """The next thing a receiver has for us needs the awaited ``receive()``.

    (A ping to answer, a close to echo, a protocol violation to report.)
    """


@runtime_checkable
class HubReceiver(Protocol):
    """A transport whose messages can be taken without awaiting (the fast transport)."""

    @property
    def hub_fd(self) -> int | None:
        """The descriptor to wait for, or None when the transport cannot join a hub."""
        ...

    def receive_nowait(self, *, read: bool = True) -> bytes | str:
        """The next message, reading the socket at most once (``read``); not a checkpoint.

        Raises:
            trio.WouldBlock: no whole message yet.
            MustAwait: ``await receive()`` must take the next step.
            Disconnected: the connection ended.
        """
        ...


def receiver_of(transport: object) -> HubReceiver | None:
    """``transport`` as a hub's receiver, if it is one and this platform has a hub."""
    if AVAILABLE and isinstance(transport, HubReceiver):
        return transport
    return None


@final
class ReadHub(EpollHub):
    """Waits for many sockets in one task and calls their steps synchronously
    (:class:`~adapters._epoll_hub.EpollHub`, rounds without a pause).

    Use :func:`shared_hub`; connections :meth:`add` and :meth:`discard` descriptors.

    Resource handling:
        The epoll set is closed when the hub stops (its last user left, or the
        run ended); the sockets stay their owners'.
    """

    __slots__ = ("_scope", "users")

    def __init__(self) -> None:
        super().__init__()
        self._scope = trio.CancelScope()
        self.users = 0
        """Connections holding the hub (:func:`shared_hub`)."""

    async def _run(self) -> None:
        """Serve the steps until stopped (a system task: nothing escapes it)."""
        with self._scope:
            await self.serve()

    def _stop(self) -> None:
        self._scope.cancel()


_HUB: trio.lowlevel.RunVar[ReadHub | None] = trio.lowlevel.RunVar("steno_read_hub", default=None)


@contextlib.contextmanager
def shared_hub() -> Iterator[ReadHub]:
    """The running trio loop's hub for the block; started on first use, stopped by the last.

    Not a checkpoint (entering nor leaving).
    """
    hub = _HUB.get()
    if hub is None:
        hub = ReadHub()
        _HUB.set(hub)
        trio.lowlevel.spawn_system_task(hub._run, name="steno.read_hub")
    hub.users += 1
    try:
        yield hub
    finally:
        hub.users -= 1
        if hub.users == 0:
            _HUB.set(None)  # a later user starts a fresh hub
            hub._stop()
