"""Connections read by the hub against the simulator over real loopback TCP.

# real-time: loopback sockets to a TCP simulator (MockClock would jump while bytes travel).

The happy path with many connections on one hub, a server that goes half-open (the
pong deadline ends it), and a server that drops the connection mid-results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from adapters.dashscope import _read_hub
from adapters.dashscope._read_hub import ReadHub, shared_hub
from adapters.dashscope.connection import LinkSettings
from adapters.dashscope.fastws import dial_fast
from adapters.dashscope.inference_connection import InferenceConnection
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from adapters.sim.faults import FaultPlan, parse_fault_spec
from adapters.sim.server import open_simulator
from engine.errors import Disconnected
from engine.results import Heard

pytestmark = pytest.mark.skipif(not _read_hub.AVAILABLE, reason="the hub needs epoll (Linux)")

RATE = 16000
SENTENCES = ["hello world", "the weather today is sunny and warm"]
FRAME = RATE * 2 // 10  # 100 ms of 16-bit mono


@pytest.fixture(name="hub")
async def _hub() -> AsyncIterator[ReadHub]:
    with shared_hub() as hub:
        yield hub
    assert len(hub) == 0


def link(url: str, task_id: str, **settings: Any) -> InferenceConnection:
    base: dict[str, Any] = {"url": url, "api_key": "sk-test", "user_agent": "t", "rate": RATE}
    return InferenceConnection(
        settings=LinkSettings(**(base | settings)),
        dial=dial_fast,
        task_id=task_id,
        model="paraformer-realtime-v2",
        parameters={"format": "pcm", "sample_rate": RATE},
    )


async def transcribe(conn: InferenceConnection, pcm: bytes) -> list[str]:
    """Stream ``pcm`` in 100 ms frames, finish, and return the final texts."""
    finals: list[str] = []

    async def consume() -> None:
        async for r in conn.results:
            if isinstance(r, Heard) and r.final:
                finals.append(r.text)

    async with trio.open_nursery() as nursery:
        await nursery.start(conn.run)
        nursery.start_soon(consume)
        for i in range(0, len(pcm), FRAME):
            if not conn.try_send_audio(pcm[i : i + FRAME]):
                await conn.send_audio(pcm[i : i + FRAME])
        await conn.finish()
        conn.release()
    return finals


@pytest.mark.timeout(120)
async def test_many_connections_on_one_hub_get_every_final(hub: ReadHub) -> None:
    """Twenty connections at once, read by the one hub: every final, word for word."""
    pcm = synthesize(SENTENCES, RATE).tobytes()
    recognizer = ScriptedRecognizer.tone()
    got: dict[int, list[str]] = {}

    async def one(n: int, url: str) -> None:
        got[n] = await transcribe(link(url, f"t{n}"), pcm)

    try:
        with trio.fail_after(60):
            async with open_simulator(SimConfig(), recognizer) as sim:
                async with trio.open_nursery() as nursery:
                    for n in range(20):
                        nursery.start_soon(one, n, sim.inference_url)
    finally:
        await recognizer.aclose()
    assert len(got) == 20
    assert all([t.strip(".").lower() for t in finals] == SENTENCES for finals in got.values())
    assert hub.calls > 0


@pytest.mark.timeout(60)
async def test_a_half_open_server_misses_its_pong_deadline(hub: ReadHub) -> None:
    """The server stops reading and answering: the parked reader's ping finds no pong."""
    recognizer = ScriptedRecognizer.tone()
    plan = parse_fault_spec("half-open:after=2")
    conn = None
    try:
        with trio.fail_after(30):
            async with open_simulator(SimConfig(), recognizer, faults=plan) as sim:
                conn = link(sim.inference_url, "t1", ping_interval_s=0.3, pong_timeout_s=0.3)
                async with trio.open_nursery() as nursery:
                    await nursery.start(conn.run)
                    await conn.send_audio(bytes(FRAME))
                    await conn.ended.wait()
    finally:
        await recognizer.aclose()
    assert conn is not None and conn.close_reason == "ping-timeout"


@pytest.mark.timeout(60)
async def test_a_dropped_connection_ends_after_the_results_before_it(hub: ReadHub) -> None:
    """The server aborts mid-stream (RST): the results that came first, then the death."""
    pcm = synthesize(SENTENCES, RATE).tobytes()
    frames = len(pcm) // FRAME
    recognizer = ScriptedRecognizer.tone()
    plan = FaultPlan(faults=parse_fault_spec(f"drop:after={frames - 5}").faults)
    conn = None
    texts: list[str] = []
    try:
        with trio.fail_after(30):
            async with open_simulator(SimConfig(), recognizer, faults=plan) as sim:
                conn = link(sim.inference_url, "t1")

                async def consume() -> None:
                    async for r in conn.results:
                        if isinstance(r, Heard) and r.final:
                            texts.append(r.text)

                async with trio.open_nursery() as nursery:
                    await nursery.start(conn.run)
                    nursery.start_soon(consume)
                    try:
                        for i in range(0, len(pcm), FRAME):
                            await conn.send_audio(pcm[i : i + FRAME])
                            await trio.sleep(0.002)  # real-time: let results come meanwhile
                    except Disconnected:
                        pass
                    await conn.ended.wait()
    finally:
        await recognizer.aclose()
    assert conn is not None and isinstance(conn.error, Disconnected)
    assert [t.strip(".").lower() for t in texts] == SENTENCES[:1]
