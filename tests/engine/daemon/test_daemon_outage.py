"""A 24/7 daemon tells the truth while an outage lasts (virtual time).

Three live streams; the service goes away for five minutes (open connections
dropped, every new one refused) with a 10 s replay buffer: /healthz turns
``degraded`` within the grace, ``steno_audio_lost_seconds_total`` rises every
second of overflow *during* the outage, health is ``ok`` again after recovery,
and each stream's total equals its closing ``AudioGap``s (nothing counted twice).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from collections.abc import AsyncGenerator, AsyncIterator

import pytest
import trio
import trio.testing
import trio_websocket
from daemon_helpers import (
    KEY,
    RATE,
    _inline_threads,  # noqa: F401 - the inline_threads fixture
    config,
    memory_env,
    speech,
)
from prometheus_client.parser import text_string_to_metric_families

from adapters.dashscope.ws import websocket_dialer
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim.config import SimConfig
from adapters.sim.memory import MemoryNet, open_memory_net
from engine.daemon.exposition import ALERT_NAMES
from engine.daemon.manager import Daemon
from engine.daemon.sources import SourceContext
from engine.events import AudioGap, StreamEnded, decode_jsonl_line
from engine.messages import RawBlock

pytestmark = pytest.mark.usefixtures("inline_threads")

IDS = ("a", "b", "c")
GRACE_S = 5.0
BUFFER_S = 10.0
OUTAGE_S = 300.0
STREAM = """
[[stream]]
id = "{id}"
source = {{ kind = "url", url = "rtsp://cam/{id}" }}
session = {{ frame-ms = 1000, replay-buffer-s = {buffer} }}
outputs = {{ formats = ["jsonl"] }}
restart = {{ backoff-base-s = 2, backoff-cap-s = 2, jitter = false }}
"""
TOML = f"[daemon]\ndegraded-after-s = {GRACE_S}\n" + "".join(
    STREAM.format(id=i, buffer=BUFFER_S) for i in IDS
)


class Service:
    """The in-memory simulator behind a switch: down drops every connection and refuses new ones."""

    def __init__(self, net: MemoryNet) -> None:
        self.net = net
        self.up = True
        self.open: set[trio_websocket.WebSocketConnection] = set()

    @contextlib.asynccontextmanager
    async def open_websocket(
        self, url: str, headers: list[tuple[bytes, bytes]], *, connect_timeout: float
    ) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        """The net's WebSocket opener, switched (the engine's dialer maps its errors)."""
        if not self.up:
            await trio.lowlevel.checkpoint()
            raise OSError(111, "Connection refused")
        async with self.net.open_websocket(url, headers, connect_timeout=connect_timeout) as ws:
            self.open.add(ws)
            try:
                yield ws
            finally:
                self.open.discard(ws)

    async def go_down(self) -> None:
        self.up = False
        for ws in list(self.open):
            await ws.aclose(1011, "gone")


@contextlib.asynccontextmanager
async def camera(spec: object, ctx: SourceContext) -> AsyncIterator[AsyncIterator[RawBlock]]:
    """Sentences back to back, in real time (1 s blocks): never a silence, so an outage
    overflows the buffer every second (silence would be committed instead, not lost)."""

    async def blocks() -> AsyncGenerator[RawBlock, None]:
        at = trio.current_time()
        for k in range(1000):
            for block in speech(k, RATE):
                at += 1.0
                await trio.sleep_until(at)
                yield RawBlock(block, RATE)

    gen = blocks()
    try:
        yield gen
    finally:
        await gen.aclose()


def scrape(daemon: Daemon) -> dict[str, dict[str, float]]:
    """/metrics through prometheus_client's parser: sample name -> stream -> value."""
    response = daemon.http_app("GET", "/metrics")
    assert response.status == 200
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[sample.labels.get("stream", "")] = sample.value
    return out


def health(daemon: Daemon) -> tuple[int, dict[str, object]]:
    response = daemon.http_app("GET", "/healthz")
    return response.status, json.loads(response.body)


