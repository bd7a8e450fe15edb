"""``room_check`` (``engine/actors/_report.py``): the lane's question "would the outbox take
an event now?", answered without building a statistics object per result (#11)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from engine.actors._report import room_check


class _StatisticsOnly:
    """An outbox that offers only ``statistics()`` (a trio keeping other channel state)."""

    def __init__(self, channel: trio.MemorySendChannel[Any]) -> None:
        self._channel = channel

    def statistics(self) -> trio.MemoryChannelStatistics:
        return self._channel.statistics()


def _takes(send: trio.MemorySendChannel[Any]) -> bool:
    """Whether ``send_nowait`` takes a value now (the truth both checks must tell)."""
    try:
        send.send_nowait("probe")
    except (trio.WouldBlock, trio.BrokenResourceError):
        return False
    return True


@pytest.mark.parametrize("size", [0, 1, 3])
async def test_both_ways_tell_what_send_nowait_would_do(size: int) -> None:
    """Room, a full buffer, a waiting receiver, a closed receiver: both checks say
    what ``send_nowait`` then does."""
    send, receive = trio.open_memory_channel[Any](size)
    fast, slow = room_check(send), room_check(_StatisticsOnly(send))  # type: ignore[arg-type]
    assert fast.__name__ == "from_state" and slow.__name__ == "from_statistics"

    async def receiver() -> None:
        await receive.receive()

    seen: list[bool] = []
    for _ in range(size + 1):  # fill the buffer, then one more
        seen.append(fast())
        assert fast() == slow() == _takes(send)
    assert seen == [True] * size + [False]
    while True:  # empty it
        try:
            receive.receive_nowait()
        except trio.WouldBlock:
            break
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        assert fast() and slow()  # a receiver waits: room even with no buffer
        assert _takes(send)
    receive.close()
    assert not fast() and not slow() and not _takes(send)
