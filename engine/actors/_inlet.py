"""The session's inbox with a synchronous lane: frames sent on the wire inside ``send``.

Theory of operation
-------------------
:func:`open_inlet` makes the resampler->session edge: an :class:`Inlet` (the
producer's end, duck-compatible with ``trio.MemorySendChannel[AudioFrame]``:
``send``, ``send_nowait``, ``close``, ``aclose``, ``async with``) and an
:class:`Inbox` (the session's end, with the ``receive`` API of a
``trio.MemoryReceiveChannel``). Between them is a bounded memory channel (the
**queue**, the edge's size, policy *block*: backpressure as any channel) and a
**lane**: a synchronous *taker* the session arms while its pump is parked on an
empty queue with a task able to send now (:meth:`Inbox.arm`).

Rules:

1. ``Inlet.send`` checkpoints once, first (a producer loop can never starve the
   scheduler; a full queue makes it wait as well), then offers the frame to the
   armed taker, which either takes it (sent on the wire, buffered, accounted
   for: ``send`` returns) or refuses it (nothing changed). ``Inlet.try_send`` is
   the same hand-over without the checkpoint and without waiting, for a producer
   driven by the pacer (:meth:`engine.pacer.Pacer.drive`): the frame is taken
   (fast lane or queue) or refused whole, and the producer then awaits ``send``.
2. A refused frame disarms the lane before it is queued, and only the pump arms
   it again, once it finds the queue empty: so once one frame is queued, later
   frames queue behind it until the pump drains them. The order of frames is the
   order of ``send`` calls, whichever lane carries them.
3. A taker that took a frame but left the pump work that must await (a report, a
   rotation, the end of an utterance) wakes it with :meth:`Inbox.wake`: the park
   is cancelled and its waiter sees :attr:`Inbox.woken`.

Every queued frame carries the trio time it was handed to ``send``
(:attr:`Inbox.arrived_t` after a receive), so the session can measure its send
lag whichever lane carried the frame.

Channels: the queue is closed by ``Inlet.close``/``aclose`` (the session then
reads ``EndOfChannel``) and by ``Inbox.close``/``aclose`` (the producer then
gets ``BrokenResourceError``, as from a memory channel).

Cancellation: ``send`` is cancellable at its checkpoint (nothing sent) and while
it waits for room (nothing queued), as a memory channel's. ``try_send``,
``send_nowait`` and ``room`` are not checkpoints.

Error handling: a taker never raises (a failure to send refuses the frame, and
the pump's awaited send reports the failure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from engine.events import AudioFrame

    Taker = Callable[[AudioFrame, float], bool]
    """``(frame, arrived_t) -> taken``: the session's synchronous pump step."""

__all__ = ["Inbox", "Inlet", "open_inlet"]

_Item = tuple["AudioFrame", float]


class _Lane:
    """The state the two ends share: the armed taker, the park it may wake, and the queue's
    fill as the two ends count it (:meth:`Inlet.room` reads no channel statistics)."""

    __slots__ = ("queued", "scope", "taker", "waiting", "woken")

    def __init__(self) -> None:
        self.taker: Taker | None = None
        self.scope: trio.CancelScope | None = None
        self.woken = False
        # Frames put in the queue and not yet received (a frame handed straight to a
        # waiting receiver counts until it runs: room errs low, never high), and the
        # producers waiting for room.
        self.queued = 0
        self.waiting = 0


def open_inlet(size: int) -> tuple[Inlet, Inbox]:
    """The two ends of a session's inbox; the queue holds ``size`` frames (policy *block*)."""
    send, receive = trio.open_memory_channel[_Item](size)
    lane = _Lane()
    return Inlet(send, lane), Inbox(receive, lane)


