"""/healthz and /metrics over a real loopback socket, and the key nowhere in what the daemon shows.

# real-time: a real TCP listener and client (the MockClock cannot drive the kernel's sockets).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import pathlib
from collections.abc import AsyncGenerator, AsyncIterator

import structlog
import trio
from daemon_helpers import KEY, RATE, config, memory_env, speech

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim.config import SimConfig
from adapters.sim.memory import open_memory_net
from engine import logging as steno_logging
from engine.daemon.http import Response, serve_status
from engine.daemon.keys import dump_config
from engine.daemon.manager import run_daemon
from engine.daemon.sources import SourceContext
from engine.messages import RawBlock

TOML = """
[daemon]
listen = "127.0.0.1:0"
http-timeout-s = 0.3

[[stream]]
id = "a"
source = { kind = "file", path = "two sentences" }
session = { frame-ms = 100 }
outputs = { formats = ["jsonl", "srt", "vtt", "txt"] }
"""


@contextlib.asynccontextmanager
async def two_sentences(spec: object, ctx: SourceContext) -> AsyncIterator[AsyncIterator[RawBlock]]:
    """Two sentences as fast as the stream takes them, then a live source's silence."""

    async def blocks() -> AsyncGenerator[RawBlock, None]:
        for k in range(2):
            for block in speech(k, RATE // 10):
                yield RawBlock(block, RATE)
        await trio.sleep_forever()

    gen = blocks()
    try:
        yield gen
    finally:
        await gen.aclose()


async def request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``; read the whole answer (the server closes the connection)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


class TestOverLoopback:
    async def test_health_metrics_and_no_key_anywhere(self, tmp_path: pathlib.Path) -> None:
        """Both endpoints answer over TCP; logs, bodies, files and the dump never hold the key."""
        logs = io.BytesIO()
        steno_logging.configure(json=True, level=logging.DEBUG)
        # The daemon's processors (secret redaction, JSON), into a buffer; no logger caching,
        # or module-level loggers would keep this configuration for later tests.
        structlog.configure(
            logger_factory=structlog.BytesLoggerFactory(file=logs),  # type: ignore[arg-type]
            cache_logger_on_first_use=False,
        )
        cfg = config(TOML, tmp_path / "out")
        bodies: list[bytes] = []
        with trio.fail_after(30):
            async with open_memory_net(SimConfig(api_keys=[KEY]), ScriptedRecognizer.tone()) as net:
                env = memory_env(net, {"file": two_sentences})
                async with trio.open_nursery() as nursery:
                    daemon, port = await nursery.start(
                        functools.partial(run_daemon, cfg, env, signals=False)
                    )
                    # real-time: the counters have no event to wait on; poll them.
                    while daemon.metrics["a"].finals < 2:  # noqa: ASYNC110
                        await trio.sleep(0.05)

                    status, headers, body = await request(port, get("/healthz?verbose=1"))
                    assert (status, headers["content-type"]) == (200, "application/json")
                    health = json.loads(body)
                    assert health["status"] == "ok"
                    assert health["streams"]["a"]["state"] == "running"
                    assert health["streams"]["a"]["finals"] == 2
                    bodies.append(body)

                    status, headers, body = await request(port, get("/metrics"))
                    assert status == 200
                    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
                    assert 'steno_finals_total{stream="a"} 2.0' in body.decode()
                    assert "process_resident_memory_bytes " in body.decode()  # the standard ones
                    assert int(headers["content-length"]) == len(body)
                    bodies.append(body)

                    status, headers, body = await request(port, get("/readyz"))
                    assert (status, json.loads(body)["status"]) == (200, "ready")

                    status, headers, body = await request(port, get("/metrics", "HEAD"))
                    assert (status, body) == (200, b"") and int(headers["content-length"]) > 0
                    assert (await request(port, get("/metrics", "POST")))[0] == 405
                    assert (await request(port, get("/")))[0] == 404
                    assert (await request(port, b"NONSENSE\r\n\r\n"))[0] == 400

                    # A client that never sends a request is cut off at http-timeout-s.
                    silent = await trio.open_tcp_stream("127.0.0.1", port)
                    with trio.fail_after(3):
                        assert await silent.receive_some(10) == b""
                    await silent.aclose()

                    daemon.request_drain()
        assert daemon.clean
        outputs = [p.read_bytes() for p in (tmp_path / "out").iterdir()]
        txt = next((tmp_path / "out").glob("a-*.txt")).read_text()
        assert len(txt.splitlines()) == 2
        everything = [
            logs.getvalue(),
            *bodies,
            *outputs,
            dump_config(cfg, key_source="test").encode(),
        ]
        assert all(KEY.encode() not in blob for blob in everything)
        assert b"daemon.stream.end" in logs.getvalue()  # the logs were really captured
        assert len(outputs) == 4


class TestServerAlone:
    async def test_a_crashing_app_is_a_500_and_the_server_goes_on(self) -> None:
        calls = 0

        def app(method: str, path: str) -> Response:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("bug")
            return Response(200, b"fine\n")

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(functools.partial(serve_status, "127.0.0.1", 0, app))
                assert (await request(port, get("/x")))[0] == 500
                assert (await request(port, get("/x")))[2] == b"fine\n"
                nursery.cancel_scope.cancel()
