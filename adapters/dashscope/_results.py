"""A connection's results: a bounded queue, and a synchronous lane to an idle consumer.

Theory of operation
-------------------
:func:`open_results` makes the connection->consumer edge: a
:class:`ResultsOutlet` (the reader's end) and a :class:`Results` (the
consumer's end, with the ``receive`` API of a ``trio.MemoryReceiveChannel``).
Between them is a bounded memory channel (the **queue**: ``size`` results,
policy *block*: a consumer that lags holds the reader, which holds the socket)
and a **lane**: a synchronous *taker* the consumer arms while it is parked on an
empty queue (:meth:`Results.arm`). It is the downstream twin of the session's
inbox (``engine/actors/_inlet.py``).

Rules:

1. The reader offers each result to the armed taker first, in its own step: a
   taker that takes it has handled it completely (mapped, emitted), and the
   consumer's task never wakes for it.
2. A taker that refuses a result (its own outbox is full) has changed nothing;
   the lane is disarmed before the result is queued, and only the consumer arms
   it again, once it finds the queue empty: so once one result is queued, later
   ones queue behind it until the consumer drains them. The order of results is
   the order the reader put them in, whichever lane carries them.
3. A taker never raises and never awaits.

Channels: the queue is closed by the outlet's ``close`` (the consumer then reads
``EndOfChannel``, after what was queued) and by the consumer's ``close`` (the
reader's puts then fail with ``BrokenResourceError``).

Cancellation: :meth:`ResultsOutlet.send` is cancellable while it waits for room
(nothing queued), as a memory channel's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from engine.results import Result

    Taker = Callable[[Result], bool]
    """``(result) -> taken``: the consumer's synchronous step."""

__all__ = ["Results", "ResultsOutlet", "open_results"]


class _Lane:
    __slots__ = ("taker",)

    def __init__(self) -> None:
        self.taker: Taker | None = None


def open_results(size: int) -> tuple[ResultsOutlet, Results]:
    """The two ends of a connection's results edge; the queue holds ``size`` (policy *block*)."""
    send, receive = trio.open_memory_channel["Result"](size)
    lane = _Lane()
    return ResultsOutlet(send, lane), Results(receive, lane)


@final
class ResultsOutlet:
    """The reader's end; see the module docstring."""

    __slots__ = ("_lane", "_send", "lane_results")

    def __init__(self, send: trio.MemorySendChannel[Result], lane: _Lane) -> None:
        self._send = send
        self._lane = lane
        self.lane_results = 0
        """Results the taker took (the rest went through the queue)."""

    def send_nowait(self, result: Result) -> None:
        """Hand ``result`` to the armed taker, else queue it (not a checkpoint).

        Raises:
            trio.WouldBlock: the queue is full (nothing was taken; ``await send``).
            trio.BrokenResourceError: the consumer closed its end.
        """
        lane = self._lane
        taker = lane.taker
        if taker is not None:
            if taker(result):
                self.lane_results += 1
                return
            lane.taker = None  # rule 2: queued results first, until the consumer drains them
        self._send.send_nowait(result)

    async def send(self, result: Result) -> None:
        """Queue ``result`` behind the others, waiting for room (the lane is not offered).

        For a result :meth:`send_nowait` refused with ``WouldBlock``.
        """
        await self._send.send(result)

    def close(self) -> None:
        """No more results (not a checkpoint); the consumer reads the queue, then the end."""
        self._lane.taker = None
        self._send.close()

    async def __aenter__(self) -> ResultsOutlet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@final
class Results:
    """The consumer's end: a receive channel of results, and the lane's controls."""

    __slots__ = ("_lane", "_receive")

    def __init__(self, receive: trio.MemoryReceiveChannel[Result], lane: _Lane) -> None:
        self._receive = receive
        self._lane = lane

    async def receive(self) -> Result:
        """The next queued result (a checkpoint); ``EndOfChannel`` after the last."""
        return await self._receive.receive()

    def receive_nowait(self) -> Result:
        """The next queued result, or ``trio.WouldBlock`` (not a checkpoint)."""
        return self._receive.receive_nowait()

    def __aiter__(self) -> Results:
        return self

    async def __anext__(self) -> Result:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive_or_take(self, taker: Taker) -> Result:
        """The next queued result; while the queue is empty, ``taker`` handles results.

        Returns at once with a queued result; otherwise arms the lane and parks
        until a result is queued (one the taker refused, or any result once the
        lane is disarmed). The lane is disarmed however the wait ends.

        Raises:
            trio.EndOfChannel: the reader closed its end and the queue is empty.
        """
        try:
            return self._receive.receive_nowait()
        except trio.WouldBlock:
            pass
        lane = self._lane
        lane.taker = taker
        try:
            return await self._receive.receive()
        finally:
            lane.taker = None

    async def discard(self) -> None:
        """Drop every result until the reader closes its end (no task wake per result)."""
        while True:
            try:
                await self.receive_or_take(_drop)
            except trio.EndOfChannel:
                return

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The queue's statistics (results the lane took never appear in them)."""
        return self._receive.statistics()

    def close(self) -> None:
        """Close the queue (not a checkpoint); the reader's puts then fail."""
        self._lane.taker = None
        self._receive.close()


def _drop(result: Result) -> bool:
    return True
