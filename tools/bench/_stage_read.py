"""The read stages of ``tools/bench/stages.py``: the project's file reader, per 100 ms block."""

from __future__ import annotations

import time
from pathlib import Path

from tools.bench._measure import Absent, Measure, run_trio


def _wav(rate: int, seconds: int, directory: Path) -> Path:
    import numpy as np
    import soundfile

    path = directory / f"tone-{rate}-{seconds}.wav"
    if not path.exists():
        t = np.arange(rate * seconds) / rate
        soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)), rate, subtype="PCM_16")
    return path


def read_stage(rate: int, directory: Path) -> Measure:
    from adapters.audio.files import open_audio_source

    def measure(items: int) -> float:
        seconds = min(300, max(1, items // 10))  # a file of at most 3,000 blocks, read again
        path = _wav(rate, seconds, directory)

        async def main() -> float:
            t0 = time.process_time()
            for _ in range(-(-items // (seconds * 10))):
                async with await open_audio_source(path, block_ms=100) as source:
                    async for _ in source:
                        pass
            return (time.process_time() - t0) * items / (-(-items // (seconds * 10)) * seconds * 10)

        return run_trio(main)

    return measure


def readahead_stage(rate: int, streams: int, directory: Path) -> Measure:
    """The capture actor's way: ``read_pcm16`` of a read-ahead, sliced into 100 ms blocks.

    ``streams`` sources read at once (their reads share worker-thread hops when the
    reader batches them). Per 100 ms block.
    """
    from adapters.audio.files import AudioSource, open_audio_source
    from engine.actors.capture import read_ahead_frames

    if not hasattr(AudioSource, "read_pcm16"):
        raise Absent("AudioSource has no read_pcm16")
    block = rate // 10

    def measure(items: int) -> float:
        import trio

        per = max(1, items // streams)
        path = _wav(rate, max(1, per // 10), directory)

        async def reader() -> None:
            async with await open_audio_source(path, block_ms=100) as source:
                ahead = read_ahead_frames(block)
                while len(chunk := await source.read_pcm16(ahead)):
                    for i in range(0, len(chunk), block):
                        chunk[i : i + block].tobytes()

        async def main() -> float:
            t0 = time.process_time()
            async with trio.open_nursery() as nursery:
                for _ in range(streams):
                    nursery.start_soon(reader)
            return (time.process_time() - t0) * items / (streams * max(1, per // 10) * 10)

        return run_trio(main)

    return measure
