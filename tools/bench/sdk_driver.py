"""The official dashscope SDK's design as a benchmark client: one ``Recognition`` per stream,
one thread per stream pacing it.

Usage::

    python -m tools.bench.sdk_driver --streams N --url ws://127.0.0.1:PORT/api-ws/v1/inference \\
        --json out.json

This is how a user of the SDK carries N live streams: each stream is a ``Recognition``
(``start()``, ``send_audio_frame()`` every frame on an absolute schedule, ``stop()``)
driven by its own thread; the SDK adds a receive thread with an aiohttp event loop per
stream. Every stream sends the benchmark script (``tools/bench/_speech.py``) once from
its start; the threads' phases are spread over one frame period, as ``capacity.py``
spreads its feeders.

Measured (written as one JSON object): CPU of this process over the streaming window
and all in (``getrusage``), RSS before the streams and at the end of the window,
the threads' send lateness (the time ``send_audio_frame`` returned minus the frame's
due time; the SDK only queues the frame, so the wire is measured by the ramp from the
server's sockets), finals scored against the script, ``on_error`` results, and streams
that completed. A stream that does not finish within ``--finish-deadline`` seconds
after the window is counted as not completed; the process then exits without waiting
for the SDK's threads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dashscope
from dashscope.audio.asr import Recognition, RecognitionCallback, RecognitionResult

from tools.bench import _speech
from tools.bench._report import percentiles_ms, rss_kb


class Stream(RecognitionCallback):  # type: ignore[misc]
    """One stream's callback: its final texts, errors, and when it completed."""

    def __init__(self) -> None:
        self.finals: list[str] = []
        self.errors: list[str] = []
        self.completed = False
        self.done = threading.Event()
        self.lateness: list[float] = []

    def on_event(self, result: RecognitionResult) -> None:
        sentence = result.get_sentence()
        if isinstance(sentence, dict) and RecognitionResult.is_sentence_end(sentence):
            self.finals.append(str(sentence.get("text", "")))

    def on_complete(self) -> None:
        self.completed = True
        self.done.set()

    def on_error(self, result: RecognitionResult) -> None:
        self.errors.append(f"{result.status_code} {result.message}")
        self.done.set()


def run_stream(
    stream: Stream, frames: list[bytes], start: float, frame_s: float, started: threading.Barrier
) -> None:
    """Start a recognition, send every frame on schedule from ``start``, stop it.

    Waits at ``started`` (every stream started) before the first frame; a broken or
    timed-out barrier ends the stream as an error.
    """
    try:
        recognition = Recognition(
            model=_speech.MODEL, format="pcm", sample_rate=_speech.RATE, callback=stream
        )
        recognition.start()
    except Exception as exc:  # the SDK raises its own and aiohttp's errors here
        stream.errors.append(f"start: {type(exc).__name__}: {exc}")
        stream.done.set()
        _arrive(started, stream)
        return
    if not _arrive(started, stream):
        return
    try:
        for k, frame in enumerate(frames):
            due = start + k * frame_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            recognition.send_audio_frame(frame)
            stream.lateness.append(time.monotonic() - due)
        recognition.stop()
    except Exception as exc:  # a stopped recognition (after on_error) refuses frames
        stream.errors.append(f"send: {type(exc).__name__}: {exc}")
        stream.done.set()


def _arrive(started: threading.Barrier, stream: Stream) -> bool:
    try:
        started.wait()
    except threading.BrokenBarrierError:
        stream.errors.append("start: not every stream started in time")
        stream.done.set()
        return False
    return True


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.sdk_driver", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--url", required=True, help="the simulator's inference WebSocket URL")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--frame-ms", type=int, default=100)
    parser.add_argument("--script", choices=sorted(_speech.SCRIPTS), default="full")
    parser.add_argument("--lead-s", type=float, default=1.0, help="time to start every stream")
    parser.add_argument("--finish-deadline", type=float, default=120.0)
    args = parser.parse_args(argv)
    n, frame_s = args.streams, args.frame_ms / 1000.0
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    dashscope.base_websocket_api_url = args.url
    dashscope.api_key = "bench"
    frames = _speech.frames(_speech.RATE * args.frame_ms // 1000, args.script)
    streams = [Stream() for _ in range(n)]
    rss_before, cpu_begin, t_begin = rss_kb(), cpu_s(), time.monotonic()
    started = threading.Barrier(n + 1, timeout=args.lead_s + 0.05 * n + 30.0)
    base = time.monotonic() + args.lead_s + n * 0.002  # every thread started before the first tick
    threads = [
        threading.Thread(
            target=run_stream,
            args=(s, frames, base + i * frame_s / n, frame_s, started),
            daemon=True,
            name=f"stream-{i}",
        )
        for i, s in enumerate(streams)
    ]
    for t in threads:
        t.start()
    try:
        started.wait()
    except threading.BrokenBarrierError:
        pass  # the streams that did not start count it as an error
    late_start = max(0.0, time.monotonic() - base)
    window_end = base + len(frames) * frame_s
    time.sleep(max(0.0, window_end - time.monotonic()))
    cpu_window, rss_window = cpu_s() - cpu_begin, rss_kb()
    threads_window = threading.active_count()  # the SDK's threads with ours, streaming
    deadline = time.monotonic() + args.finish_deadline
    for s in streams:
        s.done.wait(max(0.0, deadline - time.monotonic()))
    lateness = [x for s in streams for x in s.lateness]
    audio_s = n * len(frames) * frame_s
    record: dict[str, Any] = {
        "design": "sdk",
        "sdk": f"dashscope {dashscope.__version__}",
        "streams": n,
        "frames_expected": n * len(frames),
        "frames_sent": len(lateness),
        "threads_at_window_end": threads_window,
        "start_s": round(late_start + args.lead_s, 3),
        "wall_s": round(time.monotonic() - t_begin, 3),
        "cpu_window_s": round(cpu_window, 3),
        "cpu_all_s": round(cpu_s() - cpu_begin, 3),
        "window_ms_per_stream_s": round(1000 * cpu_window / audio_s, 3),
        "rss_kb": {"before_kb": rss_before, "window_kb": rss_window},
        "rss_per_stream_kb": round((rss_window - rss_before) / n, 1),
        "lateness_ms": percentiles_ms(lateness),
        "completed": sum(s.completed for s in streams),
        "errors": sum(len(s.errors) for s in streams),
        "error_samples": sorted({e for s in streams for e in s.errors})[:5],
        "script": _speech.score((s.finals for s in streams), n, args.script),
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    sys.stdout.flush()
    # The SDK's receive threads are not daemons: a stream that never finished would hold
    # the process open. The record is written; leave without joining them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
