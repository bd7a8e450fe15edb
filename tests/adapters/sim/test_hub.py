"""The process-wide reader (``_hub.py``) and inference connections served through it."""

from __future__ import annotations

import functools
import json
import socket
from typing import TYPE_CHECKING, Any

import pytest
import structlog
import trio
import trio.testing
from conftest import deadline
from simclient import API_KEY, SENTENCES, SimClient, finals, loud, run_task_frame, tone_pcm
from trio_websocket import open_websocket_url

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import SimConfig
from adapters.sim._hub import ReadHub
from adapters.sim.server import SimServer

if TYPE_CHECKING:
    from collections.abc import Iterator

KEYED = SimConfig(api_keys=[API_KEY])
HEADERS = [(b"Authorization", f"Bearer {API_KEY}".encode())]


@pytest.fixture(name="pair")
def _pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        yield a, b


class TestReadHub:
    @deadline(10)
    async def test_calls_the_reader_when_readable(
        self, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        """A registered socket's reader runs in the hub's task when bytes arrive; the
        hub's ``now`` is the round's start on trio's clock."""
        a, b = pair
        hub = ReadHub()
        got: list[bytes] = []
        arrived = trio.Event()
        added_at = trio.current_time()

        def reader() -> None:
            assert added_at <= hub.now <= trio.current_time()
            got.append(a.recv(100))
            arrived.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            hub.add(a.fileno(), reader)
            assert len(hub) == 1
            b.send(b"hi")
            await arrived.wait()
            assert got == [b"hi"]
            assert hub.rounds >= 1
            assert hub.calls == 1
            nursery.cancel_scope.cancel()

    @deadline(10)
    async def test_discarded_socket_is_not_read(
        self, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        """After discard() the reader is not called; discarding twice is fine."""
        a, b = pair
        hub = ReadHub()
        calls = 0

        def reader() -> None:
            nonlocal calls
            calls += 1

        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            hub.add(a.fileno(), reader)
            hub.discard(a.fileno())
            hub.discard(a.fileno())
            b.send(b"hi")
            await trio.testing.wait_all_tasks_blocked()
            assert calls == 0
            assert len(hub) == 0
            nursery.cancel_scope.cancel()

    @deadline(10)
    async def test_a_busy_hub_starts_rounds_at_most_every_min_round_s(
        self, pair: tuple[socket.socket, socket.socket], autojump_clock: trio.testing.MockClock
    ) -> None:
        """Bytes arriving right after a round wait for the next round's start."""
        a, b = pair
        hub = ReadHub(min_round_s=1.0)
        times: list[float] = []
        read = trio.lowlevel.ParkingLot()

        def reader() -> None:
            a.recv(100)
            times.append(trio.current_time())
            read.unpark_all()

        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            hub.add(a.fileno(), reader)
            for data in (b"1", b"2"):
                b.send(data)
                await read.park()
            assert times[1] - times[0] == pytest.approx(1.0)
            assert hub.rounds == 2
            nursery.cancel_scope.cancel()

    async def test_add_twice_is_refused(self, pair: tuple[socket.socket, socket.socket]) -> None:
        """A descriptor has one reader."""
        a, _ = pair
        hub = ReadHub()
        hub.add(a.fileno(), lambda: None)
        with pytest.raises(ValueError, match="already"):
            hub.add(a.fileno(), lambda: None)

    def test_negative_round_interval_is_refused(self) -> None:
        """min_round_s must not be negative."""
        with pytest.raises(ValueError, match="min_round_s"):
            ReadHub(min_round_s=-1)

    @deadline(10)
    async def test_crashing_reader_is_dropped_and_the_others_go_on(self) -> None:
        """A reader that raises is logged and dropped; the hub keeps serving the rest."""
        (a, b), (c, d) = socket.socketpair(), socket.socketpair()
        with a, b, c, d:
            c.setblocking(False)
            hub = ReadHub()
            arrived = trio.Event()

            def bad() -> None:
                raise RuntimeError("boom")

            def good() -> None:
                c.recv(100)
                arrived.set()

            with structlog.testing.capture_logs() as logs:
                async with trio.open_nursery() as nursery:
                    await nursery.start(hub.run)
                    hub.add(a.fileno(), bad)
                    b.send(b"x")
                    await trio.testing.wait_all_tasks_blocked()
                    assert len(hub) == 0
                    hub.add(c.fileno(), good)
                    d.send(b"y")
                    await arrived.wait()
                    nursery.cancel_scope.cancel()
            assert [e["event"] for e in logs] == ["hub.step_crashed"]


# ------------------------------------------------------------------ through the server


async def _serve(nursery: trio.Nursery, hub: ReadHub | None) -> str:
    """A TCP simulator (with ``hub`` running, if any); returns its inference URL."""
    server = SimServer(KEYED, ScriptedRecognizer.tone(), hub=hub)
    if hub is not None:
        await nursery.start(hub.run)
    serve = functools.partial(trio.serve_tcp, server.serve_stream, 0, host="127.0.0.1")
    listeners = await nursery.start(serve)
    port = listeners[0].socket.getsockname()[1]
    return f"ws://127.0.0.1:{port}/api-ws/v1/inference"


def _texts(events: list[dict[str, Any]]) -> list[tuple[str, bool]]:
    return [
        (
            e["payload"]["output"]["sentence"]["text"],
            e["payload"]["output"]["sentence"]["sentence_end"],
        )
        for e in events
        if e["header"]["event"] == "result-generated"
    ]


class TestInferenceThroughTheHub:
    @deadline(30)
    async def test_same_results_as_without_the_hub(self) -> None:
        """Audio taken by the hub gives the results a per-connection reader gives."""
        results = []
        for hub in (None, ReadHub()):
            async with trio.open_nursery() as nursery:
                url = await _serve(nursery, hub)
                async with open_websocket_url(url, extra_headers=HEADERS) as ws:
                    events = await SimClient(ws).transcribe(tone_pcm(SENTENCES), pace=False)
                results.append(events)
                if hub is not None:
                    assert hub.calls > 0
                    assert len(hub) == 0  # the client's close took the socket out
                nursery.cancel_scope.cancel()
        without, with_hub = results
        assert finals(with_hub) == ["Hello world.", "The weather today is sunny and warm."]
        assert _texts(with_hub) == _texts(without)
        assert with_hub[-1]["payload"]["usage"] == without[-1]["payload"]["usage"]

    @deadline(30)
    async def test_ping_and_second_task_while_streaming(self) -> None:
        """A ping amid the audio is answered; the connection takes a second task after."""
        hub = ReadHub()
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, hub)
            async with open_websocket_url(url, extra_headers=HEADERS) as ws:
                client = SimClient(ws)
                await client.run_task("t1")
                assert (await client.recv())["header"]["event"] == "task-started"
                await client.send_audio(loud(300), pace=False)
                with trio.fail_after(5):
                    await ws.ping(b"still there?")
                await client.finish("t1")
                assert (await client.until_end())[-1]["header"]["event"] == "task-finished"
                events = await client.transcribe(tone_pcm(["hello world"]), "t2", pace=False)
                assert finals(events) == ["Hello world."]
            assert hub.calls > 0
            nursery.cancel_scope.cancel()

    @deadline(30)
    async def test_bad_frame_while_streaming_fails_the_task(self) -> None:
        """A malformed text frame amid the audio is handed back and fails the task."""
        hub = ReadHub()
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, hub)
            async with await _RawClient.open(url) as client:
                await client.send(_masked(0x2, loud(300)) + _masked(0x1, b"{not json"))
                failed = json.loads(await client.message())
                assert failed["header"]["event"] == "task-failed"
                assert failed["header"]["error_code"] == "InvalidParameter"
                assert await client.message() is None  # then the server closes
            assert len(hub) == 0
            nursery.cancel_scope.cancel()

    @deadline(30)
    async def test_client_gone_mid_stream(self) -> None:
        """A client that drops its socket mid-stream ends the connection; the hub lets go."""
        hub = ReadHub(min_round_s=0)  # no round delay: blocked means done
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, hub)
            client = await _RawClient.open(url)
            # No checkpoint between task-started going out and the reader parking in the hub.
            assert len(hub) == 1
            await client.send(_masked(0x2, loud(100)))
            await client.stream.aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert len(hub) == 0
            nursery.cancel_scope.cancel()


