"""Micro bench of the input path's stages: CPU µs per 100 ms frame (read, convert, pace).

Usage::

    python -m tools.bench.input_path [--frames 3000] [--streams 300] [--json out.json]

Every figure is CPU time (``time.process_time``) divided by frames, so a busy machine
slows the run but not the numbers much; compare rows of one run, not runs.

* read: a 16 kHz int16 WAV, the old way (one ``to_thread`` float32 read per 100 ms
  block) against the read-ahead (``AudioSource.read_pcm16``, 32 KiB per hop); then
  ``--streams`` files read at once, one thread hop per read against the batched reads.
* convert: one block into frames: the old float path (float32 → soxr passthrough →
  ``float_to_pcm16`` → Rechunker), the int16 path at the model rate, and 48 kHz int16
  through soxr.
* pace: ``--streams`` paced loops of 100 ms frames (spread over the period) for a few
  seconds of real time, each waking with ``trio.sleep_until`` against the shared
  :class:`engine.pacer.Pacer`.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import trio

from adapters.audio.files import open_audio_source
from adapters.audio.resample import StreamResampler, float_to_pcm16
from engine.actors.resampler import Rechunker, ResamplerConfig, ResamplerCore
from engine.messages import PcmBlock, RawBlock
from engine.pacer import LatenessHistogram, Pacer

RATE = 16000
BLOCK = RATE // 10


def _cpu_us_per(frames: int, fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) / frames * 1e6


async def _read_old(path: str) -> int:
    source = await open_audio_source(path, block_ms=100)
    n = 0
    async with source:
        async for _ in source:
            n += 1
    return n


async def _read_ahead(path: str) -> int:
    source = await open_audio_source(path, block_ms=100)
    n = 0
    async with source:
        while len(chunk := await source.read_pcm16(16 * 1024)):
            for i in range(0, len(chunk), BLOCK):
                PcmBlock(chunk[i : i + BLOCK], RATE)
                n += 1
    return n


def bench_read(frames: int) -> dict[str, float]:
    x = np.random.default_rng(1).integers(-20000, 20000, frames * BLOCK, dtype=np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "in.wav")
        sf.write(path, x, RATE, subtype="PCM_16")
        out: dict[str, float] = {}
        for name, fn in (("read_old_us", _read_old), ("read_ahead_us", _read_ahead)):
            out[name] = _cpu_us_per(frames, functools.partial(trio.run, fn, path))
        return out


async def _read_many(path: str, streams: int, batched: bool) -> int:
    frames = 0

    async def one() -> None:
        nonlocal frames
        source = await open_audio_source(path, block_ms=100)
        reader = source._reader  # the unbatched variant calls the same read directly
        async with source:
            while True:
                if batched:
                    chunk = await source.read_pcm16(16000)
                else:
                    chunk = await trio.to_thread.run_sync(reader._read_pcm16, 16000)  # type: ignore[attr-defined]
                if not len(chunk):
                    return
                frames += len(chunk) // BLOCK

    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(one)
    return frames


def bench_read_many(streams: int, seconds: int) -> dict[str, float]:
    """``streams`` files read at once, 1 s per read: batched hops against one hop per read."""
    x = np.random.default_rng(1).integers(-20000, 20000, seconds * RATE, dtype=np.int16)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "in.wav")
        sf.write(path, x, RATE, subtype="PCM_16")
        for name, batched in (("read_many_thread_us", False), ("read_many_batched_us", True)):
            start = time.process_time()
            n = trio.run(_read_many, path, streams, batched)
            out[name] = (time.process_time() - start) / n * 1e6
    return out


def bench_convert(frames: int) -> dict[str, float]:
    rng = np.random.default_rng(2)
    ints = rng.integers(-20000, 20000, frames * BLOCK, dtype=np.int16)
    floats = ints.astype(np.float32) / 32768
    raw = [RawBlock(floats[i : i + BLOCK], RATE) for i in range(0, len(floats), BLOCK)]
    pcm = [PcmBlock(ints[i : i + BLOCK], RATE) for i in range(0, len(ints), BLOCK)]
    ints48 = rng.integers(-20000, 20000, frames * 4800, dtype=np.int16)
    pcm48 = [PcmBlock(ints48[i : i + 4800], 48000) for i in range(0, len(ints48), 4800)]

    def old() -> None:
        resampler, chunker = StreamResampler(RATE, RATE), Rechunker(BLOCK)
        for block in raw:
            chunker.push(float_to_pcm16(resampler.process(block.samples)))

    def core(blocks: list[PcmBlock]) -> Callable[[], None]:
        def run() -> None:
            c = ResamplerCore(ResamplerConfig(out_rate=RATE))
            for block in blocks:
                c.audio(block)

        return run

    return {
        "convert_old_float_us": _cpu_us_per(frames, old),
        "convert_int16_us": _cpu_us_per(frames, core(pcm)),
        "convert_48k_soxr_us": _cpu_us_per(frames, core(pcm48)),
    }


async def _paced(
    streams: int,
    seconds: float,
    wait: Callable[[float], Awaitable[None]],
    lateness: LatenessHistogram,
) -> int:
    t0 = trio.current_time() + 0.2
    frames = int(seconds * 10)
    count = 0

    async def loop(offset: float) -> None:
        nonlocal count
        for k in range(1, frames + 1):
            deadline = t0 + offset + k * 0.1
            await wait(deadline)
            lateness.record(trio.current_time() - deadline)
            count += 1

    async with trio.open_nursery() as nursery:
        for i in range(streams):
            nursery.start_soon(loop, (i / streams) * 0.1)
    return count


def bench_pace(streams: int, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    pacer = Pacer()
    for name, wait in (("sleep_until", trio.sleep_until), ("pacer", pacer.wait_until)):
        lateness = LatenessHistogram()
        start = time.process_time()
        n = trio.run(_paced, streams, seconds, wait, lateness)
        out[f"pace_{name}_us"] = (time.process_time() - start) / n * 1e6
        out[f"pace_{name}_p99_ms"] = lateness.percentile(0.99)
    out["pacer_ticks_per_frame"] = pacer.ticks / pacer.lateness.count
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"frames": args.frames, "streams": args.streams}
    result |= bench_read(args.frames)
    result |= bench_read_many(args.streams, 20)
    result |= bench_convert(args.frames)
    result |= bench_pace(args.streams, args.seconds)
    for key, value in result.items():
        print(f"{key:>24}  {value:10.2f}" if isinstance(value, float) else f"{key:>24}  {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
