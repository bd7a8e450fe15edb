"""The session actor, one task at a time, against a scripted in-memory server (MockClock).

Retries are off here (``max_attempts=0``): these tests pin what one task does and how a
failure is accounted for; ``test_supervisor.py`` covers reconnecting."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from adapters.dashscope import messages as m
from adapters.dashscope.inference import InferenceServer
from adapters.dashscope.memory_transport import MemoryTransport, serve_in_memory
from adapters.dashscope.transport import Headers, Transport
from adapters.dashscope.ws import rejected
from engine.actors import session
from engine.config import Secret, SessionConfig
from engine.errors import Disconnected
from engine.events import (
    AudioFrame,
    AudioGap,
    Event,
    Final,
    Partial,
    SessionClosed,
    SessionOpened,
    StreamEnded,
    StreamError,
    TaskMetrics,
)
from engine.policy import RestartPolicy

RATE = 16000
FRAME = 1600  # 100 ms

Script = Callable[["ServerSide"], Awaitable[None]]


class ServerSide:
    """The server end of one in-memory connection: the real server-role core over it."""

    def __init__(self, ws: MemoryTransport) -> None:
        self.ws = ws
        self.core = InferenceServer()
        self.audio = bytearray()
        self.requests: list[Any] = []

    async def next_event(self) -> Any:
        while True:
            try:
                data: bytes | str | None = await self.ws.receive()
            except Disconnected:
                data = None
            self.core.receive_data(data)
            for event in self.core.events():
                self.requests.append(event)
                if isinstance(event, m.AudioReceived):
                    self.audio += event.pcm
                    continue
                return event

    async def send(self, command: Any) -> None:
        await self.ws.send(self.core.send(command))

    async def closed_by_client(self) -> None:
        with pytest.raises(Disconnected):
            await self.ws.receive()

    async def expect(self, kind: type[Any]) -> Any:
        event = await self.next_event()
        assert isinstance(event, kind), event
        return event


def sentence(sid: int, begin: int, end: int | None, text: str) -> dict[str, Any]:
    return {
        "sentence": {
            "sentence_id": sid,
            "begin_time": begin,
            "end_time": end,
            "text": text,
            "sentence_end": end is not None,
            "heartbeat": False,
            "words": [
                {
                    "begin_time": begin,
                    "end_time": end or begin + 100,
                    "text": text,
                    "punctuation": "",
                }
            ],
        }
    }


def memory_dialer(script: Script, *, reject: int | None = None) -> Any:
    """A ``Dialer`` to ``script`` over the in-memory transport (no WebSocket library)."""

    @contextlib.asynccontextmanager
    async def dial(
        url: str, headers: Headers, *, connect_timeout: float
    ) -> AsyncIterator[Transport]:
        assert ("Authorization", "Bearer sk-test") in headers
        if reject is not None:
            raise rejected(url, reject)

        async def serve(ws: MemoryTransport, url: str, headers: Headers) -> None:
            await script(ServerSide(ws))

        async with serve_in_memory(url, headers, serve) as transport:
            yield transport

    return dial


NO_RETRY = RestartPolicy(max_attempts=0)


def config(**kw: Any) -> SessionConfig:
    """A session config; no retries, so these tests see one task's accounting."""
    base: dict[str, Any] = {
        "stream": "s1",
        "model": "paraformer-realtime-v2",
        "url": "ws://sim/api-ws/v1/inference",
        "api_key": Secret("sk-test"),
        "policy": NO_RETRY,
        "seed": 1,
    }
    return SessionConfig(**(base | kw))


