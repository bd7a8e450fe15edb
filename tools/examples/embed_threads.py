"""Embed Stenograph in a plain threaded program: push from one thread, read events in another.

python tools/examples/embed_threads.py [WAV]
"""

from __future__ import annotations

import pathlib
import sys
import threading

import soundfile as sf
from embed_trio import ROOT, config

from engine import Final, StreamEnded
from engine.threaded import ThreadedStream


def main(path: str) -> int:
    audio, rate = sf.read(path, dtype="int16", always_2d=True)
    with ThreadedStream(config()) as stream:

        def read() -> None:
            for event in stream.events():
                if isinstance(event, Final):
                    print(f"final: {event.text}", flush=True)
                elif isinstance(event, StreamEnded):
                    print(f"ended: {event.status}, {event.finals} finals", flush=True)

        reader = threading.Thread(target=read)
        reader.start()
        for start in range(0, len(audio), rate // 10):
            stream.push(audio[start : start + rate // 10], rate=rate, channels=audio.shape[1])
        stream.end_input()
        reader.join()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    raise SystemExit(
        main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "scenarios/audio/weather.wav"))
    )
