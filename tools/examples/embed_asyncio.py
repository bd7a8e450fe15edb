"""Embed Stenograph in an asyncio application without blocking its loop.

python tools/examples/embed_asyncio.py [WAV]
"""

from __future__ import annotations

import asyncio
import sys

import soundfile as sf
from embed_trio import ROOT, config

from engine import Final, StreamEnded
from engine.threaded import AsyncioStream


async def main(path: str) -> int:
    audio, rate = sf.read(path, dtype="int16", always_2d=True)
    async with AsyncioStream(config()) as stream:

        async def produce() -> None:
            for start in range(0, len(audio), rate // 10):
                await stream.push(
                    audio[start : start + rate // 10], rate=rate, channels=audio.shape[1]
                )
            await stream.end_input()

        producer = asyncio.create_task(produce())
        async for event in stream.events():
            if isinstance(event, Final):
                print(f"final: {event.text}")
            elif isinstance(event, StreamEnded):
                print(f"ended: {event.status}, {event.finals} finals")
        await producer
    return 0


if __name__ == "__main__":
    raise SystemExit(
        asyncio.run(
            main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "scenarios/audio/weather.wav"))
        )
    )