def jsonl(out: pathlib.Path, stream: str) -> list[object]:
    return [
        decode_jsonl_line(line)
        for path in sorted(out.glob(f"{stream}*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


class TestOutage:
    async def test_five_minutes_down_with_a_ten_second_buffer(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        sim = SimConfig(api_keys=[KEY], feed_chunk_ms=1000)
        async with open_memory_net(sim, ScriptedRecognizer.tone()) as net:
            service = Service(net)
            env = memory_env(net, {"url": camera})
            env = type(env)(**{**env.__dict__, "dial": websocket_dialer(service.open_websocket)})
            daemon = Daemon(config(TOML, tmp_path), env)
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                await trio.sleep(65)
                assert health(daemon)[0] == 200 and health(daemon)[1]["status"] == "ok"
                assert daemon.http_app("GET", "/readyz").status == 200
                samples = scrape(daemon)
                assert samples["steno_audio_lost_seconds_total"] == dict.fromkeys(IDS, 0.0)
                # No task has ended yet (they last an hour): the first-package delay is
                # recorded when the first result arrives, and every final's lag is timed.
                assert all(samples["steno_first_package_delay_seconds_count"][i] == 1 for i in IDS)
                finals = samples["steno_final_lag_seconds_count"]
                assert all(finals[i] == daemon.metrics[i].finals >= 3 for i in IDS)
                mean_lag = samples["steno_final_lag_seconds_sum"]["a"] / finals["a"]
                assert 0 < mean_lag < 3.0  # 1 s blocks and 1 s result chunks

                await service.go_down()
                t_down = trio.current_time()
                await trio.sleep(GRACE_S + 1)
                code, doc = health(daemon)
                assert (code, doc["status"]) == (200, "degraded")
                assert sorted(doc["degraded"]) == list(IDS)  # type: ignore[call-overload]
                assert daemon.http_app("GET", "/readyz").status == 503

                # From the moment the buffer overflows, the loss rises every second.
                await trio.sleep_until(t_down + BUFFER_S + 2)
                previous = scrape(daemon)["steno_audio_lost_seconds_total"]
                risen = 0
                while trio.current_time() < t_down + OUTAGE_S - 1:
                    await trio.sleep(1.0)
                    samples = scrape(daemon)
                    lost = samples["steno_audio_lost_seconds_total"]
                    assert all(lost[i] > previous[i] for i in IDS), (
                        trio.current_time() - t_down,
                        lost,
                    )
                    assert all(samples["steno_replay_buffer_fill_ratio"][i] == 1.0 for i in IDS)
                    outage = samples["steno_stream_outage_seconds"]
                    assert all(outage[i] > BUFFER_S for i in IDS)
                    previous, risen = lost, risen + 1
                assert risen >= OUTAGE_S - BUFFER_S - 5
                entry = health(daemon)[1]["streams"]["a"]  # type: ignore[index]
                assert entry["outage"]["for_s"] > OUTAGE_S - 5
                assert entry["outage"]["lost_s"] > OUTAGE_S - BUFFER_S - 5
                live_total = previous

                service.up = True
                t_up = trio.current_time()
                await trio.sleep(30)
                code, doc = health(daemon)
                assert (code, doc["status"], doc["degraded"]) == (200, "ok", {})
                samples = scrape(daemon)
                assert samples["steno_stream_outage_seconds"] == dict.fromkeys(IDS, 0.0)
                after = samples["steno_audio_lost_seconds_total"]
                assert all(after[i] >= live_total[i] for i in IDS)
                assert set(ALERT_NAMES) <= set(samples)
                daemon.request_drain()

        for i in IDS:
            events = jsonl(tmp_path, i)
            gaps = [e for e in events if isinstance(e, AudioGap)]
            assert [g.reason for g in gaps] == ["replay-overflow"]  # one outage, one gap
            total = sum((g.end - g.start) / g.rate for g in gaps)
            # Its exact times: from the commit point before the drop to what the buffer
            # still held when a task opened again (within one backoff of the recovery).
            (gap,) = gaps
            assert t_up - BUFFER_S - 1 <= gap.end / RATE <= t_up + 2 - BUFFER_S + 1
            assert gap.start / RATE < t_down
            assert after[i] == pytest.approx(total)  # the live total, once the gap is in
            assert OUTAGE_S - BUFFER_S - 5 < total < OUTAGE_S + 5
            assert daemon.metrics[i].audio_lost_s == pytest.approx(total)
            # The live counter never ran ahead of what the gaps finally reported.
            assert live_total[i] <= total + 1e-9
            ended = events[-1]
            assert isinstance(ended, StreamEnded)
            assert ended.audio_lost_ms == round(total * 1000)
