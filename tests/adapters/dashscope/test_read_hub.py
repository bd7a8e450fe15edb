"""The read hub: one task reads every client connection's socket (MockClock, socket pairs).

The hub itself (steps, discard, its lifetime), then a connection read through it:
results in order, backpressure, failures after their results, the liveness watch
(stall, ping, pong deadline) with the task parked, frames that must be awaited (a
server ping), a server gone mid-frame, cancellation, and many connections at once.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
import trio
import trio.testing
from hub_helpers import SocketServer, sentence, socket_link, start_task

from adapters.dashscope import _read_hub
from adapters.dashscope import messages as m
from adapters.dashscope._read_hub import ReadHub, shared_hub
from adapters.dashscope.connection import RESULTS_BUFFER
from engine.errors import Disconnected, TaskFailed

pytestmark = pytest.mark.skipif(not _read_hub.AVAILABLE, reason="the hub needs epoll (Linux)")

AUDIO = b"\x01\x00" * 1600


def _current_hub() -> ReadHub | None:
    return _read_hub._HUB.get()


class TestHub:
    async def test_a_ready_socket_gets_its_step_until_discarded(self) -> None:
        """A step runs in the hub's task when its socket is readable; none after discard."""
        a, b = socket.socketpair()
        a.setblocking(False)
        seen: list[bytes] = []
        with a, b, shared_hub() as hub:
            got = trio.Event()

            def step() -> None:
                seen.append(a.recv(100))
                got.set()

            hub.add(a.fileno(), step)
            with pytest.raises(ValueError, match="already"):
                hub.add(a.fileno(), step)
            b.send(b"one")
            await got.wait()
            hub.discard(a.fileno())
            hub.discard(a.fileno())  # a no-op the second time
            b.send(b"two")
            await trio.sleep(0.01)  # real-time: a round or more
            assert seen == [b"one"] and len(hub) == 0

    async def test_it_lives_with_its_users(self) -> None:
        """Started by the first user, shared, stopped by the last; a later user gets a new one."""
        assert _current_hub() is None
        with shared_hub() as first, shared_hub() as second:
            assert first is second and first.users == 2
        assert _current_hub() is None and first.users == 0
        await trio.testing.wait_all_tasks_blocked()
        with shared_hub() as third:
            assert third is not first
        await trio.testing.wait_all_tasks_blocked()
        assert first._epoll.closed and third._epoll.closed

    async def test_a_crashing_step_is_dropped_and_the_hub_goes_on(self) -> None:
        """A step that raises (a bug) is logged and unregistered; the others are served."""
        pairs = [socket.socketpair() for _ in range(2)]
        calls: list[str] = []
        with shared_hub() as hub, structlog.testing.capture_logs() as logs:
            served = trio.Event()

            def bad() -> None:
                calls.append("bad")
                raise RuntimeError("bug")

            def good() -> None:
                calls.append("good")
                pairs[1][0].recv(100)
                served.set()

            hub.add(pairs[0][0].fileno(), bad)
            hub.add(pairs[1][0].fileno(), good)
            pairs[0][1].send(b"x")
            pairs[1][1].send(b"x")
            await served.wait()
            served = trio.Event()
            pairs[1][1].send(b"y")
            await served.wait()
            assert sorted(calls) == ["bad", "good", "good"] and len(hub) == 1
        assert [e["event"] for e in logs] == ["hub.step_crashed"]
        for a, b in pairs:
            a.close()
            b.close()


async def consume(conn: Any, got: list[Any]) -> None:
    async for r in conn.results:
        got.append(r)


@pytest.fixture(name="hub")
async def _hub() -> AsyncIterator[ReadHub]:
    """The run's hub, held for the test; nothing is left registered in it."""
    with shared_hub() as hub:
        yield hub
    assert len(hub) == 0


async def take_until_the_end(conn: Any, taker: Any) -> None:
    with pytest.raises(trio.EndOfChannel):
        await conn.results.receive_or_take(taker)


