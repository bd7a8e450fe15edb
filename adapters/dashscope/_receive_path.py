"""The receiving half of a connection: the reader, which is also the liveness watch.

The **reader** (:meth:`ReceivePath._reader`, run by the connection's own task
once the server task started; :meth:`ReceivePath._read_until` is its loop, which
the start handshake runs too) feeds every received frame to the
sans-IO core and interprets the core's events *at once* (no checkpoint between
receiving a frame and knowing what it means, so a send never races a failure it
cannot see), then hands the results to the connection's results edge
(``_results.py``): to the consumer's armed taker in this very step when the
consumer is idle, else onto the bounded queue, waiting for room (backpressure:
a consumer that lags holds the reader, which holds the socket).

Every wait of the reader (the next frame, room in the queue) runs under the
**liveness watch**'s next deadline (``_liveness.py``: :attr:`Liveness.wake_t`), ONE
cancel scope for as many frames as come before it (not one per frame); what a
frame left to do when the deadline interrupted a wait (results the full queue
refused, a failure to raise after them) is kept in a :class:`_HandBack` and done
first. When the deadline passes, the reader runs the watch's check and waits on
in a new scope: a stall is the
connection's death, raised from the reader; a ping is sent by a short task of
its own (:meth:`ReceivePath._ping`), since its pong arrives through the reader's
receive. That task lives one round trip per ping interval, under the pong
deadline. So a connection has no long-lived helper task: it used to have two.

**The read hub.** Once started, a connection whose transport can join the run's
read hub (``_read_hub.py``: the fast transport over a socket, TLS included) does
not wait for each frame in its own task: the task parks under ONE deadline (the
watch's) and the hub's task runs the reader's step (:meth:`ReceivePath._hub_step`)
whenever the socket is readable: the same feed, interpretation, ``heard`` and
results lane as above, synchronously. The step hands back to the parked task
(:class:`_HandBack`) only what must await: results the full queue refused (the
socket then leaves the hub until the task queued them: backpressure, as above),
a failure (raised by the task after those results, as above), the transport's
end, or a frame the transport must await (a ping to answer, a close to echo; the
task reads it the awaited way, then parks again). The order of results is the
order of frames either way.

Cancellation: the reader's waits are cancellable; a receive cancelled by a
deadline loses nothing (the transport's ``receive`` is cancel-safe), nor does a
wait for room (the result stays handed back). A parked
reader that is cancelled leaves the hub (nothing of it stays registered).

Error handling: the reader and a ping raise a failure only if it was the
connection's first (:meth:`ReceivePath._fail`); a ping's ``Disconnected`` is left
to the reader, whose receive sees the same end.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import trio

from engine.errors import Disconnected, StenoError

from . import _read_hub
from ._read_hub import HubReceiver, MustAwait

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from engine.results import Result

    from ._liveness import Liveness
    from ._read_hub import ReadHub
    from ._results import ResultsOutlet
    from .transport import Transport

__all__ = ["ReceivePath"]

EventT = TypeVar("EventT", covariant=True)
Ev = TypeVar("Ev")


class _Decoder(Protocol[EventT]):
    def receive_data(self, data: bytes | str | None) -> None: ...

    def events(self) -> Iterator[EventT]: ...


class ReceivePath(Generic[Ev]):
    """The reader of a :class:`~adapters.dashscope.connection.Connection` (its base).

    The connection sets every attribute below in its ``__init__``; only this class
    writes :attr:`_waiting`.
    """

    finished: trio.Event
    close_reason: str
    _core: _Decoder[Ev]
    _transport: Transport | None
    _live: Liveness
    _results_out: ResultsOutlet
    _nursery: trio.Nursery | None
    _waiting: trio.CancelScope | None

    def _interpret(self, event: Ev) -> list[Result]:
        raise NotImplementedError

    def _fail(self, exc: StenoError) -> bool:
        raise NotImplementedError

    async def _reader(self) -> None:
        """Read until the task finished or the connection ended; then close the results.

        Raises the connection's failure when it was the first.
        """
        async with self._results_out:
            receiver = _read_hub.receiver_of(self._transport)
            if receiver is not None and (fd := receiver.hub_fd) is not None:
                with _read_hub.shared_hub() as hub:
                    await self._read_in_hub(hub, receiver, fd)
            else:
                await self._read_until(self.finished)

    async def _read_until(self, event: trio.Event) -> None:
        """Read frames (the reader's loop) until ``event`` is set, the task finished, or the
        connection ended; the results go out as they come."""
        back = _HandBack()
        while True:
            with trio.CancelScope(deadline=self._live.wake_t) as waiting:
                self._waiting = waiting
                try:
                    await self._read_loop(event, back)
                    return
                finally:
                    self._waiting = None
            self._watch()

    async def _read_loop(self, event: trio.Event, back: _HandBack) -> None:
        while True:
            await self._drain(back)
            if back.ended or event.is_set() or self.finished.is_set():
                return
            data = await self._receive()
            self._on_frame(data, back, trio.current_time())

    async def _read_in_hub(self, hub: ReadHub, transport: HubReceiver, fd: int) -> None:
        """The reader's loop with the hub reading (see the module docstring)."""
        back = _HandBack()
        step = functools.partial(
            trio.lowlevel.current_task().context.run, self._hub_step, hub, transport, fd, back
        )
        while True:
            with trio.CancelScope(deadline=self._live.wake_t) as waiting:
                self._waiting = waiting
                try:
                    await self._hub_loop(hub, transport, fd, back, step)
                    return
                finally:
                    self._waiting = None
            self._watch()

    async def _hub_loop(
        self,
        hub: ReadHub,
        transport: HubReceiver,
        fd: int,
        back: _HandBack,
        step: Callable[[], None],
    ) -> None:
        while True:
            await self._drain(back)
            if back.ended or self.finished.is_set():
                return
            if back.must_await:
                back.must_await = False  # set again if a watch cancels the receive
                data = await self._receive()
                self._on_frame(data, back, trio.current_time())
                continue
            # The core may hold frames already (read by an awaited receive).
            self._hub_step(hub, transport, fd, back, trio.current_time())
            if back.empty:
                hub.add(fd, step)
                try:
                    await back.lot.park()
                finally:
                    hub.discard(fd)

    async def _drain(self, back: _HandBack) -> None:
        """Queue the results handed back, waiting for room; then raise a failure handed back.

        Cancellation: a result stays handed back until it is queued (nothing is lost
        when a liveness wake interrupts the wait for room).
        """
        pending, out = back.pending, self._results_out
        while pending:
            try:
                out.send_nowait(pending[0])
            except trio.WouldBlock:
                await out.send(pending[0])
            pending.popleft()
        if back.failure is not None:
            failure, back.failure = back.failure, None
            raise failure

    def _hub_step(
        self,
        hub: ReadHub,
        transport: HubReceiver,
        fd: int,
        back: _HandBack,
        now: float | None = None,
    ) -> None:
        """The reader's step in the hub's task: every frame there is, till one must await.

        Never a checkpoint, never raises: what must await goes into ``back``, the
        socket leaves the hub and the parked task wakes. The frames were heard at ``now``,
        by default the hub's round's start (``hub.now``: one clock read per round).
        """
        if now is None:
            now = hub.now
        try:
            read = True
            while back.empty and not self.finished.is_set():
                try:
                    data = transport.receive_nowait(read=read)
                except trio.WouldBlock:
                    return
                except MustAwait:
                    back.must_await = True
                    break
                except Disconnected:
                    data = None
                read = False
                self._on_frame(data, back, now)
        except Exception as exc:  # a bug: raised by the connection's task, not the hub
            back.failure = exc
        hub.discard(fd)
        back.lot.unpark_all()

    def _on_frame(self, data: bytes | str | None, back: _HandBack, now: float) -> None:
        """One received frame (None: the transport ended), heard at trio time ``now``: what
        it means goes out now, or into ``back`` (results the full queue refused, a failure,
        the end). Synchronous.
        """
        if data is None and self.finished.is_set():
            back.ended = True  # the transport ended after the task finished: nothing to say
            return
        self._live.heard(now)
        results, failure = self._take_events(data)
        out, pending = self._results_out, back.pending
        for result in results:
            if pending:
                pending.append(result)  # behind the ones refused: the order is kept
                continue
            try:
                out.send_nowait(result)
            except trio.WouldBlock:
                pending.append(result)
        back.failure = failure
        back.ended = data is None

    async def _receive(self) -> bytes | str | None:
        """The next frame; None once the transport ended."""
        assert self._transport is not None
        try:
            return await self._transport.receive()
        except Disconnected:
            return None

    def _rewake(self) -> None:
        """The watch's next deadline moved: the reader's wait follows (not a checkpoint)."""
        if self._waiting is not None:
            self._waiting.deadline = self._live.wake_t

    def _watch(self) -> None:
        """The liveness watch's step, in the reader at its deadline: a stall, or a ping."""
        live, now = self._live, trio.current_time()
        due = live.check(now)
        if due == "ping":
            assert self._nursery is not None
            self._nursery.start_soon(self._ping)
        elif due == "stall" and not self.finished.is_set():
            exc = Disconnected(live.stall_message(now))
            if self._fail(exc):  # else another failure came first and is raised
                self.close_reason = "stalled"
                raise exc

    async def _ping(self) -> None:
        """One ping under its pong deadline (the pong is seen by the reader's receive)."""
        assert self._transport is not None
        live = self._live
        with trio.move_on_after(live.pong_timeout_s) as scope:
            try:
                await self._transport.ping()
            except Disconnected:
                return  # the reader's receive sees the same end and records it
        if not scope.cancelled_caught:
            live.ponged(trio.current_time())
            self._rewake()
            return
        if self.finished.is_set():
            return  # a failure after the task finished: nothing to report
        exc = Disconnected(live.pong_message())
        if self._fail(exc):  # else the reader's failure came first and is raised
            self.close_reason = "ping-timeout"
            raise exc

    def _take_events(self, data: bytes | str | None) -> tuple[list[Result], StenoError | None]:
        """Feed the core and interpret what it produced, synchronously (see the docstring)."""
        self._core.receive_data(data)
        results: list[Result] = []
        for event in self._core.events():
            try:
                results += self._interpret(event)
            except StenoError as exc:
                if self._fail(exc):
                    return results, exc
                return results, None  # another helper's failure came first: it is raised
        return results, None


class _HandBack:
    """What a hub step left its parked reader to do (see the module docstring)."""

    __slots__ = ("ended", "failure", "lot", "must_await", "pending")

    def __init__(self) -> None:
        self.lot = trio.lowlevel.ParkingLot()
        self.pending: deque[Result] = deque()
        self.failure: BaseException | None = None
        self.ended = False
        self.must_await = False

    @property
    def empty(self) -> bool:
        return not (self.pending or self.must_await or self.ended) and self.failure is None