async def run_session(
    script: Script,
    frames: int,
    *,
    pace: float = 0.1,
    cfg: SessionConfig | None = None,
    **dial_kw: Any,
) -> list[Event]:
    """Feed ``frames`` 100 ms frames (paced) into a session; return every event it wrote."""
    frames_send, frames_recv = trio.open_memory_channel[AudioFrame](4)
    events_send, events_recv = trio.open_memory_channel[Event](100)
    out: list[Event] = []

    async def feed() -> None:
        async with frames_send:
            for i in range(frames):
                pcm = bytes([i % 256, 8]) * FRAME  # loud enough not to be silence
                await frames_send.send(AudioFrame(i * FRAME, pcm, RATE))
                await trio.sleep(pace)

    async def collect() -> None:
        async for event in events_recv:
            out.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        nursery.start_soon(collect)
        await session.run(
            inbox=frames_recv,
            outbox=events_send,
            config=cfg or config(),
            dial=memory_dialer(script, **dial_kw),
        )
    return out


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def happy(server: ServerSide) -> None:
    """Start late, emit a partial and a final, finish on request."""
    run = await server.expect(m.RunTaskRequested)
    assert run.parameters == {"sample_rate": 16000, "format": "pcm", "heartbeat": True}
    await trio.sleep(1.0)  # audio arrives during this handshake delay
    await server.send(m.StartTask())
    await trio.sleep(0.5)
    await server.send(m.SendResult(sentence(1, 200, None, "hello")))
    await server.send(m.SendResult(sentence(1, 200, 900, "hello world"), {"duration": 1}))
    await server.expect(m.FinishRequested)
    await server.send(m.SendResult(sentence(2, 1000, 1400, "tail")))
    await server.send(m.FinishTaskReply({"duration": 2}))
    assert len(server.audio) == 20 * FRAME * 2  # every frame arrived, none twice
    await server.closed_by_client()