class TestConnectionThroughTheHub:
    async def test_results_come_out_in_order_then_the_channel_closes(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """More results than the queue holds, a slow consumer: all come, in order, by the hub."""

        async def script(server: SocketServer) -> None:
            await start_task(server)
            for n in range(RESULTS_BUFFER * 3):
                await server.send(m.SendResult(sentence(n, n * 10, None, f"p{n}")))
            await server.expect(m.FinishRequested)
            await server.send(m.SendResult(sentence(1, 0, 90, "done")))
            await server.send(m.FinishTaskReply())
            await server.drain()

        conn = socket_link(script)
        got: list[Any] = []
        with shared_hub() as hub:
            async with trio.open_nursery() as nursery:
                await nursery.start(conn.run)
                await conn.send_audio(AUDIO)
                await trio.sleep(1)  # the queue fills: the socket leaves the hub
                assert len(hub) == 0 and conn.results.statistics().current_buffer_used > 0
                nursery.start_soon(consume, conn, got)
                await conn.finish()
                conn.release()
            calls = hub.calls
        assert [r.text for r in got] == [f"p{n}" for n in range(RESULTS_BUFFER * 3)] + ["done"]
        assert conn.error is None and conn.close_reason == "finished"
        assert calls > 0 and len(hub) == 0

    async def test_an_idle_consumer_takes_results_in_the_hubs_step(
        self, autojump_clock: trio.testing.MockClock, hub: ReadHub
    ) -> None:
        """With a taker armed, results never touch the queue and the reader never wakes."""
        armed = trio.Event()

        async def script(server: SocketServer) -> None:
            await start_task(server)
            await armed.wait()
            for n in range(5):
                await server.send(m.SendResult(sentence(n, n * 10, None, f"p{n}")))
            await server.drain()

        conn = socket_link(script)
        taken: list[Any] = []

        def taker(result: Any) -> bool:
            taken.append(result)
            return True

        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            nursery.start_soon(take_until_the_end, conn, taker)
            await trio.testing.wait_all_tasks_blocked()
            armed.set()
            await trio.sleep(5)
            conn.release()
        assert [r.text for r in taken] == [f"p{n}" for n in range(5)]
        assert conn._results_out.lane_results == 5 and hub.calls > 0

    async def test_a_failure_follows_its_results(
        self, autojump_clock: trio.testing.MockClock, hub: ReadHub
    ) -> None:
        """task-failed after results: the results first, then the failure, raised by every send."""

        async def script(server: SocketServer) -> None:
            await start_task(server)
            frames = [server.frame(m.SendResult(sentence(n, 0, None, f"r{n}"))) for n in range(3)]
            await trio.sleep(1)  # the reader is parked on the hub
            await server.send_raw(b"".join([*frames, server.frame(m.FailTask("Boom", "no"))]))
            await server.drain()

        conn = socket_link(script)
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            got = [r.text async for r in conn.results]
            assert got == ["r0", "r1", "r2"]
            with pytest.raises(TaskFailed):
                await conn.send_audio(AUDIO)
        assert conn.close_reason == "task-failed: Boom" and hub.calls > 0

    async def test_a_server_gone_mid_frame_ends_after_the_whole_results(
        self, autojump_clock: trio.testing.MockClock, hub: ReadHub
    ) -> None:
        """Half a frame then EOF: the whole frames' results, then connection-lost."""

        async def script(server: SocketServer) -> None:
            await start_task(server)
            whole = server.frame(m.SendResult(sentence(1, 0, None, "whole")))
            cut = server.frame(m.SendResult(sentence(2, 0, None, "cut")))
            await trio.sleep(1)
            await server.send_raw(whole + cut[: len(cut) // 2])
            await server.stream.send_eof()
            await server.drain()

        conn = socket_link(script)
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            got = [r.text async for r in conn.results]
            await conn.ended.wait()
        assert got == ["whole"] and hub.calls > 0
        assert isinstance(conn.error, Disconnected) and conn.close_reason == "connection-lost"

    async def test_a_server_ping_is_answered_and_reading_goes_on(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A ping between results: answered by the awaited path, then the hub reads again."""
        pongs: list[bytes] = []

        async def script(server: SocketServer) -> None:
            await start_task(server)
            before = server.frame(m.SendResult(sentence(1, 0, None, "before")))
            after = server.frame(m.SendResult(sentence(2, 0, None, "after")))
            await server.send_raw(before + server.ws.ping(b"hb") + after)
            event = server.ws.next_event()
            while event is None:
                server.ws.receive_data(await server.stream.receive_some(65536))
                event = server.ws.next_event()
            pongs.append(event.payload)  # type: ignore[union-attr]
            await trio.sleep(1)
            await server.send(m.SendResult(sentence(3, 0, None, "later")))
            await server.drain()

        conn = socket_link(script)
        got: list[Any] = []
        with shared_hub() as hub:
            async with trio.open_nursery() as nursery:
                await nursery.start(conn.run)
                nursery.start_soon(consume, conn, got)
                await trio.sleep(5)
                assert len(hub) == 1  # parked on the hub again
                conn.release()
        assert [r.text for r in got] == ["before", "after", "later"] and pongs == [b"hb"]

    async def test_audio_without_an_answer_is_a_stall(
        self, autojump_clock: trio.testing.MockClock, hub: ReadHub
    ) -> None:
        """The parked reader's one deadline runs the watch: a stall between 1 and 1.5 stall_s."""

        async def script(server: SocketServer) -> None:
            await start_task(server)
            await server.drain()  # reads, answers pings, says nothing

        conn = socket_link(script, stall_s=6.0, ping_interval_s=100.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            t0 = trio.current_time()
            await conn.send_audio(AUDIO)
            await trio.sleep(1)
            assert len(hub) == 1  # parked with its one deadline
            await conn.ended.wait()
            assert 6.0 <= trio.current_time() - t0 <= 9.0
        assert isinstance(conn.error, Disconnected) and conn.close_reason == "stalled"

    async def test_pongs_keep_a_quiet_connection_alive(
        self, autojump_clock: trio.testing.MockClock, hub: ReadHub
    ) -> None:
        """Silence for a minute with pings every second: every pong is seen through the hub."""
        servers: list[SocketServer] = []

        async def script(server: SocketServer) -> None:
            servers.append(server)
            await start_task(server)
            await server.drain()

        conn = socket_link(script, ping_interval_s=1.0, pong_timeout_s=0.5, stall_s=5.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            for _ in range(60):
                await conn.send_audio(b"\x00\x00" * 1600, voiced=False)
                await trio.sleep(1)
            assert not conn.dead.is_set() and len(hub) == 1
            conn.release()
        assert conn.error is None and servers[0].pings >= 50 and hub.calls >= 50

    async def test_a_deaf_server_misses_its_pong_deadline(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A server that stops reading answers no ping: ping-timeout at interval + deadline."""

        async def script(server: SocketServer) -> None:
            await start_task(server)
            await trio.sleep_forever()

        conn = socket_link(script, ping_interval_s=1.0, pong_timeout_s=2.0, stall_s=1000.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            t0 = trio.current_time()
            await conn.ended.wait()
            assert trio.current_time() - t0 == pytest.approx(3.0, abs=0.01)
        assert conn.close_reason == "ping-timeout"

    async def test_a_cancelled_reader_leaves_nothing_registered(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Cancelling connections parked on the hub unregisters them; the hub stops with them."""

        async def script(server: SocketServer) -> None:
            await start_task(server)
            await server.drain()

        async with trio.open_nursery() as nursery:
            for n in range(3):
                await nursery.start(socket_link(script, task_id=f"t{n}").run)
            hub = _current_hub()
            assert hub is not None and len(hub) == 3 and hub.users == 3
            nursery.cancel_scope.cancel()
        assert len(hub) == 0 and hub.users == 0 and _current_hub() is None

    async def test_many_connections_share_one_hub(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Fifty connections, one hub; each gets its own results, in order."""

        async def script(server: SocketServer) -> None:
            await start_task(server)
            for n in range(4):
                await server.send(m.SendResult(sentence(n, 0, None, f"{n}")))
            await server.expect(m.FinishRequested)
            await server.send(m.FinishTaskReply())
            await server.drain()

        conns = [socket_link(script, task_id=f"t{n}") for n in range(50)]
        got: dict[str, list[str]] = {c.task_id: [] for c in conns}
        peak = 0

        async def one(conn: Any) -> None:
            nonlocal peak
            async with trio.open_nursery() as nursery:
                await nursery.start(conn.run)
                hub = _current_hub()
                assert hub is not None
                peak = max(peak, hub.users)

                async def take() -> None:
                    async for r in conn.results:
                        got[conn.task_id].append(r.text)

                nursery.start_soon(take)
                await conn.send_audio(AUDIO)
                await trio.sleep(1)
                await conn.finish()
                conn.release()

        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(one, conn)
        assert all(texts == ["0", "1", "2", "3"] for texts in got.values())
        assert all(c.error is None for c in conns) and peak == 50
        assert _current_hub() is None


@pytest.mark.parametrize("n", [0, 1])
async def test_no_fd_is_left_open(n: int, autojump_clock: trio.testing.MockClock) -> None:
    """A connection through the hub closes its socket, whoever ended it."""

    async def script(server: SocketServer) -> None:
        await start_task(server)
        if n:
            await server.send(m.FailTask("Boom", "no"))
        await server.drain()

    conn = socket_link(script)
    with contextlib.suppress(TaskFailed):
        async with trio.open_nursery() as nursery:
            await nursery.start(conn.run)
            await trio.sleep(1)
            conn.release()
    assert conn.ended.is_set()
