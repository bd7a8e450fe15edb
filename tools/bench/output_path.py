"""The CLI's output path alone: CPU per stream-second of renderer, sinks and console.

Usage::

    python -m tools.bench.output_path --streams 300 [--formats jsonl] [--path full|none]

What ``steno transcribe`` does with a stream's events after the engine hands them
over (:func:`engine.pipeline.run_file_stream`'s ``_render``): a relay task per stream
sends every event of ``Stream.events()`` to the stream's renderer
(:mod:`engine.actors.renderer`), which writes them to the output files
(:mod:`adapters.sinks`) and forwards them to the one console of the run
(:mod:`engine.actors.console`, printing to a file as off a terminal). Here the
engine is replaced by a replay: every stream plays the same event script (the
``full`` speech script's sentences as the scripted recognizer reports them: a
partial every ~0.5 s, a final per sentence, the lifecycle events) on the real
clock, the streams starting 1/20 s apart as the task-start limiter lets them.

``--path none`` runs the replay alone (each event discarded where the renderer would
take it); the output path's cost is the difference of the two runs' CPU (process
time, all threads). One JSON line goes to stdout: CPU seconds, µs per event and ms
per stream-second.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from adapters.sinks import open_sinks
from engine.actors import console, renderer
from engine.events import (
    Event,
    Final,
    Partial,
    SessionClosed,
    SessionOpened,
    StreamEnded,
    StreamStarted,
    TaskMetrics,
)
from tools.bench import _speech

START_RATE = 20.0  # task starts a second: DASHSCOPE.md §8, paraformer
PARTIAL_S = 0.5


def script(stream: str, seconds: float) -> list[tuple[float, Event]]:
    """One stream's events, each at its offset in seconds from the stream's start."""
    sentences = list(_speech.SCRIPTS["full"])
    per = seconds / len(sentences)
    rate = 16000
    out: list[tuple[float, Event]] = [
        (0.0, StreamStarted("speech.wav", _speech.MODEL, rate, stream=stream)),
        (0.05, SessionOpened("task", 0, stream=stream)),
    ]
    for i, sentence in enumerate(sentences):
        words = sentence.split()
        start, end = round(i * per * rate), round((i + 1) * per * rate)
        t = i * per + PARTIAL_S
        k = 1
        while t < (i + 1) * per - 0.1:
            text = " ".join(words[: min(k, len(words))])
            out.append((t, Partial(i, start, text, stream=stream)))
            t += PARTIAL_S
            k += 1
        out.append(((i + 1) * per, Final(i, start, end, sentence, stream=stream)))
    done, audio_ms, finals = seconds + 0.1, round(seconds * 1000), len(sentences)
    out += [
        (done, TaskMetrics("task", "req", 600.0, 5.0, audio_ms, finals, stream=stream)),
        (done, SessionClosed("task", "finished", stream=stream)),
        (done, StreamEnded("ok", finals=finals, audio_ms=audio_ms, stream=stream)),
    ]
    return out


async def _replay(
    events: list[tuple[float, Event]],
    t0: float,
    send: trio.MemorySendChannel[Event] | None,
) -> None:
    """One stream's engine: its events at their times, to ``send`` (None: dropped)."""
    if send is None:
        for offset, _ in events:
            await trio.sleep_until(t0 + offset)
        return
    async with send:
        for offset, event in events:
            await trio.sleep_until(t0 + offset)
            await send.send(event)


async def _stream(
    i: int,
    args: argparse.Namespace,
    out_dir: Path,
    console_send: trio.MemorySendChannel[Event],
    t0: float,
) -> None:
    """One file's output path, as :func:`engine.pipeline.run_file_stream` wires it."""
    name = f"s{i}"
    events = script(name, args.seconds)
    if args.path == "none":
        console_send.close()
        await _replay(events, t0, None)
        return
    sinks = await trio.to_thread.run_sync(
        functools.partial(open_sinks, out_dir, name, tuple(args.formats))
    )
    send, recv = trio.open_memory_channel[Event](64)  # EDGES["session->renderer"]
    # as engine.cli.files does (an older checkout forwards every event)
    shown = getattr(console, "shown", None)
    shows = None if shown is None else functools.partial(shown, tty=False)
    async with trio.open_nursery() as nursery:
        extra = {} if shows is None else {"forward_if": shows}
        nursery.start_soon(
            functools.partial(renderer.run, inbox=recv, sinks=sinks, forward=console_send, **extra)
        )
        await _replay(events, t0, send)


async def run(args: argparse.Namespace, out_dir: Path, transcript: Any) -> dict[str, Any]:
    """Every stream's output path; the measured record."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    console_send, console_recv = trio.open_memory_channel[Event](256)  # renderer->console
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(console.run, inbox=console_recv, out=transcript, tty=False)
        )
        async with console_send:
            start = trio.current_time() + 0.1
            for i in range(args.streams):
                nursery.start_soon(
                    _stream, i, args, out_dir, console_send.clone(), start + i / START_RATE
                )
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    n_events = args.streams * len(script("s", args.seconds))
    stream_s = args.streams * args.seconds
    record: dict[str, Any] = {
        "path": args.path,
        "streams": args.streams,
        "seconds": args.seconds,
        "formats": args.formats,
        "events": n_events,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 2),
        "us_per_event": round(1e6 * cpu / n_events, 1),
        "ms_per_stream_s": round(1000 * cpu / stream_s, 4),
    }
    return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.output_path", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0, help="each stream's audio")
    parser.add_argument("--formats", nargs="+", default=["jsonl"],
                        choices=["txt", "srt", "vtt", "jsonl"])  # fmt: skip
    parser.add_argument("--path", choices=["full", "none"], default="full")
    args = parser.parse_args(argv)
    if args.streams < 1 or not args.seconds > 1:
        parser.error("--streams must be >= 1 and --seconds > 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="steno-output-path-") as tmp,
        open(Path(tmp) / "transcript.txt", "w", encoding="utf-8") as transcript,
    ):
        record = trio.run(run, args, Path(tmp), transcript)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
