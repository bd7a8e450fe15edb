"""Embed Stenograph in a trio program: push PCM, print finals.

    python tools/examples/embed_trio.py [WAV]      (default: scenarios/audio/weather.wav)

Without DASHSCOPE_API_KEY it starts an embedded simulator (pocketsphinx); with
one it talks to the real service.
"""

from __future__ import annotations

import os
import pathlib
import sys

import soundfile as sf
import trio

from engine import Final, Secret, SessionConfig, StreamEnded
from engine.stream import StreamConfig, open_stream

ROOT = pathlib.Path(__file__).resolve().parents[2]


def config() -> StreamConfig:
    key = os.environ.get("DASHSCOPE_API_KEY", "")
    session = SessionConfig(
        stream="example",
        model="paraformer-realtime-v2",
        url="wss://dashscope.aliyuncs.com/api-ws/v1/inference",
        api_key=Secret(key or "embedded"),
    )
    return StreamConfig(session=session, simulator=None if key else "sphinx")


async def main(path: str) -> int:
    audio, rate = sf.read(path, dtype="int16", always_2d=True)
    async with open_stream(config()) as stream:

        async def produce() -> None:
            for start in range(0, len(audio), rate // 10):  # 100 ms chunks, as a live host would
                await stream.push(
                    audio[start : start + rate // 10], rate=rate, channels=audio.shape[1]
                )
            await stream.end_input()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async for event in stream.events():
                if isinstance(event, Final):
                    print(f"final: {event.text}")
                elif isinstance(event, StreamEnded):
                    print(f"ended: {event.status}, {event.finals} finals")
    return 0


if __name__ == "__main__":
    raise SystemExit(
        trio.run(
            main, sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "scenarios/audio/weather.wav")
        )
    )
