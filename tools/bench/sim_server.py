"""The simulator as a process of its own, for benchmarks: TCP on loopback, scripted recognizer.

Usage: python -m tools.bench.sim_server [--host 127.0.0.1] [--port 0] [--log-level warning]
       [--feed-batch-ms 0]

Prints one JSON line on stdout once it accepts connections,
``{"host": "127.0.0.1", "port": 40123, "pid": 4242}``, then serves until its stdin
reaches end-of-file (the parent closed it or died) or it gets SIGINT/SIGTERM. Tying
its life to stdin means a crashed benchmark never leaves a simulator behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import trio

from adapters.sim.config import SimConfig
from adapters.sim.recognizers import make_recognizer
from adapters.sim.server import serve
from engine.logging import configure
from engine.runtime import tune_for_streams


async def _until_stdin_closes() -> None:
    # A blocking read in a thread: stdin may be a pipe, a file or a terminal. The
    # thread is abandoned on cancellation; it ends with the process.
    await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


async def _until_signalled() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def _stop_when(waiter: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
    await waiter()
    scope.cancel()


async def main(host: str, port: int, feed_batch_ms: int = 0) -> None:
    recognizer = make_recognizer("scripted")
    config = SimConfig(host=host, port=port, feed_batch_ms=feed_batch_ms)
    try:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve, config, recognizer)
            print(json.dumps({"host": host, "port": bound, "pid": os.getpid()}), flush=True)
            async with trio.open_nursery() as waiters:
                waiters.start_soon(_stop_when, _until_stdin_closes, waiters.cancel_scope)
                waiters.start_soon(_stop_when, _until_signalled, waiters.cancel_scope)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await recognizer.aclose()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--feed-batch-ms", type=int, default=0, metavar="MS",
        help="recognize audio in batches of at least MS per task (as steno simulate; "
        "default 0: as it arrives)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not 0 <= args.feed_batch_ms <= SimConfig().feed_chunk_ms:
        parser.error(f"--feed-batch-ms must be in 0–{SimConfig().feed_chunk_ms}")
    configure(json=False, level=getattr(logging, args.log_level.upper()))
    tune_for_streams()  # the collector's policy for many streams (engine/runtime.py)
    trio.run(main, args.host, args.port, args.feed_batch_ms)


if __name__ == "__main__":
    cli()
