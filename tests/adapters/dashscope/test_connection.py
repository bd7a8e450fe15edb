"""The inference connection over the in-memory transport (no WebSocket library), MockClock.

The server side is the real server-role core, scripted per test. These pin the
connection's contract: results come out on a bounded channel, in order, before
the channel closes; the first failure is recorded and every later send raises it
at once; the liveness watch and the finish deadline; the WebSocket edge's table.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket

from adapters.dashscope import messages as m
from adapters.dashscope.connection import RESULTS_BUFFER, LinkSettings
from adapters.dashscope.inference import InferenceServer
from adapters.dashscope.inference_connection import InferenceConnection
from adapters.dashscope.memory_transport import MemoryTransport, serve_in_memory
from adapters.dashscope.transport import Headers, Transport, request_headers
from adapters.dashscope.ws import rejected, websocket_dialer
from engine.errors import AuthError, ConnectFailed, Disconnected, FinishTimeout, TaskFailed
from engine.results import Heard

Script = Callable[["Server"], Awaitable[None]]


class Server:
    def __init__(self, end: MemoryTransport) -> None:
        self.end = end
        self.core = InferenceServer()
        self.audio = 0

    async def expect(self, kind: type[Any]) -> Any:
        while True:
            try:
                data: bytes | str | None = await self.end.receive()
            except Disconnected:
                data = None
            self.core.receive_data(data)
            for event in self.core.events():
                if isinstance(event, m.AudioReceived):
                    self.audio += len(event.pcm) // 2
                    continue
                assert isinstance(event, kind), event
                return event

    async def send(self, command: Any) -> None:
        await self.end.send(self.core.send(command))


def dialer(script: Script) -> Any:
    @contextlib.asynccontextmanager
    async def dial(
        url: str, headers: Headers, *, connect_timeout: float
    ) -> AsyncIterator[Transport]:
        async def serve(end: MemoryTransport, url: str, headers: Headers) -> None:
            await script(Server(end))

        async with serve_in_memory(url, headers, serve) as transport:
            yield transport

    return dial


def result(sid: int, begin: int, end: int | None, text: str) -> dict[str, Any]:
    s = {"sentence_id": sid, "begin_time": begin, "end_time": end, "text": text, "words": []}
    return {"sentence": s | {"sentence_end": end is not None, "heartbeat": False}}


def link(script: Script, **settings: Any) -> InferenceConnection:
    base: dict[str, Any] = {"url": "ws://x/", "api_key": "sk", "user_agent": "t", "rate": 16000}
    return InferenceConnection(
        settings=LinkSettings(**(base | settings)),
        dial=dialer(script),
        task_id="t1",
        model="paraformer-realtime-v2",
        parameters={"format": "pcm"},
    )


async def started(conn: InferenceConnection, nursery: trio.Nursery) -> None:
    await nursery.start(conn.run)


async def test_results_come_out_in_order_then_the_channel_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(server: Server) -> None:
        await server.expect(m.RunTaskRequested)
        await server.send(m.StartTask())
        for n in range(RESULTS_BUFFER + 4):  # more than the channel holds: backpressure
            await server.send(m.SendResult(result(n, n * 10, None, f"p{n}")))
        await server.expect(m.FinishRequested)
        await server.send(m.SendResult(result(1, 0, 90, "done")))
        await server.send(m.FinishTaskReply())

    conn = link(script)
    got: list[Any] = []
    async with trio.open_nursery() as nursery:
        await started(conn, nursery)

        async def consume() -> None:
            async for r in conn.results:
                got.append(r)

        nursery.start_soon(consume)
        await conn.send_audio(b"\x01\x00" * 1600)
        await conn.finish()
        conn.release()
    assert [r.text for r in got] == [f"p{n}" for n in range(RESULTS_BUFFER + 4)] + ["done"]
    assert isinstance(got[-1], Heard) and got[-1].final
    assert conn.error is None and conn.close_reason == "finished" and conn.audio_samples == 1600


async def test_a_failure_follows_its_results_and_every_send_raises_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(server: Server) -> None:
        await server.expect(m.RunTaskRequested)
        await server.send(m.StartTask())
        await server.send(m.SendResult(result(1, 0, 90, "before")))
        await server.send(m.FailTask("InternalError", "boom"))
        await trio.sleep_forever()

    conn = link(script)
    async with trio.open_nursery() as nursery:
        await started(conn, nursery)
        got = [r.text async for r in conn.results]
        assert got == ["before"]
        assert isinstance(conn.error, TaskFailed) and conn.dead.is_set()
        t0 = trio.current_time()
        with pytest.raises(TaskFailed):
            await conn.send_audio(b"\x00\x00" * 160)
        assert trio.current_time() == t0  # no wait for anyone
    assert conn.close_reason == "task-failed: InternalError"


async def test_audio_without_an_answer_is_a_stall(autojump_clock: trio.testing.MockClock) -> None:
    async def script(server: Server) -> None:
        await server.expect(m.RunTaskRequested)
        await server.send(m.StartTask())
        with contextlib.suppress(Disconnected):
            while True:  # reads (pings are answered) but never says anything
                await server.end.receive()

    conn = link(script, stall_s=6.0, ping_interval_s=100.0)
    async with trio.open_nursery() as nursery:
        await started(conn, nursery)
        t0 = trio.current_time()
        await conn.send_audio(b"\x00\x00" * 1600)
        await conn.ended.wait()
    assert isinstance(conn.error, Disconnected) and conn.close_reason == "stalled"
    assert 6.0 <= trio.current_time() - t0 <= 9.0


async def test_a_peer_that_stops_reading_misses_its_pongs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def script(server: Server) -> None:
        await server.expect(m.RunTaskRequested)
        await server.send(m.StartTask())
        await trio.sleep_forever()  # deaf: the queue fills, pings go unanswered

    conn = link(script, ping_interval_s=1.0, pong_timeout_s=2.0, send_s=100.0, stall_s=1000.0)
    async with trio.open_nursery() as nursery:
        await started(conn, nursery)
        with contextlib.suppress(Disconnected):
            for _ in range(100):  # fill the peer's queue
                await conn.send_padding(160)
        await conn.ended.wait()
    assert conn.close_reason == "ping-timeout"


async def test_no_task_finished_is_a_finish_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def script(server: Server) -> None:
        await server.expect(m.RunTaskRequested)
        await server.send(m.StartTask())
        await server.expect(m.FinishRequested)
        await trio.sleep_forever()

    conn = link(script, finish_s=5.0)
    async with trio.open_nursery() as nursery:
        await started(conn, nursery)
        t0 = trio.current_time()
        with pytest.raises(FinishTimeout):
            await conn.finish()
        assert trio.current_time() - t0 == pytest.approx(5.0)
        conn.release()
    assert conn.close_reason == "finish-deadline"


async def test_reader_and_stall_failing_at_once_are_one_death(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The socket resets in the very tick the stall deadline passes: ONE Disconnected.

    The reset wakes the reader and the deadline wakes the liveness watch for the
    same scheduler batch, and neither reaches a checkpoint before it fails. trio
    runs a batch in a random order: with the watch first, both fail (only the
    first failure may be raised: a group of two escaping ``run`` is a crash); with
    the reader first, its frame resets the stall watch. Ten connections make the
    first order all but certain.
    """

    async def script(server: Server) -> None:
        await server.expect(m.RunTaskRequested)
        await server.send(m.StartTask())
        await trio.sleep_forever()

    ends: list[Transport] = []

    def dial(url: str, headers: Headers, *, connect_timeout: float) -> Any:
        @contextlib.asynccontextmanager
        async def opened() -> AsyncIterator[Transport]:
            async with dialer(script)(url, headers, connect_timeout=connect_timeout) as end:
                ends.append(end)
                yield end

        return opened()

    settings = {"url": "ws://x/", "api_key": "sk", "user_agent": "t", "rate": 16000}
    for _ in range(10):
        conn = InferenceConnection(
            settings=LinkSettings(**settings, stall_s=6.0, ping_interval_s=100.0),
            dial=dial,
            task_id="t1",
            model="paraformer-realtime-v2",
            parameters={"format": "pcm"},
        )
        async with trio.open_nursery() as nursery:  # a group escaping run() fails here
            await started(conn, nursery)
            autojump_clock.autojump_threshold = math.inf  # this test moves the clock
            try:
                await conn.send_audio(b"\x01\x00" * 1600)  # the stall watch is armed
                autojump_clock.jump(3.0)  # the watch wakes at half the stall time
                await trio.testing.wait_all_tasks_blocked()
                autojump_clock.jump(3.0)  # its stall deadline passes ...
                await ends[-1].aclose()  # ... and the socket resets: both wake together
                await conn.ended.wait()
            finally:
                autojump_clock.autojump_threshold = 0.0
        assert isinstance(conn.error, Disconnected)
        with pytest.raises(Disconnected) as raised:
            await conn.send_audio(b"\x01\x00" * 160)
        assert raised.value is conn.error


