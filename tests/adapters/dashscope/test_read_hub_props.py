"""Results through the read hub whatever the interleaving: chunking, pings, a slow consumer, the end.

Hypothesis draws how the server's byte stream is cut into writes (frames split
anywhere, several in one write), where server pings fall between results, how
the consumer lags (the queue fills: the socket leaves the hub until it drains)
and how the task ends (task-finished, task-failed, EOF, EOF mid-frame). Whatever
it draws: every whole result comes out, once, in order, before the end; the end
is the one the server chose; the hub is gone afterwards (MockClock, socket pairs).
"""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing
from hub_helpers import SocketServer, sentence, socket_link, start_task
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dashscope import _read_hub
from adapters.dashscope import messages as m
from engine.errors import StenoError

pytestmark = pytest.mark.skipif(not _read_hub.AVAILABLE, reason="the hub needs epoll (Linux)")

REASONS = {
    "finished": "finished",
    "failed": "task-failed: Boom",
    "eof": "connection-lost",
    "eof-mid-frame": "connection-lost",
}


def run(
    results: int, cuts: list[int], pings: set[int], end: str, lag: int, every: int
) -> tuple[list[str], str, bool]:
    async def script(server: SocketServer) -> None:
        await start_task(server)
        await server.expect(m.FinishRequested)
        wire = bytearray()
        for i in range(results):
            if i in pings:
                wire += server.ws.ping(b"p%d" % i)
            wire += server.frame(m.SendResult(sentence(i, 0, None, f"r{i}")))
        if end == "finished":
            wire += server.frame(m.FinishTaskReply())
        elif end == "failed":
            wire += server.frame(m.FailTask("Boom", "no"))
        elif end == "eof-mid-frame":
            cut = server.frame(m.SendResult(sentence(99, 0, None, "cut")))
            wire += cut[: len(cut) // 2]
        sizes = itertools.cycle(cuts or [len(wire) or 1])
        at = 0
        while at < len(wire):
            size = next(sizes)
            await server.send_raw(bytes(wire[at : at + size]))
            at += size
            await trio.sleep(0.01)
        if end.startswith("eof"):
            await server.stream.send_eof()
        await server.drain()

    conn = socket_link(script, stall_s=1000.0, ping_interval_s=1000.0, finish_s=100.0)
    texts: list[str] = []

    async def consume() -> None:
        await trio.sleep(lag)
        async for r in conn.results:
            texts.append(r.text)
            if len(texts) % every == 0:
                await trio.sleep(0.05)

    async def finish() -> None:
        try:
            await conn.finish()
        except StenoError:
            pass
        conn.release()

    async def main() -> bool:
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            nursery.start_soon(consume)
            nursery.start_soon(finish)
        return _read_hub._HUB.get() is None

    hub_gone = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return texts, conn.close_reason, hub_gone


@settings(max_examples=40, deadline=None)
@given(
    results=st.integers(0, 40),
    cuts=st.lists(st.integers(1, 600), max_size=6),
    pings=st.sets(st.integers(0, 40), max_size=4),
    end=st.sampled_from(sorted(REASONS)),
    lag=st.integers(0, 2),
    every=st.integers(1, 20),
)
def test_every_whole_result_once_in_order_then_the_chosen_end(
    results: int, cuts: list[int], pings: set[int], end: str, lag: int, every: int
) -> None:
    """Whatever the cuts, pings, lag and end: r0..rN in order, then that end."""
    texts, reason, hub_gone = run(results, cuts, pings, end, lag, every)
    assert texts == [f"r{i}" for i in range(results)]
    assert reason == REASONS[end]
    assert hub_gone


def test_a_sample_draw_runs() -> None:
    """One fixed draw with everything at once (a guard for the property's own plumbing)."""
    texts, reason, _ = run(30, [7, 300], {0, 5, 29}, "failed", 1, 3)
    assert texts == [f"r{i}" for i in range(30)] and reason == "task-failed: Boom"
