"""The send and receive stages of ``tools/bench/stages.py`` and the WebSocket sink they use.

The sink is a trio-websocket server in a child process (pinned to CPU 1) that reads
and drops every message, so only the sender's CPU is measured. A send stage opens
20 connections and sends one 3,200 B frame on each per round, a round every 5 ms
(the sink keeps up, so the sender rarely waits on a full socket buffer); the per-round
timer wake is included, ~2 us per frame. On ``/source`` the sink sends instead: one
result-sized text message per connection per round, which the receive stage reads
(a task per connection, as a connection's reader).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Self

from tools.bench._measure import Absent, Measure, run_trio
from tools.bench._sim import ROOT

CONNECTIONS, ROUND_S, FRAME = 20, 0.005, bytes(3200)
RESULT = json.dumps(
    {
        "header": {"task_id": "t" * 32, "event": "result-generated", "attributes": {}},
        "payload": {
            "output": {
                "sentence": {
                    "sentence_id": 1,
                    "begin_time": 0,
                    "end_time": None,
                    "text": "the weather today is sunny and the train leaves at seven",
                    "words": [],
                    "heartbeat": False,
                    "sentence_end": False,
                }
            }
        },
    }
)
"""A partial result as the service sends it (~330 B of JSON text)."""


class SinkServer:
    """``python -m tools.bench.stages --sink`` as a child; it ends when its stdin closes."""

    def __init__(self, *, pin: bool) -> None:
        self.pin = pin

    def __enter__(self) -> Self:
        pin = ["taskset", "-c", "1"] if self.pin else []
        self.proc = subprocess.Popen(
            [*pin, sys.executable, "-m", "tools.bench.stages", "--sink"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.__exit__()
            raise RuntimeError("the sink server did not start")
        self.url = f"ws://127.0.0.1:{json.loads(line)['port']}/sink"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @staticmethod
    def serve_forever() -> None:
        import trio
        import trio_websocket

        async def handler(request: trio_websocket.WebSocketRequest) -> None:
            ws = await request.accept()
            try:
                if request.path.startswith("/source"):  # a result-sized message per round
                    deadline = trio.current_time()
                    while True:
                        deadline += ROUND_S
                        await ws.send_message(RESULT)
                        await trio.sleep_until(deadline)
                while True:
                    await ws.get_message()
            except trio_websocket.ConnectionClosed:
                pass

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(
                    trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None
                )
                print(json.dumps({"port": server.port}), flush=True)
                await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
                nursery.cancel_scope.cancel()

        trio.run(main)


Opener = Callable[[], AbstractAsyncContextManager[Any]]


def _send_stage(open_one: Opener, send: Callable[[Any], Any]) -> Measure:
    def measure(items: int) -> float:
        import trio

        rounds = max(1, items // CONNECTIONS)

        async def main() -> float:
            from contextlib import AsyncExitStack

            async with AsyncExitStack() as stack:
                conns = [await stack.enter_async_context(open_one()) for _ in range(CONNECTIONS)]
                start = trio.current_time()
                t0 = time.process_time()
                for r in range(rounds):
                    for conn in conns:
                        await send(conn)
                    await trio.sleep_until(start + (r + 1) * ROUND_S)
                spent = time.process_time() - t0
            return spent * items / (rounds * CONNECTIONS)

        return run_trio(main)

    return measure


def trio_websocket_stage(url: str) -> Measure:
    import trio_websocket

    return _send_stage(
        lambda: trio_websocket.open_websocket_url(url), lambda ws: ws.send_message(FRAME)
    )


def _dialer(module: str, name: str) -> Any:
    import importlib

    dialer = getattr(importlib.import_module(module), name, None)
    if dialer is None:
        raise Absent(f"{module} has no {name}")
    return dialer


def dialer_stage(url: str, module: str, name: str, *, nowait: bool) -> Measure:
    """Frames through the transport a project dialer opens: ``send``, or the fast lane.

    With ``nowait``: ``send_nowait`` (SEAMS.md seam 1), and the awaited ``send`` when it
    says no; a transport without it makes the stage absent.
    """
    dial = _dialer(module, name)

    async def send(transport: Any) -> None:
        if not nowait:
            await transport.send(FRAME)
        elif not hasattr(transport, "send_nowait"):
            raise Absent(f"{type(transport).__name__} has no send_nowait (SEAMS.md seam 1)")
        elif not transport.send_nowait(FRAME):
            await transport.send(FRAME)

    return _send_stage(lambda: dial(url, [("user-agent", "bench")], connect_timeout=10.0), send)


def receive_stage(url: str) -> Measure:
    """Messages received through the transport a dialer opens, one per connection per
    round from the sink's ``/source``: the reader's wake, the read, the framing."""
    dial = _dialer("adapters.dashscope.fastws", "dial_fast")
    source = url.rsplit("/", 1)[0] + "/source"

    def measure(items: int) -> float:
        import trio

        async def main() -> float:
            from contextlib import AsyncExitStack

            per = max(1, items // CONNECTIONS)
            async with AsyncExitStack() as stack:
                conns = [
                    await stack.enter_async_context(
                        dial(source, [("user-agent", "bench")], connect_timeout=10.0)
                    )
                    for _ in range(CONNECTIONS)
                ]
                for conn in conns:  # the first message: every connection is flowing
                    await conn.receive()
                t0 = time.process_time()

                async def reader(conn: Any) -> None:
                    for _ in range(per):
                        await conn.receive()

                async with trio.open_nursery() as nursery:
                    for conn in conns:
                        nursery.start_soon(reader, conn)
                spent = time.process_time() - t0
            return spent * items / (per * CONNECTIONS)

        return run_trio(main)

    return measure


def SEND_STAGES(url: str) -> list[tuple[str, str, Callable[[Path], Measure]]]:
    """The send stages against the sink at ``url``."""
    return [
        ("send.trio_websocket", "trio-websocket send_message, 20 connections",
         lambda d: trio_websocket_stage(url)),
        ("send.default_dialer", "adapters.dashscope.ws.dial_tcp: transport.send (the engine's)",
         lambda d: dialer_stage(url, "adapters.dashscope.ws", "dial_tcp", nowait=False)),
        ("send.default_dialer_nowait", "dial_tcp: send_nowait, awaited send when it says no",
         lambda d: dialer_stage(url, "adapters.dashscope.ws", "dial_tcp", nowait=True)),
        ("send.fastws", "adapters.dashscope.fastws.dial_fast: transport.send",
         lambda d: dialer_stage(url, "adapters.dashscope.fastws", "dial_fast", nowait=False)),
        ("send.fastws_nowait", "dial_fast: send_nowait, awaited send when it says no",
         lambda d: dialer_stage(url, "adapters.dashscope.fastws", "dial_fast", nowait=True)),
        ("receive.fastws", "dial_fast: receive, one ~330 B text message per wake",
         lambda d: receive_stage(url)),
    ]  # fmt: skip