def test_no_key_means_no_authorization_header() -> None:
    assert request_headers("", "steno/1") == [("user-agent", "steno/1")]
    assert ("Authorization", "Bearer sk") in request_headers("sk", "steno/1")


def opener_raising(exc: BaseException) -> Any:
    @contextlib.asynccontextmanager
    async def opener(url: str, headers: Any, *, connect_timeout: float) -> AsyncIterator[Any]:
        raise exc
        yield  # pragma: no cover

    return opener


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (trio_websocket.ConnectionRejected(401, (), b""), AuthError, "DASHSCOPE_API_KEY"),
        (trio_websocket.ConnectionRejected(429, (), b""), ConnectFailed, "HTTP 429"),
        (trio_websocket.ConnectionTimeout(), ConnectFailed, "timed out after 3 s"),
        (OSError("refused"), ConnectFailed, "refused"),
    ],
)
async def test_the_websocket_edge_maps_by_its_table(
    raised: BaseException, expected: type[Exception], words: str
) -> None:
    dial = websocket_dialer(opener_raising(raised))
    with pytest.raises(expected, match=words):
        async with dial("ws://h/p?k=1", [], connect_timeout=3.0):
            pass  # pragma: no cover


async def test_without_a_key_no_header_goes_and_a_refusal_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No key: no ``Authorization`` header at all (not ``Bearer `` with nothing after it);
    a service that requires one refuses in one line naming the fix."""
    sent: list[Headers] = []

    @contextlib.asynccontextmanager
    async def dial(
        url: str, headers: Headers, *, connect_timeout: float
    ) -> AsyncIterator[Transport]:
        sent.append(headers)
        if not any(name.lower() == "authorization" for name, _ in headers):
            raise rejected(url, 401)
        yield  # type: ignore[misc]  # pragma: no cover

    conn = InferenceConnection(
        settings=LinkSettings(url="ws://x/", api_key="", user_agent="t", rate=16000),
        dial=dial,
        task_id="t1",
        model="paraformer-realtime-v2",
        parameters={},
    )
    async with trio.open_nursery() as nursery:
        with pytest.raises(AuthError, match="none is set; fix: set DASHSCOPE_API_KEY"):
            await nursery.start(conn.run)
    assert sent == [[("user-agent", "t")]]


class TestFastLane:
    async def test_it_opens_with_the_task_and_closes_with_the_finish(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """``try_send_audio``: False before the start and after the finish; between, sent at once
        with the awaited lane's bookkeeping, and no checkpoint."""

        async def script(server: Server) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await server.expect(m.FinishRequested)
            assert server.audio == 3200
            await server.send(m.FinishTaskReply())

        conn = link(script)
        assert not conn.try_send_audio(b"\x01\x00" * 1600)
        async with trio.open_nursery() as nursery:
            await started(conn, nursery)
            t0 = trio.current_time()
            with trio.testing.assert_no_checkpoints():
                assert conn.try_send_audio(b"\x01\x00" * 1600)
                assert conn.try_send_audio(b"\x00\x00" * 1600, voiced=False)
            assert conn.first_audio_t == t0 and conn.audio_samples == 3200
            await conn.finish()
            assert not conn.try_send_audio(b"\x01\x00" * 1600)
            conn.release()
        assert conn.audio_samples == 3200

    async def test_a_refused_frame_goes_once_by_the_awaited_lane(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A full transport: False, nothing sent; the awaited send of that audio sends it once,
        and the fast lane stays shut until then (order)."""
        reading = trio.Event()
        got: list[bytes] = []

        async def script(server: Server) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await reading.wait()
            with contextlib.suppress(Disconnected):
                while True:
                    data = await server.end.receive()
                    if isinstance(data, bytes):
                        got.append(data)

        conn = link(script)
        async with trio.open_nursery() as nursery:
            await started(conn, nursery)
            frames = [bytes([n, 0]) * 160 for n in range(100)]
            taken = 0
            while conn.try_send_audio(frames[taken]):
                taken += 1
            assert 0 < taken < 99  # the transport's queue is full
            assert not conn.try_send_audio(frames[taken + 1])  # nothing overtakes the refused one
            reading.set()
            for pcm in frames[taken:]:
                await conn.send_audio(pcm)
            assert conn.audio_samples == 100 * 160
            await trio.testing.wait_all_tasks_blocked()  # the server read it all
            conn.release()
        assert got == frames

    async def test_a_failed_connection_refuses_without_raising(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """After a failure the fast lane says False; the awaited lane raises the failure."""

        async def script(server: Server) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await server.send(m.FailTask("InternalError", "boom"))
            await trio.sleep_forever()

        conn = link(script)
        async with trio.open_nursery() as nursery:
            await started(conn, nursery)
            await conn.dead.wait()
            assert not conn.try_send_audio(b"\x00\x00" * 160)
            with pytest.raises(TaskFailed):
                await conn.send_audio(b"\x00\x00" * 160)


def helpers(nursery: trio.Nursery) -> list[str]:
    """The connection's helper tasks under ``nursery`` (the transport's own tasks aside)."""
    names: list[str] = []
    todo = list(nursery.child_tasks)
    while todo:
        task = todo.pop()
        name = task.name.rsplit(".", 1)[-1]
        if name in ("_reader", "_ping", "_liveness"):
            names.append(name)
        for child in task.child_nurseries:
            todo.extend(child.child_tasks)
    return names


class TestOneReader:
    async def test_the_owner_is_the_reader_and_pings_are_its_only_helpers(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Once started, the connection's own task reads (and watches liveness): no helper
        task but a ping's, for one round trip per interval; pings keep the connection alive."""

        async def script(server: Server) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await server.expect(m.FinishRequested)
            await server.send(m.FinishTaskReply())

        pings: list[float] = []

        def dial(url: str, headers: Headers, *, connect_timeout: float) -> Any:
            @contextlib.asynccontextmanager
            async def opened() -> AsyncIterator[Transport]:
                async with dialer(script)(url, headers, connect_timeout=connect_timeout) as end:
                    ping = end.ping

                    async def counted() -> None:
                        await ping()
                        pings.append(trio.current_time())

                    end.ping = counted  # type: ignore[method-assign]
                    yield end

            return opened()

        conn = InferenceConnection(
            settings=LinkSettings(
                url="ws://x/",
                api_key="sk",
                user_agent="t",
                rate=16000,
                ping_interval_s=2.0,
                pong_timeout_s=1.0,
                stall_s=1000.0,
            ),
            dial=dial,
            task_id="t1",
            model="paraformer-realtime-v2",
            parameters={"format": "pcm"},
        )
        names: list[list[str]] = []
        async with trio.open_nursery() as nursery:
            await started(conn, nursery)
            await trio.sleep(0.5)  # between pings (every 2 s from the start)
            for _ in range(10):  # 10 s: five pings, each answered
                await trio.sleep(1.0)
                names.append(sorted(helpers(nursery)))
            await conn.finish()
            conn.release()
        assert conn.error is None and conn.close_reason == "finished"
        assert all(n == [] for n in names)
        assert len(pings) == 5 and all(b - a == 2.0 for a, b in itertools.pairwise(pings))

    async def test_a_stall_is_seen_while_the_reader_waits_for_room(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Nobody reads the results: the queue fills and holds the reader; the server then
        goes silent while audio flows. The watch still runs in the reader's wait: stall."""

        async def script(server: Server) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            for n in range(RESULTS_BUFFER + 2):
                await server.send(m.SendResult(result(n, n * 10, None, f"p{n}")))
            with contextlib.suppress(Disconnected):
                while True:
                    await server.end.receive()

        conn = link(script, stall_s=6.0, ping_interval_s=100.0)
        async with trio.open_nursery() as nursery:
            await started(conn, nursery)
            await trio.sleep(1.0)  # the results arrive: the queue is full, the reader waits
            assert conn.results.statistics().tasks_waiting_send == 1
            t0 = trio.current_time()
            await conn.send_audio(b"\x01\x00" * 1600)
            await conn.ended.wait()
        assert conn.close_reason == "stalled" and isinstance(conn.error, Disconnected)
        assert 6.0 <= trio.current_time() - t0 <= 9.0
        # what was queued before the death still comes out, in order
        got = [r.text async for r in conn.results if isinstance(r, Heard)]
        assert got == [f"p{n}" for n in range(RESULTS_BUFFER)]
