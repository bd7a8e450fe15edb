"""The shared epoll core (``adapters/_epoll_hub.py``): a round is bounded, the rest of the
ready sockets come next round, other tasks run between rounds, and a cut round is
followed at once (no ``min_round_s`` pause)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from conftest import deadline

from adapters._epoll_hub import DEFAULT_MAX_PER_ROUND, MAX_EVENTS, EpollHub

pytestmark = pytest.mark.skipif(not hasattr(__import__("select"), "epoll"), reason="Linux only")


@pytest.fixture(name="pairs")
def _pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    pairs = [socket.socketpair() for _ in range(5)]
    for a, _ in pairs:
        a.setblocking(False)
    try:
        yield pairs
    finally:
        for a, b in pairs:
            a.close()
            b.close()


class Trace:
    """Who ran when: ``("read", n)`` per step, ``("other",)`` per turn of another task."""

    def __init__(self, hub: EpollHub) -> None:
        self.hub = hub
        self.log: list[tuple[str, int]] = []
        self.reads = 0
        self.all_read = trio.Event()

    def reader(self, sock: socket.socket, total: int) -> None:
        sock.recv(100)
        self.reads += 1
        self.log.append(("read", self.hub.rounds))
        if self.reads == total:
            self.all_read.set()

    async def other(self) -> None:
        while True:
            self.log.append(("other", self.hub.rounds))
            await trio.lowlevel.checkpoint()


class TestBoundedRounds:
    @deadline(10)
    async def test_a_round_serves_at_most_max_per_round(
        self, pairs: list[tuple[socket.socket, socket.socket]]
    ) -> None:
        """Five ready sockets, two per round: rounds of 2, 2, 1, each socket read once,
        the two cut rounds counted, and another task runs between the rounds."""
        hub = EpollHub(max_per_round=2)
        trace = Trace(hub)
        for a, _ in pairs:
            hub.add(a.fileno(), lambda a=a: trace.reader(a, len(pairs)))
        for _, b in pairs:
            b.send(b"x")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trace.other)
            nursery.start_soon(hub.serve)
            await trace.all_read.wait()
            nursery.cancel_scope.cancel()
        reads = [r for kind, r in trace.log if kind == "read"]
        assert sorted(reads) == reads and len(reads) == 5
        assert [reads.count(r) for r in sorted(set(reads))] == [2, 2, 1]
        assert hub.calls == 5 and hub.cut_rounds == 2
        # the other task had a turn between the rounds (at least one per cut round)
        kinds = [kind for kind, _ in trace.log]
        first, last = kinds.index("read"), len(kinds) - 1 - kinds[::-1].index("read")
        assert kinds[first:last].count("other") >= 2

    @deadline(10)
    async def test_a_cut_round_is_followed_at_once(
        self,
        pairs: list[tuple[socket.socket, socket.socket]],
        autojump_clock: trio.testing.MockClock,
    ) -> None:
        """With a 1 s pause between rounds, a round cut by its bound is followed without
        the pause; the pause comes back after a round that served everything."""
        hub = EpollHub(min_round_s=1.0, max_per_round=2)
        times: list[float] = []
        done = trio.Event()

        def reader(sock: socket.socket) -> None:
            sock.recv(100)
            times.append(trio.current_time())
            if len(times) == 6:
                done.set()

        for a, _ in pairs:
            hub.add(a.fileno(), lambda a=a: reader(a))
        t0 = trio.current_time()
        for _, b in pairs:
            b.send(b"x")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hub.serve)
            await trio.testing.wait_all_tasks_blocked()
            assert times == [t0] * 5  # rounds of 2, 2, 1: no pause after a cut round
            pairs[0][1].send(b"y")  # right after a whole round: waits for the pause
            await done.wait()
            nursery.cancel_scope.cancel()
        assert times[5] == pytest.approx(t0 + 1.0)
        assert hub.rounds == 4 and hub.cut_rounds == 2

    def test_the_bound_is_checked(self) -> None:
        """max_per_round is 1 to MAX_EVENTS; the default is within."""
        assert 1 <= DEFAULT_MAX_PER_ROUND <= MAX_EVENTS
        for bad in (0, MAX_EVENTS + 1):
            with pytest.raises(ValueError, match="max_per_round"):
                EpollHub(max_per_round=bad)