class TestHappyPath:
    async def test_full_task(self, autojump_clock: trio.testing.MockClock) -> None:
        """Audio sent during the handshake is kept; results map onto the global timeline."""
        events = await run_session(happy, 20)
        kinds = [type(e).__name__ for e in events]
        assert kinds[0] == "SessionOpened"
        assert kinds[-2:] == ["SessionClosed", "StreamEnded"]
        (partial,) = of(events, Partial)
        assert partial.text == "hello" and partial.start == 200 * 16 and partial.sentence_id == 1
        finals = of(events, Final)
        assert [(f.sentence_id, f.start, f.end, f.text) for f in finals] == [
            (1, 3200, 14400, "hello world"),
            (2, 16000, 22400, "tail"),
        ]
        (metrics,) = of(events, TaskMetrics)
        assert metrics.finals == 2 and metrics.audio_ms == 2000
        assert metrics.first_package_delay_ms is not None and metrics.first_package_delay_ms > 0
        assert metrics.last_package_delay_ms is not None
        ended = events[-1]
        assert isinstance(ended, StreamEnded)
        assert (ended.status, ended.finals, ended.audio_lost_ms, ended.audio_ms) == (
            "ok",
            2,
            0,
            2000,
        )
        assert all(e.stream == "s1" for e in events)

    async def test_file_shorter_than_handshake(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Input that ends before task-started is still sent and finished."""

        async def slow_start(server: ServerSide) -> None:
            await server.expect(m.RunTaskRequested)
            await trio.sleep(3.0)
            await server.send(m.StartTask())
            await server.expect(m.FinishRequested)
            assert len(server.audio) == 3 * FRAME * 2
            await server.send(m.FinishTaskReply())
            await server.closed_by_client()

        events = await run_session(slow_start, 3, pace=0.0)
        assert of(events, StreamEnded)[0].status == "ok"


class TestFailures:
    async def test_finish_deadline_reports_the_unfinalized_span(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """No task-finished: an AudioGap from the commit point to the end, after the deadline."""

        async def never_finishes(server: ServerSide) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await trio.sleep(0.65)
            await server.send(m.SendResult(sentence(1, 0, 500, "one")))
            await server.expect(m.FinishRequested)
            await trio.sleep_forever()

        start = trio.current_time()
        events = await run_session(never_finishes, 10, cfg=config(finish_timeout_s=10.0))
        (gap,) = of(events, AudioGap)
        assert (gap.start, gap.end, gap.reason) == (8000, 16000, "finish-deadline")
        assert of(events, StreamError)[0].kind == "finish-timeout"
        ended = of(events, StreamEnded)[0]
        assert ended.status == "partial" and ended.audio_lost_ms == 500
        assert 10.0 <= trio.current_time() - start < 13.0

    async def test_task_failed_accounts_for_every_later_sample(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """task-failed mid-stream: error event, and the rest of the input is an exact gap."""

        async def fails(server: ServerSide) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await trio.sleep(0.55)
            await server.send(m.SendResult(sentence(1, 0, 300, "one")))
            await server.send(m.FailTask("InternalError", "boom"))

        events = await run_session(fails, 20)
        (error,) = of(events, StreamError)
        assert error.kind == "task-failed" and "boom" in error.message and not error.permanent
        (gap,) = of(events, AudioGap)
        assert (gap.start, gap.end, gap.reason) == (300 * 16, 20 * FRAME, "connection-lost")
        assert of(events, SessionClosed)[0].reason == "task-failed: InternalError"
        # Something was recognized and the loss is exact: partial (the outcome table).
        assert of(events, StreamEnded)[0].status == "partial"

    async def test_rejected_key_is_permanent(self, autojump_clock: trio.testing.MockClock) -> None:
        """HTTP 401 at the upgrade: one auth error naming the fix; all audio is an exact gap."""

        async def unused(server: ServerSide) -> None:  # pragma: no cover
            raise AssertionError

        events = await run_session(unused, 5, reject=401)
        (error,) = of(events, StreamError)
        assert error.kind == "auth" and error.permanent and "DASHSCOPE_API_KEY" in error.message
        (gap,) = of(events, AudioGap)
        assert (gap.start, gap.end, gap.reason) == (0, 5 * FRAME, "permanent-error")
        assert not of(events, SessionOpened)

    async def test_server_closes_mid_task(self, autojump_clock: trio.testing.MockClock) -> None:
        """An unexpected close before task-finished is a disconnect with an exact gap."""

        async def closes(server: ServerSide) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await trio.sleep(0.35)
            await server.ws.aclose(1011)

        events = await run_session(closes, 10)
        assert of(events, StreamError)[0].kind == "disconnected"
        assert of(events, AudioGap)[0].start == 0 and of(events, AudioGap)[0].end == 10 * FRAME

    @pytest.mark.parametrize(
        "frame",
        [
            "{not json",
            '{"header": {"event": "result-generated", "task_id": "x"}, "payload": {"output": {}}}',
            '{"header": {"event": "result-generated"}, "payload": {"output": {"sentence": {"begin_time": "soon", "text": "x"}}}}',
            b"\x00binary",
        ],
    )
    async def test_hostile_frame_is_a_protocol_error(
        self, autojump_clock: trio.testing.MockClock, frame: str | bytes
    ) -> None:
        """Garbage from the server ends the task with a protocol error, not a crash or hang."""

        async def hostile(server: ServerSide) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await server.ws.send(frame)
            await trio.sleep_forever()

        with trio.fail_after(30):
            events = await run_session(hostile, 5)
        assert of(events, StreamError)[0].kind == "protocol"
        assert of(events, StreamEnded)[0].status == "failed"

    async def test_never_started_times_out(self, autojump_clock: trio.testing.MockClock) -> None:
        """A server that never answers run-task is abandoned after start_timeout_s."""

        async def silent(server: ServerSide) -> None:
            await server.expect(m.RunTaskRequested)
            await trio.sleep_forever()

        events = await run_session(silent, 5, cfg=config(start_timeout_s=5.0))
        error = of(events, StreamError)[0]
        assert error.kind == "timeout" and "5 s" in error.message
        assert of(events, AudioGap)[0].end == 5 * FRAME


class TestFinishDeadline:
    async def test_a_slow_flush_is_not_a_timeout(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Results still arriving after finish-task extend the deadline (a backlog, not a hang)."""

        async def slow_flush(server: ServerSide) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await server.expect(m.FinishRequested)
            for n in range(4):  # 4 results 6 s apart: 24 s in all, each gap under 10 s
                await trio.sleep(6.0)
                await server.send(m.SendResult(sentence(n + 1, n * 100, n * 100 + 90, f"s{n}")))
            await server.send(m.FinishTaskReply())
            await server.closed_by_client()

        events = await run_session(slow_flush, 300, pace=0.0, cfg=config(finish_timeout_s=10.0))
        assert len(of(events, Final)) == 4
        assert of(events, StreamEnded)[0].status == "ok"

    async def test_silence_after_finish_times_out(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A server silent after finish-task is given up on after finish_timeout_s."""

        async def silent(server: ServerSide) -> None:
            await server.expect(m.RunTaskRequested)
            await server.send(m.StartTask())
            await server.expect(m.FinishRequested)
            await trio.sleep_forever()

        events = await run_session(silent, 300, pace=0.0, cfg=config(finish_timeout_s=10.0))
        assert of(events, StreamError)[0].kind == "finish-timeout"
        closed = of(events, SessionClosed)[0]
        # 30 s of audio buffered during the handshake replays at 10x (3 s), then 10 s of silence
        assert closed.t == pytest.approx(3.0 + 10.0, abs=0.5)
