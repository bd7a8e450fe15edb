"""Reading a memory channel in bursts: queued values without a trip through the scheduler each.

A ``trio.MemoryReceiveChannel``'s ``receive`` is a checkpoint even when a value is
queued: a consumer that finds several queued takes each one turn of the scheduler
later, behind every other ready task (#11). :class:`Bursts` takes queued values with
``receive_nowait`` instead, at most ``size`` in a row; then, and whenever the channel
is empty, it waits with ``receive``, a checkpoint (cancellable, as before).
"""

from __future__ import annotations

from typing import Final, Generic, Self, TypeVar, final

import trio

__all__ = ["EVENTS_BURST", "Bursts"]

EVENTS_BURST: Final = 32
"""Queued values taken in a row before a checkpoint."""

T = TypeVar("T")


@final
class Bursts(Generic[T]):
    """An async iterator over ``channel`` that ends at its ``EndOfChannel``; see the module
    docstring. The channel stays its owner's (not closed here)."""

    __slots__ = ("_channel", "_size", "_taken")

    def __init__(self, channel: trio.MemoryReceiveChannel[T], size: int = EVENTS_BURST) -> None:
        self._channel = channel
        self._size = size
        self._taken = 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._taken < self._size:
            try:
                value = self._channel.receive_nowait()
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            else:
                self._taken += 1
                return value
        self._taken = 0
        try:
            return await self._channel.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
