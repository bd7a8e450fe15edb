"""The upgrade (routing, authentication) over memory streams, and the real TCP path."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from conftest import deadline
from simclient import API_KEY, AUTH, SimClient, finals, tone_pcm
from trio_websocket import ConnectionRejected, open_websocket_url

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import SimConfig, open_memory_net, open_simulator, serve
from adapters.sim.validation import Rejection, TaskSpec

KEYED = SimConfig(api_keys=[API_KEY])


class TestUpgrade:
    @pytest.mark.parametrize(
        ("target", "headers"),
        [
            ("/api-ws/v1/inference", {"Authorization": f"Bearer {API_KEY}"}),
            ("/api-ws/v1/inference", {"Authorization": f"bearer {API_KEY}"}),
            ("/api-ws/v1/inference", {"authorization": f"BEARER  {API_KEY}"}),
            (f"/api-ws/v1/inference/?api_key={API_KEY}", {}),
            (f"/api-ws/v1/inference?api_key={API_KEY}", {"user-agent": "browser"}),
        ],
    )
    @deadline(10)
    async def test_accepted(
        self, autojump_clock: trio.testing.MockClock, target: str, headers: dict[str, str]
    ) -> None:
        """Bearer in any case, or the api_key query (with or without a trailing slash)."""
        async with open_memory_net(KEYED, ScriptedRecognizer.tone()) as net:
            client = SimClient(await net.connect(target, headers))
            await client.run_task("t1")
            assert (await client.recv())["header"]["event"] == "task-started"

    @pytest.mark.parametrize(
        ("target", "headers"),
        [
            ("/api-ws/v1/inference", {}),
            ("/api-ws/v1/inference", {"Authorization": "Bearer wrong"}),
            ("/api-ws/v1/inference", {"Authorization": f"Basic {API_KEY}"}),
            ("/api-ws/v1/inference", {"Authorization": "Bearer"}),
            ("/api-ws/v1/inference?api_key=wrong", {}),
        ],
    )
    @deadline(10)
    async def test_rejected_with_401(
        self, autojump_clock: trio.testing.MockClock, target: str, headers: dict[str, str]
    ) -> None:
        """A missing or unknown key fails the upgrade: HTTP 401 with a JSON body."""
        async with open_memory_net(KEYED, ScriptedRecognizer.tone()) as net:
            with pytest.raises(ConnectionRejected) as caught:
                await net.connect(target, headers)
        assert caught.value.status_code == 401
        assert caught.value.body is not None
        assert json.loads(caught.value.body)["code"] == "InvalidApiKey"
        assert (b"content-type", b"application/json; charset=utf-8") in caught.value.headers

    @deadline(10)
    async def test_any_key_when_none_configured(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """api_keys=None accepts any non-empty key, but still needs one."""
        async with open_memory_net(SimConfig(), ScriptedRecognizer.tone()) as net:
            await net.connect(headers={"Authorization": "Bearer anything"})
            with pytest.raises(ConnectionRejected) as caught:
                await net.connect()
        assert caught.value.status_code == 401

    @pytest.mark.parametrize(
        "target", ["/", "/api-ws/v1/realtimex?model=x", "/api-ws/v1/inferencex", "/api/v1/tasks"]
    )
    @deadline(10)
    async def test_unknown_path_404(
        self, autojump_clock: trio.testing.MockClock, target: str
    ) -> None:
        async with open_memory_net(SimConfig(), ScriptedRecognizer.tone()) as net:
            with pytest.raises(ConnectionRejected) as caught:
                await net.connect(target, AUTH)
        assert caught.value.status_code == 404
        assert caught.value.body is not None
        assert json.loads(caught.value.body)["code"] == "NotFound"

    @deadline(120)
    async def test_silent_client_dropped_at_connect_timeout(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A peer that never sends the HTTP upgrade is closed after connect_timeout_s."""
        async with open_memory_net(
            SimConfig(connect_timeout_s=5), ScriptedRecognizer.tone()
        ) as net:
            stream = await net.open_stream()
            start = trio.current_time()
            assert await stream.receive_some() == b""
            assert trio.current_time() - start == pytest.approx(5)


class TestTcp:
    @deadline(20)
    async def test_serve_on_loopback(self) -> None:
        """serve() on port 0 reports the port; a real socket client transcribes."""
        recognizer = ScriptedRecognizer.tone()
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, KEYED, recognizer)
            url = f"ws://127.0.0.1:{port}/api-ws/v1/inference"
            async with open_websocket_url(
                url, extra_headers=[(b"Authorization", b"bearer sk-test")]
            ) as ws:
                events = await SimClient(ws).transcribe(tone_pcm(["hello world"]), pace=False)
            assert finals(events) == ["Hello world."]
            # A bare HTTP upgrade without a key (trio-websocket's client leaks its
            # socket when rejected, so this one is written by hand).
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(
                    b"GET /api-ws/v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                )
                response = b""
                while chunk := await stream.receive_some():
                    response += chunk
            head, _, body = response.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 401 ")
            assert json.loads(body)["code"] == "InvalidApiKey"
            nursery.cancel_scope.cancel()

    @deadline(20)
    async def test_open_simulator(self) -> None:
        """The embedded-default handle: host, port and the inference URL."""
        async with open_simulator(SimConfig(), ScriptedRecognizer.tone()) as sim:
            assert sim.host == "127.0.0.1"
            assert sim.port > 0
            assert sim.inference_url == f"ws://127.0.0.1:{sim.port}/api-ws/v1/inference"
            async with open_websocket_url(sim.inference_url + "?api_key=k") as ws:
                client = SimClient(ws)
                await client.run_task("t1")
                assert (await client.recv())["header"]["event"] == "task-started"

    @deadline(20)
    async def test_open_simulator_passes_body_errors_through(self) -> None:
        """An error in the body surfaces as itself, not as an ExceptionGroup."""
        with pytest.raises(KeyError):
            async with open_simulator(SimConfig(), ScriptedRecognizer.tone()):
                raise KeyError("boom")


class OmitFinished:
    """A toy fault plan: 503 on one path, fail fun-asr tasks, swallow task-finished."""

    def on_upgrade(self, path: str) -> int | None:
        return 503 if "busy" in path else None

    def on_run_task(self, spec: TaskSpec) -> Rejection | None:
        return Rejection("Throttling", "slow down") if spec.model == "fun-asr-realtime" else None

    async def before_send(self, frame: str) -> str | None:
        await trio.sleep(0.5)
        return None if '"task-finished"' in frame else frame


class TestFaultSeam:
    @deadline(30)
    async def test_hooks(self, autojump_clock: trio.testing.MockClock) -> None:
        """Each hook of the fault seam takes effect (the plans themselves come later)."""
        recognizer = ScriptedRecognizer.tone()
        async with open_memory_net(SimConfig(), recognizer, faults=OmitFinished()) as net:
            with pytest.raises(ConnectionRejected) as caught:
                await net.connect("/api-ws/v1/inference?busy=1", AUTH)
            assert caught.value.status_code == 503
            client = SimClient(await net.connect(headers=AUTH))
            await client.run_task("t1", "fun-asr-realtime")
            assert (await client.recv())["header"]["error_code"] == "Throttling"
            client = SimClient(await net.connect(headers=AUTH))
            await client.run_task("t2")
            sent = trio.current_time()
            assert (await client.recv())["header"]["event"] == "task-started"
            assert trio.current_time() - sent == pytest.approx(0.5)
            await client.finish("t2")
            with trio.move_on_after(10) as waiting:
                await client.recv()
            assert waiting.cancelled_caught, "task-finished should have been swallowed"
