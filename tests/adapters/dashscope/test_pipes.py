"""The socket pipe under the fast transport (``adapters/dashscope/_pipes.py``): reads.

A read is exactly one checkpoint and never loses bytes: cancelled before bytes
come, it took none; bytes already there are returned after a shielded yield;
bytes it waited for are returned at once (the wait was the checkpoint).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from adapters.dashscope._pipes import SocketPipe, StreamPipe


@pytest.fixture(name="pair")
def _pair() -> Iterator[tuple[SocketPipe, socket.socket]]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        yield SocketPipe(ours), theirs


class TestRead:
    async def test_bytes_already_there_come_after_one_checkpoint(
        self, pair: tuple[SocketPipe, socket.socket]
    ) -> None:
        """Buffered bytes: the read is still a checkpoint, and returns them."""
        pipe, peer = pair
        peer.send(b"ready")
        with trio.testing.assert_checkpoints():
            assert await pipe.read() == b"ready"

    async def test_a_waiting_read_returns_what_came(
        self, pair: tuple[SocketPipe, socket.socket]
    ) -> None:
        """The read parks until bytes come, then returns them (and EOF as b"")."""
        pipe, peer = pair
        got: list[bytes] = []

        async def reader() -> None:
            got.append(await pipe.read())
            got.append(await pipe.read())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            peer.send(b"late")
            await trio.testing.wait_all_tasks_blocked()
            assert got == [b"late"]
            peer.shutdown(socket.SHUT_WR)
        assert got == [b"late", b""]

    async def test_bytes_waited_for_cost_one_task_step(
        self, pair: tuple[SocketPipe, socket.socket]
    ) -> None:
        """Woken by the bytes, the read returns in the same step (no second yield)."""
        pipe, peer = pair
        steps = _Steps()
        got: list[bytes] = []

        async def reader() -> None:
            steps.task = trio.lowlevel.current_task()
            got.append(await pipe.read())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.add_instrument(steps)
            peer.send(b"woken")
        trio.lowlevel.remove_instrument(steps)
        assert got == [b"woken"]
        assert steps.count == 1

    async def test_a_read_cancelled_while_waiting_loses_nothing(
        self, pair: tuple[SocketPipe, socket.socket]
    ) -> None:
        """Cancelled in its wait, the read took nothing: the next read gets every byte."""
        pipe, peer = pair
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pipe.read)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
        assert scope.cancelled_caught
        peer.send(b"kept")
        assert await pipe.read() == b"kept"

    async def test_a_cancelled_read_with_bytes_there_takes_none(
        self, pair: tuple[SocketPipe, socket.socket]
    ) -> None:
        """Already cancelled: the read raises before it takes the buffered bytes."""
        pipe, peer = pair
        peer.send(b"stay")
        with trio.CancelScope() as scope:
            scope.cancel()
            await pipe.read()
        assert scope.cancelled_caught
        assert await pipe.read() == b"stay"


class _Steps(trio.abc.Instrument):
    """Counts the steps one task runs."""

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.count += 1


class TestReadNowait:
    async def test_what_is_there_or_would_block_never_a_checkpoint(
        self, pair: tuple[SocketPipe, socket.socket]
    ) -> None:
        """Nothing there: WouldBlock; bytes: them; EOF: b""; none of it a checkpoint."""
        pipe, peer = pair
        with trio.testing.assert_no_checkpoints():
            with pytest.raises(trio.WouldBlock):
                pipe.read_nowait()
            peer.send(b"ready")
            assert pipe.read_nowait() == b"ready"
            peer.shutdown(socket.SHUT_WR)
            assert pipe.read_nowait() == b""

    async def test_a_hub_waits_for_its_descriptor_until_it_closes(
        self, pair: tuple[SocketPipe, socket.socket]
    ) -> None:
        """fileno() is the socket's while open, None once closed (nothing to wait for)."""
        pipe, _ = pair
        assert pipe.fileno() == pipe._sock.fileno() >= 0
        await pipe.aclose()
        assert pipe.fileno() is None

    async def test_a_trio_stream_cannot_join_a_hub(self) -> None:
        """A stream pipe has no descriptor and no synchronous read."""
        left, _ = trio.testing.memory_stream_pair()
        pipe = StreamPipe(left)
        assert pipe.fileno() is None
        with pytest.raises(trio.WouldBlock):
            pipe.read_nowait()
