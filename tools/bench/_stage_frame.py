"""The frame stages of ``tools/bench/stages.py``: the synchronous path of one live frame.

What the session's fast lane does for each 100 ms frame (``Pump._take``), piece by
piece, with the project's own objects:

* *silence*: ``is_silent`` on tone-coded speech (silent and voiced frames mixed);
* *feed*: the feed's bookkeeping of a frame the lane took (``speech.judge``,
  ``took_live``: the replay buffer and the send-lag histogram, ``commit_silence``),
  a final every 2 s committing what came before;
* *handover*: ``Stream.try_push``'s part, 100 ms of int16 bytes through the resampler
  stage and the inlet to the session's taker (one that takes every frame);
* *ws_encode*: one 3,200 B binary WebSocket frame built (header, mask, C masking);
* *task_send*: ``Task.try_send_audio`` through a real inference client core and the
  fast transport to the sink process (the awaited send when the lane says no):
  everything from the task to the ``send()`` system call;
* *all*: silence, feed and task_send in a row (``Pump._take`` less its own glue).

The sink is ``_stage_transport.SinkServer``'s (another process, CPU 1), so only the
sender's CPU is measured. Frames go out in rounds of 20 connections, a round every
5 ms, as the send stages do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.bench._measure import Absent, Measure, cpu_of, run_trio

RATE, FRAME = 16000, 1600
CONNECTIONS, ROUND_S = 20, 0.005


def speech_frames() -> list[bytes]:
    """Tone-coded speech with its pauses, cut into 100 ms frames (about a third silent)."""
    import numpy as np

    from adapters.recognizers.tonecode import synthesize

    samples = synthesize(["good morning", "the weather today is sunny"], RATE)
    pad = -len(samples) % FRAME
    pcm = np.concatenate([samples, np.zeros(pad + 4 * FRAME, dtype=np.int16)])
    raw = pcm.astype("<i2").tobytes()
    return [raw[i : i + 2 * FRAME] for i in range(0, len(raw), 2 * FRAME)]


def silence_stage() -> Measure:
    from engine.actors._silence import is_silent

    frames = speech_frames()

    def measure(items: int) -> float:
        def loop() -> None:
            n = len(frames)
            for i in range(items):
                is_silent(frames[i % n], RATE)

        return cpu_of(loop)

    return measure


def _frames(items: int) -> list[Any]:
    from engine.events import AudioFrame

    pcm = speech_frames()
    return [AudioFrame(i * FRAME, pcm[i % len(pcm)], RATE) for i in range(items)]


def _feed() -> Any:
    import trio

    from engine.actors._feed import Feed

    _, inbox = trio.open_memory_channel[Any](1)
    return Feed(inbox, 120 * RATE, RATE)


def feed_stage() -> Measure:
    def measure(items: int) -> float:
        import trio

        frames = _frames(items)

        async def main() -> float:
            feed = _feed()
            t0 = time.process_time()
            for k, frame in enumerate(frames):
                arrived = trio.current_time()
                silent, _ = feed.speech.judge(frame)
                feed.took_live(frame, silent, arrived)
                feed.commit_silence(sentence_open=False)
                if k % 20 == 19:  # a final every 2 s
                    feed.buffer.commit(frame.start)
            return time.process_time() - t0

        return run_trio(main)

    return measure


def handover_stage(*, blocks: bool = False) -> Measure:
    """``Stream.try_push``'s part: 100 ms of int16 bytes to the session's taker.

    The resampler stage and the inlet with an armed taker that takes every frame
    (what ``Pump._take`` then does is the other stages). ``try_send_pcm16`` where the
    checkout has it, else the block path main had (``pushed_block`` + ``try_send``).
    With ``blocks``: ``try_send`` of a ``PcmBlock`` view, as a paced file's capture does.
    """

    def measure(items: int) -> float:
        import numpy as np
        import trio

        from engine._stream_input import pushed_block
        from engine.actors._inlet import open_inlet
        from engine.actors.resampler import Resampler, ResamplerConfig
        from engine.messages import PcmBlock

        pcm = speech_frames()

        async def main() -> float:
            send, inbox = open_inlet(16)
            stage = Resampler(outbox=send, config=ResamplerConfig(RATE))
            inlet = stage.inlet()
            taken: list[Any] = []
            inbox.arm(lambda frame, arrived: taken.append(frame) is None, trio.CancelScope())
            direct = getattr(inlet, "try_send_pcm16", None)
            n = len(pcm)
            views = [PcmBlock(np.frombuffer(p, "<i2"), RATE) for p in pcm]
            t0 = time.process_time()
            if blocks:
                for i in range(items):
                    inlet.try_send(views[i % n])
            elif direct is not None:
                for i in range(items):
                    direct(pcm[i % n])
            else:
                for i in range(items):
                    inlet.try_send(pushed_block(pcm[i % n], RATE, 1))
            spent = time.process_time() - t0
            assert len(taken) == items
            return spent

        return run_trio(main)

    return measure


def ws_encode_stage() -> Measure:
    from adapters.websocket import CLIENT, WebSocketCore

    payload = bytes(2 * FRAME)

    def measure(items: int) -> float:
        core = WebSocketCore(CLIENT)

        def loop() -> None:
            for _ in range(items):
                core.send_message(payload)

        return cpu_of(loop)

    return measure


class _Link:
    """A started inference connection's send lanes over a transport (``SendPath``)."""

    @staticmethod
    def make(transport: Any) -> Any:
        from adapters.dashscope import messages as m
        from adapters.dashscope._liveness import Liveness
        from adapters.dashscope._send_path import SendPath
        from adapters.dashscope.connection import LinkSettings
        from adapters.dashscope.inference import InferenceClient

        core = InferenceClient()
        core.send(m.RunTask("t" * 32, "paraformer-realtime-v2", {}))
        started = {"header": {"event": "task-started", "task_id": "t" * 32}, "payload": {}}
        import json

        core.receive_data(json.dumps(started))
        list(core.events())

        class Lanes(SendPath[Any]):
            task_id = "t" * 32

            def __init__(self) -> None:
                self.settings = LinkSettings(
                    url="ws://x/", api_key="", user_agent="bench", rate=RATE
                )
                self.error = None
                self.first_audio_t = None
                self.finish_sent_t = None
                self.audio_samples = 0
                self._core = core
                self._transport = transport
                self._live = Liveness(stall_s=30.0, ping_interval_s=15.0, pong_timeout_s=10.0)
                self._reported = True
                self._over = False
                self._held = None

            def _audio(self, pcm: bytes) -> Any:
                return m.SendAudio(pcm)

        return Lanes()