class Inlet:
    """The producer's end; see the module docstring."""

    __slots__ = ("_lane", "_send", "_size")

    def __init__(self, send: trio.MemorySendChannel[_Item], lane: _Lane) -> None:
        self._send = send
        self._lane = lane
        self._size = int(send.statistics().max_buffer_size)

    async def send(self, frame: AudioFrame) -> None:
        """Hand ``frame`` to the session: sent at once on the fast lane, else queued.

        Blocks while the queue is full (backpressure). Always one checkpoint before
        the frame is offered.

        Raises:
            trio.BrokenResourceError: the session closed its end.
            trio.ClosedResourceError: this end was closed.
        """
        arrived = trio.current_time()
        await trio.lowlevel.checkpoint()
        if self._offer(frame, arrived):
            return
        lane = self._lane
        try:
            self._send.send_nowait((frame, arrived))
        except trio.WouldBlock:
            lane.waiting += 1
            try:
                await self._send.send((frame, arrived))
            finally:
                lane.waiting -= 1
        lane.queued += 1

    def try_send(self, frame: AudioFrame) -> bool:
        """Hand ``frame`` over if it can be taken now; never waits, not a checkpoint.

        Returns:
            True: taken (sent on the fast lane, or queued within the bound). False:
            nothing was taken (the queue is full); await :meth:`send` with it.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: as :meth:`send`.
        """
        return self.hand(frame, trio.current_time())

    def hand(self, frame: AudioFrame, arrived: float) -> bool:
        """:meth:`try_send` with the caller's clock reading (``arrived``, trio time)."""
        if self._offer(frame, arrived):
            return True
        try:
            self._send.send_nowait((frame, arrived))
        except trio.WouldBlock:
            return False
        self._lane.queued += 1
        return True

    def room(self) -> int:
        """How many frames :meth:`try_send` takes now, at least (not a checkpoint).

        The queue's free places, or the whole bound while the lane is armed (the
        pump arms it only on an empty queue, rule 2); 0 while a producer waits for
        room (it goes first).
        """
        lane = self._lane
        if lane.taker is not None:
            return self._size
        if lane.waiting:
            return 0
        return self._size - lane.queued

    def send_nowait(self, frame: AudioFrame) -> None:
        """Hand ``frame`` over without waiting (not a checkpoint).

        Raises:
            trio.WouldBlock: the queue is full (nothing was taken).
            trio.BrokenResourceError, trio.ClosedResourceError: as :meth:`send`.
        """
        if not self.try_send(frame):
            raise trio.WouldBlock

    def _offer(self, frame: AudioFrame, arrived: float) -> bool:
        lane = self._lane
        taker = lane.taker
        if taker is None:
            return False
        if taker(frame, arrived):
            return True
        lane.taker = None  # rule 2: queued frames first, until the pump drains them
        return False

    def close(self) -> None:
        """End the input (not a checkpoint); the session reads ``EndOfChannel`` after the queue."""
        self._send.close()

    async def aclose(self) -> None:
        """:meth:`close`, and a checkpoint."""
        await self._send.aclose()

    async def __aenter__(self) -> Inlet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Inbox:
    """The session's end: a receive channel of frames, and the lane's controls."""

    __slots__ = ("_lane", "_receive", "arrived_t")

    def __init__(self, receive: trio.MemoryReceiveChannel[_Item], lane: _Lane) -> None:
        self._receive = receive
        self._lane = lane
        self.arrived_t = 0.0
        """When the frame last received was handed to ``Inlet.send`` (trio time)."""

    async def receive(self) -> AudioFrame:
        """The next queued frame (a checkpoint). Raises ``EndOfChannel`` after the last."""
        frame, self.arrived_t = await self._receive.receive()
        self._lane.queued -= 1
        return frame

    def receive_nowait(self) -> AudioFrame:
        """The next queued frame, or ``trio.WouldBlock`` (not a checkpoint)."""
        frame, self.arrived_t = self._receive.receive_nowait()
        self._lane.queued -= 1
        return frame

    def __aiter__(self) -> Inbox:
        return self

    async def __anext__(self) -> AudioFrame:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The queue's statistics (frames the fast lane took never appear in them)."""
        return self._receive.statistics()

    # ----------------------------------------------------------------- lane

    def arm(self, taker: Taker, scope: trio.CancelScope) -> None:
        """Offer later frames to ``taker`` while the caller waits in ``scope`` on an empty queue.

        The caller must :meth:`disarm` when the wait ends, however it ends.
        """
        lane = self._lane
        lane.taker, lane.scope, lane.woken = taker, scope, False

    def disarm(self) -> None:
        """Frames queue again (idempotent, not a checkpoint)."""
        lane = self._lane
        lane.taker = lane.scope = None

    def wake(self) -> None:
        """From the taker: the parked pump has awaited work to do (rule 3)."""
        lane = self._lane
        if lane.scope is not None:
            lane.woken = True
            lane.scope.cancel()
        lane.taker = None

    @property
    def woken(self) -> bool:
        """The last park ended by :meth:`wake`."""
        return self._lane.woken

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the queue (not a checkpoint); the producer's sends then fail."""
        self.disarm()
        self._receive.close()

    async def aclose(self) -> None:
        """:meth:`close`, and a checkpoint."""
        self.disarm()
        await self._receive.aclose()

    async def __aenter__(self) -> Inbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
