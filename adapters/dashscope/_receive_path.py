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
**liveness watch**'s next deadline (``_liveness.py``: :attr:`Liveness.wake_t`);
when it passes, the reader runs the watch's check and waits on: a stall is the
connection's death, raised from the reader; a ping is sent by a short task of
its own (:meth:`ReceivePath._ping`), since its pong arrives through the reader's
receive. That task lives one round trip per ping interval, under the pong
deadline. So a connection has no long-lived helper task: it used to have two.

Cancellation: the reader's waits are cancellable; a receive cancelled by a
deadline loses nothing (the transport's ``receive`` is cancel-safe).

Error handling: the reader and a ping raise a failure only if it was the
connection's first (:meth:`ReceivePath._fail`); a ping's ``Disconnected`` is left
to the reader, whose receive sees the same end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import trio

from engine.errors import Disconnected, StenoError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from engine.results import Result

    from ._liveness import Liveness
    from ._results import ResultsOutlet
    from .transport import Transport

__all__ = ["ReceivePath"]

T = TypeVar("T")
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
            await self._read_until(self.finished)

    async def _read_until(self, event: trio.Event) -> None:
        """Read frames (the reader's loop) until ``event`` is set, the task finished, or the
        connection ended; the results go out as they come."""
        out = self._results_out
        while not event.is_set() and not self.finished.is_set():
            data = await self._watched(self._receive)
            if data is None and self.finished.is_set():
                return  # the transport ended after the task finished: nothing to say
            self._live.heard(trio.current_time())
            results, failure = self._take_events(data)
            for result in results:
                try:
                    out.send_nowait(result)
                except trio.WouldBlock:
                    await self._watched(out.send, result)
            if failure is not None:
                raise failure
            if data is None:
                return

    async def _receive(self) -> bytes | str | None:
        """The next frame; None once the transport ended."""
        assert self._transport is not None
        try:
            return await self._transport.receive()
        except Disconnected:
            return None

    async def _watched(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` under the liveness watch: at each deadline, its check runs."""
        while True:
            with trio.CancelScope(deadline=self._live.wake_t) as waiting:
                self._waiting = waiting
                try:
                    return await fn(*args)
                finally:
                    self._waiting = None
            self._watch()

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