def _paced_sends(url: str, step: Callable[[Any, Any, int], Any]) -> Measure:
    """Rounds of one frame per connection over ``dial_fast`` to the sink; ``step`` sends it."""

    def measure(items: int) -> float:
        import trio

        try:
            from adapters.dashscope.fastws import dial_fast
        except ImportError as exc:
            raise Absent(f"no fast transport: {exc}") from None
        from engine.actors._task import Task

        rounds = max(1, items // CONNECTIONS)
        frames = _frames(rounds)

        async def main() -> float:
            from contextlib import AsyncExitStack

            async with AsyncExitStack() as stack:
                tasks = []
                for _ in range(CONNECTIONS):
                    transport = await stack.enter_async_context(
                        dial_fast(url, [("user-agent", "bench")], connect_timeout=10.0)
                    )
                    tasks.append((Task(_Link.make(transport), 0, RATE, 1), _feed()))
                start = trio.current_time()
                t0 = time.process_time()
                for r in range(rounds):
                    for task, feed in tasks:
                        await step(task, feed, frames[r])
                    await trio.sleep_until(start + (r + 1) * ROUND_S)
                spent = time.process_time() - t0
            return spent * items / (rounds * CONNECTIONS)

        return run_trio(main)

    return measure


async def _task_send(task: Any, feed: Any, frame: Any) -> None:
    if not task.try_send_audio(frame, voiced=True):
        await task.send_audio(frame.pcm, frame.end)


async def _all(task: Any, feed: Any, frame: Any) -> None:
    import trio

    arrived = trio.current_time()
    silent, voiced = feed.speech.judge(frame)
    if not task.try_send_audio(frame, voiced=voiced):
        await task.send_audio(frame.pcm, frame.end, voiced=voiced)
    feed.took_live(frame, silent, arrived)
    feed.commit_silence(sentence_open=False)


def FRAME_PATH_STAGES(url: str) -> list[tuple[str, str, Callable[[Path], Measure]]]:
    """The frame-path stages, sending to the sink at ``url``."""
    return [
        ("frame.silence", "is_silent on a 100 ms frame of tone-coded speech",
         lambda d: silence_stage()),
        ("frame.feed", "Feed.speech.judge + took_live + commit_silence",
         lambda d: feed_stage()),
        ("frame.handover", "Stream.try_push's part: int16 bytes -> resampler -> inlet -> taker",
         lambda d: handover_stage()),
        ("frame.handover_block", "a capture's part: PcmBlock -> resampler -> inlet -> taker",
         lambda d: handover_stage(blocks=True)),
        ("frame.ws_encode", "WebSocketCore.send_message, 3,200 B (header, mask, C masking)",
         lambda d: ws_encode_stage()),
        ("frame.task_send", "Task.try_send_audio: inference core, fast transport, send()",
         lambda d: _paced_sends(url, _task_send)),
        ("frame.all", "silence + feed + task_send (Pump._take less its glue)",
         lambda d: _paced_sends(url, _all)),
    ]  # fmt: skip