class _RawClient:
    """A hand-written client (trio-websocket's leaks its socket when the server closes)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = b""

    @classmethod
    async def open(cls, url: str) -> _RawClient:
        """Connect, upgrade and start task ``t1`` (its task-started is read)."""
        port = int(url.split(":")[2].split("/")[0])
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await client.send(
            b"GET /api-ws/v1/inference HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer " + API_KEY.encode() + b"\r\n\r\n"
        )
        while b"\r\n\r\n" not in client._buf:
            client._buf += await client.stream.receive_some()
        head, _, client._buf = client._buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        await client.send(_masked(0x1, json.dumps(run_task_frame("t1")).encode()))
        started = json.loads(await client.message() or "")
        assert started["header"]["event"] == "task-started"
        return client

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def message(self) -> str | None:
        """The next text message (None once the server closed or sent its close)."""
        while True:
            if len(self._buf) >= 2:
                opcode, n = self._buf[0] & 0x0F, self._buf[1] & 0x7F
                head = 2
                if n == 126:
                    n, head = int.from_bytes(self._buf[2:4], "big"), 4
                if len(self._buf) >= head + n:
                    payload, self._buf = self._buf[head : head + n], self._buf[head + n :]
                    if opcode == 0x8:
                        return None
                    return payload.decode()
            data = await self.stream.receive_some()
            if not data:
                return None
            self._buf += data

    async def __aenter__(self) -> _RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stream.aclose()


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame with an all-zero mask (the payload goes as is)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload
