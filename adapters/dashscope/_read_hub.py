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

Rules:

1. A descriptor is in the set only while its connection's task is parked for it
   (:meth:`ReadHub.add` before the park, :meth:`ReadHub.discard` after, in a
   ``finally``): a cancelled connection leaves nothing registered, and a socket
   leaves the set before its owner closes it (an epoll set holding a closed
   descriptor is a classic bug: the kernel drops it only with the file's last
   reference).
2. A step must not block, and should read at most once per call (fairness: a
   level-triggered socket with more bytes is reported again next round).
3. A step never raises: it hands its failure to its connection's task. If one
   raises all the same, the hub logs it and drops that descriptor; the hub's task
   never dies of a connection's failure.

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

import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["AVAILABLE", "HubReceiver", "MustAwait", "ReadHub", "receiver_of", "shared_hub"]

log = structlog.get_logger("steno.session")

AVAILABLE: Final = hasattr(select, "epoll")
"""Whether this platform has a hub (Linux); elsewhere every connection reads in its task."""

_MAX_EVENTS: Final = 1024  # ready sockets handled per round (the rest come next round)


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
class ReadHub:
    """Waits for many sockets in one task and calls their steps synchronously.

    Use :func:`shared_hub`; connections :meth:`add` and :meth:`discard` descriptors.

    Resource handling:
        The epoll set is closed when the hub stops (its last user left, or the
        run ended); the sockets stay their owners'.
    """

    __slots__ = ("_epoll", "_readers", "_scope", "calls", "rounds", "users")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self._scope = trio.CancelScope()
        self.users = 0
        """Connections holding the hub (:func:`shared_hub`)."""
        self.rounds = 0
        """Rounds of the hub's loop so far (one wait, then every ready step)."""
        self.calls = 0
        """Step calls so far."""

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
            with contextlib.suppress(OSError, ValueError):  # the hub stopped meanwhile
                self._epoll.unregister(fd)

    async def _run(self) -> None:
        """Serve the steps until stopped (a system task: nothing escapes it)."""
        poll = self._epoll.poll
        fileno = self._epoll.fileno()
        readers = self._readers
        try:
            with self._scope:
                while True:
                    await trio.lowlevel.wait_readable(fileno)
                    self.rounds += 1
                    for fd, _ in poll(0, _MAX_EVENTS):
                        step = readers.get(fd)
                        if step is None:
                            continue  # discarded by an earlier step of this round
                        self.calls += 1
                        try:
                            step()
                        except Exception:  # rule 3: a bug in a step; its task is the owner
                            log.exception("read_hub.step_crashed")
                            self.discard(fd)
        finally:
            readers.clear()
            trio.lowlevel.notify_closing(fileno)
            self._epoll.close()

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
