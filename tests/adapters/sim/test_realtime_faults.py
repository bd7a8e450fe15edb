"""Fault plans on the realtime endpoint: the same plans as on the inference endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
from conftest import deadline
from rtclient import MODEL, TARGET, TRANSLATOR, RtClient, of_type, open_client, types
from simclient import silence, tone_pcm
from trio_websocket import ConnectionClosed, ConnectionRejected

from adapters.dashscope import realtime_messages as m
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import SimConfig, open_memory_net
from adapters.sim.faults import THROTTLE_CODE, THROTTLE_MESSAGE, FaultSource, parse_fault_spec
from adapters.sim.validation import Rejection, TaskSpec

HEADER = "X-Steno-Fault"


def net_with(faults: FaultSource | None = None) -> Any:
    return open_memory_net(
        SimConfig(), ScriptedRecognizer.tone(), faults=faults, translator=TRANSLATOR
    )


async def faulty(net: Any, spec: str) -> RtClient:
    """A client asking for ``spec`` with the header."""
    return await open_client(net, headers={HEADER: spec})


class TestStream:
    @deadline(30)
    async def test_drop_at_time(self, autojump_clock: trio.testing.MockClock) -> None:
        async with net_with() as net:
            client = await faulty(net, "drop:at=2.5")
            accepted = trio.current_time()
            await client.configure()
            with pytest.raises(ConnectionClosed) as caught:
                await client.recv()
            assert trio.current_time() - accepted == pytest.approx(2.5)
            assert caught.value.reason.code == 1006

    @deadline(30)
    async def test_drop_after_frames(self, autojump_clock: trio.testing.MockClock) -> None:
        """Client events count from the first (here the session.update): the 2nd drops."""
        async with net_with() as net:
            client = await faulty(net, "drop:after=2")
            await client.configure()
            await client.send(m.AppendAudio(bytes(3200)))
            with pytest.raises(ConnectionClosed) as caught:
                await client.recv()
            assert caught.value.reason.code == 1006

    @deadline(300)
    async def test_half_open(self, autojump_clock: trio.testing.MockClock) -> None:
        """Pings unanswered, no events, no close — past the idle timer."""
        async with net_with() as net:
            client = await faulty(net, "half-open:at=1")
            await client.configure()
            await client.ws.ping()
            await trio.sleep(1)
            with trio.move_on_after(5) as ping_wait:
                await client.ws.ping()
            assert ping_wait.cancelled_caught
            await client.send(m.FinishSession())
            with trio.move_on_after(120) as read_wait:
                await client.ws.get_message()
            assert read_wait.cancelled_caught
            with trio.move_on_after(1):
                await client.ws.aclose()


class TestEvents:
    @deadline(60)
    async def test_delay(self, autojump_clock: trio.testing.MockClock) -> None:
        """Every event arrives the delay late, in order; session.created too."""
        async with net_with() as net:
            client = await faulty(net, "delay:1.5")
            start = trio.current_time()
            assert (await client.recv())["type"] == "session.created"
            assert trio.current_time() - start == pytest.approx(1.5)
            await client.configure()
            frames = await client.talk(tone_pcm(["hello world"]))
            assert types(frames)[-2:] == ["response.done", "session.finished"]

    @deadline(60)
    async def test_no_task_finished_swallows_session_finished(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with net_with() as net:
            client = await faulty(net, "no-task-finished")
            await client.configure()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.append, tone_pcm(["hello world"]) + silence(200))
                await client.until("response.done")
            await client.send(m.FinishSession())
            with trio.move_on_after(20) as waiting:
                await client.recv()
            assert waiting.cancelled_caught
            await client.ws.ping()
            assert await client.closed() == 1000  # the server thinks it finished: idle close

    @deadline(30)
    async def test_fail_task_at_time(self, autojump_clock: trio.testing.MockClock) -> None:
        """A fatal error (server_error, the fault's code) mid-session, then a normal close."""
        async with net_with() as net:
            client = await faulty(net, "fail-task:InternalError,message=boom,at=4")
            accepted = trio.current_time()
            await client.configure()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.append, tone_pcm(["hello world", "good morning"]))
                frames = await client.until("error")
                nursery.cancel_scope.cancel()
            assert trio.current_time() - accepted == pytest.approx(4)
            error = frames[-1]["error"]
            assert (error["type"], error["code"], error["message"]) == (
                "server_error",
                "InternalError",
                "boom",
            )
            assert isinstance(client.events[-1], m.FatalServerError)
            assert await client.closed() == 1000

    @deadline(30)
    async def test_fail_task_after_frames(self, autojump_clock: trio.testing.MockClock) -> None:
        async with net_with() as net:
            client = await faulty(net, "fail-task:ServiceUnavailable,after=3")
            await client.configure()
            await client.send(m.AppendAudio(bytes(3200)))
            await client.send(m.AppendAudio(bytes(3200)))
            frame = await client.recv()
            assert frame["error"]["code"] == "ServiceUnavailable"
            assert await client.closed() == 1000

    @pytest.mark.parametrize(
        ("spec", "code", "message"),
        [
            ("throttle", THROTTLE_CODE, THROTTLE_MESSAGE),
            ("fail-task:Arrearage,message=pay%20up", "Arrearage", "pay up"),
        ],
    )
    @deadline(30)
    async def test_at_session_start(
        self, spec: str, code: str, message: str, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Run-task faults replace session.created with their fatal error."""
        async with net_with() as net:
            client = await faulty(net, spec)
            frame = await client.recv()
            assert frame["type"] == "error"
            assert (frame["error"]["code"], frame["error"]["message"]) == (code, message)
            assert frame["error"]["type"] == "server_error"
            assert await client.closed() == 1000


class TestUpgrade:
    @deadline(30)
    async def test_query_and_header(self, autojump_clock: trio.testing.MockClock) -> None:
        """steno_fault beside model in the query, X-Steno-Fault as a header; slow accepts too."""
        async with net_with() as net:
            with pytest.raises(ConnectionRejected) as rejected:
                await net.connect(
                    f"{TARGET}&steno_fault=reject%3A503", {"Authorization": "Bearer k"}
                )
            assert rejected.value.status_code == 503
            assert json.loads(rejected.value.body)["code"] == "ServiceUnavailable"
            start = trio.current_time()
            client = await faulty(net, "slow-accept:3")
            assert trio.current_time() - start == pytest.approx(3)
            assert (await client.recv())["session"]["model"] == MODEL

    @deadline(30)
    async def test_server_plan(self, autojump_clock: trio.testing.MockClock) -> None:
        """A plan given to the server counts realtime connections like the others."""
        async with net_with(parse_fault_spec("reject:403;only=2")) as net:
            statuses = []
            for _ in range(3):
                try:
                    await open_client(net)
                    statuses.append(101)
                except ConnectionRejected as exc:
                    statuses.append(int(exc.status_code))
            assert statuses == [101, 403, 101]


class SwallowAudio:
    """Hand-written hooks: every response.audio.delta is swallowed."""

    def __init__(self) -> None:
        self.swallowed = 0

    def on_upgrade(self, path: str) -> int | None:
        return None

    def on_run_task(self, spec: TaskSpec) -> Rejection | None:
        return None

    async def before_send(self, frame: str) -> str | None:
        await trio.lowlevel.checkpoint()
        if json.loads(frame)["type"] == "response.audio.delta":
            self.swallowed += 1
            return None
        return frame


class TestHooks:
    @deadline(30)
    async def test_before_send_swallows(self, autojump_clock: trio.testing.MockClock) -> None:
        hooks = SwallowAudio()
        async with net_with(hooks) as net:
            client = await open_client(net)
            await client.configure()
            frames = await client.talk(tone_pcm(["hello world"]))
        assert not of_type(frames, "response.audio.delta")
        assert hooks.swallowed > 0
        assert types(frames)[-2:] == ["response.done", "session.finished"]
