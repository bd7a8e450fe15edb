"""Shared pieces of the daemon tests: synthetic live sources, configs, an in-memory environment.

Sources are tone-coded speech (``adapters.recognizers.tonecode``) that the
scripted recognizer decodes exactly, so "every sentence once, at the right
global time" is checkable across faults, suspensions and restarts.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal

import msgspec
import numpy as np
import pytest
import trio

from adapters.recognizers.tonecode import LEAD_IN_MS, VOCABULARY, synthesize
from engine.config import Secret
from engine.daemon.config import DaemonConfig, decode_config
from engine.daemon.config_sources import SourceSpec
from engine.daemon.runner import StreamEnv
from engine.daemon.sources import SourceContext, SourceOpener
from engine.messages import RawBlock

RATE = 16000
KEY = "sk-daemon-test-4f1c9e2b7d"  # recognizable: grepped for in every output
EPOCH = 1_700_000_000.0  # 2023-11-14T22:13:20Z: the wall clock at trio time 0


def sentence(k: int) -> str:
    """A distinct two-word sentence per cycle (unique for k < 4096)."""
    return f"{VOCABULARY[k % 64]} {VOCABULARY[(k // 64) % 64]}"


def speech(k: int, block: int) -> list[np.ndarray]:
    """Cycle ``k``'s sentence as float32 blocks of ``block`` samples (the last zero-padded)."""
    pcm = synthesize([sentence(k)], RATE).astype(np.float32) / 32768.0
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % block, dtype=np.float32)])
    return [pcm[i : i + block] for i in range(0, len(pcm), block)]


def synthetic(
    *,
    cycles: int,
    cycle_s: float,
    block_s: float,
    idle: Literal["silence", "pause"],
    tail_s: float = 0.0,
    quiet_block_s: float | None = None,
) -> SourceOpener:
    """A live source: cycle k speaks sentence(k), then is silent (or, after ``tail_s`` of
    silence, sends nothing) until cycle k+1.

    Blocks are sent when they would have been captured (block end), on the trio clock.
    """
    block = int(block_s * RATE)
    zeros = np.zeros(block, dtype=np.float32)
    zeros.flags.writeable = False
    quiet = np.zeros(int((quiet_block_s or 0) * RATE), dtype=np.float32)
    quiet.flags.writeable = False

    @contextlib.asynccontextmanager
    async def opener(
        spec: SourceSpec, ctx: SourceContext
    ) -> AsyncIterator[AsyncIterator[RawBlock]]:
        async def blocks() -> AsyncGenerator[RawBlock, None]:
            t0 = trio.current_time()
            for k in range(cycles):
                start = t0 + k * cycle_s
                at = start
                for chunk in speech(k, block):
                    at += block_s
                    await trio.sleep_until(at)
                    yield RawBlock(chunk, RATE)
                if idle == "silence":
                    while at + block_s <= start + cycle_s:
                        # Long silences may come in longer blocks (cheaper in virtual time).
                        step = (
                            block_s if quiet_block_s is None or at - start < 60 else quiet_block_s
                        )
                        step = min(step, start + cycle_s - at)
                        at += step
                        await trio.sleep_until(at)
                        yield RawBlock(
                            zeros if step == block_s else quiet[: int(step * RATE)], RATE
                        )
                else:
                    while at + block_s <= start + tail_s:
                        at += block_s
                        await trio.sleep_until(at)
                        yield RawBlock(zeros, RATE)
                    await trio.sleep_until(start + cycle_s)

        gen = blocks()
        try:
            yield gen
        finally:
            await gen.aclose()

    return opener


def expected_start_s(k: int, cycle_s: float) -> float:
    return k * cycle_s + LEAD_IN_MS / 1000.0


def config(toml: str, out: pathlib.Path | None = None) -> DaemonConfig:
    """Decode ``toml``; with ``out``, every stream writes there (``[daemon] output-dir``)."""
    decoded = decode_config(toml.encode(), origin="test.toml")
    if out is not None:
        decoded = replace(decoded, daemon=replace(decoded.daemon, output_dir=str(out)))
    return decoded


def wall_clock() -> float:
    """EPOCH + trio time; callable from trio and from the renderer's worker threads."""
    try:
        return EPOCH + trio.current_time()
    except RuntimeError:
        return EPOCH + trio.from_thread.run_sync(trio.current_time)


def memory_env(net: Any, openers: dict[str, SourceOpener] | None = None, **kw: Any) -> StreamEnv:
    """Streams dial the in-memory simulator ``net``."""
    return StreamEnv(
        url="ws://sim.invalid/api-ws/v1/inference",
        api_key=Secret(KEY),
        clock=wall_clock,
        dial=net.dial,
        sources=SourceContext(openers=openers or {}),
        seed=7,
        **kw,
    )


def task_count() -> int:
    """Every trio task alive in this run (the whole tree under the root task)."""
    count, stack = 0, [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def replace(struct: Any, **changes: Any) -> Any:
    return msgspec.structs.replace(struct, **changes)


@pytest.fixture(name="inline_threads")
def _inline_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``trio.to_thread.run_sync`` work inline, for virtual-time tests.

    Under ``MockClock(autojump_threshold=0)`` a worker thread counts as "every task
    blocked", so the clock leaps through every pending timer while a file is being
    written (a stream would "start" hours late). The daemon's blocking work is a
    few small file writes, which are harmless on the trio thread in a test.
    """

    async def run_sync(fn: Callable[..., Any], *args: Any, **_: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return fn(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", run_sync)
