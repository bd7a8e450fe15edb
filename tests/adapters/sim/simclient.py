"""Test helpers for the simulator: a raw-JSON inference client, audio and recognizers."""

from __future__ import annotations

import io
import json
import wave
from typing import Any

import numpy as np
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from adapters.recognizers.base import Hypothesis, RecognizedWord
from adapters.recognizers.tonecode import synthesize

API_KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
RATE = 16000
SENTENCES = ["hello world", "the weather today is sunny and warm"]
FRAME_BYTES = RATE * 2 // 10  # 100 ms


def tone_pcm(sentences: list[str] = SENTENCES, rate: int = RATE) -> bytes:
    """Tone-coded speech the scripted recognizer reads back word for word."""
    return synthesize(sentences, rate).tobytes()


def silence(ms: int, rate: int = RATE) -> bytes:
    return bytes(rate * 2 * ms // 1000)


def wav_bytes(pcm: bytes, rate: int = RATE, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def frames(data: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def run_task_frame(
    task_id: str = "t1", model: str = "paraformer-realtime-v2", **parameters: Any
) -> dict[str, Any]:
    return {
        "header": {"action": "run-task", "task_id": task_id, "streaming": "duplex"},
        "payload": {
            "task_group": "audio",
            "task": "asr",
            "function": "recognition",
            "model": model,
            "parameters": {"format": "pcm", "sample_rate": RATE, **parameters},
            "input": {},
        },
    }


def finish_frame(task_id: str = "t1") -> dict[str, Any]:
    return {
        "header": {"action": "finish-task", "task_id": task_id, "streaming": "duplex"},
        "payload": {"input": {}},
    }


class SimClient:
    """A deliberately raw client: JSON dicts in, JSON dicts out."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(obj))

    async def run_task(
        self, task_id: str = "t1", model: str = "paraformer-realtime-v2", **parameters: Any
    ) -> None:
        await self.send_json(run_task_frame(task_id, model, **parameters))

    async def finish(self, task_id: str = "t1") -> None:
        await self.send_json(finish_frame(task_id))

    async def recv(self) -> dict[str, Any]:
        message = await self.ws.get_message()
        assert isinstance(message, str), "the server sent a binary frame"
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    async def send_audio(self, data: bytes, *, frame_bytes: int = FRAME_BYTES, pace: bool) -> bool:
        """Send ``data`` as binary frames; ``pace`` sleeps each frame's duration (virtual time).

        Returns False if the server closed the socket before all was sent.
        """
        for frame in frames(data, frame_bytes):
            try:
                await self.ws.send_message(frame)
            except ConnectionClosed:
                return False
            if pace:
                await trio.sleep(len(frame) / (2 * RATE))
        return True

    async def until_end(self) -> list[dict[str, Any]]:
        """Receive up to and including task-finished or task-failed."""
        events = []
        while True:
            event = await self.recv()
            events.append(event)
            if event["header"]["event"] in ("task-finished", "task-failed"):
                return events

    async def transcribe(
        self, audio: bytes, task_id: str = "t1", *, pace: bool = True, **parameters: Any
    ) -> list[dict[str, Any]]:
        """A whole task: run-task, audio (sent while results are read), finish-task."""
        await self.run_task(task_id, **parameters)
        started = await self.recv()
        assert started["header"] == {"task_id": task_id, "event": "task-started", "attributes": {}}

        async def upload() -> None:
            await self.send_audio(audio, pace=pace)
            await self.finish(task_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(upload)
            return await self.until_end()

    async def closed(self) -> bool:
        """True once the server closed the socket (pending messages are drained first)."""
        try:
            while True:
                await self.ws.get_message()
        except ConnectionClosed:
            return True


def events_named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["header"]["event"] == name]


def sentences(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["payload"]["output"]["sentence"] for e in events_named(events, "result-generated")]


def finals(events: list[dict[str, Any]]) -> list[str]:
    return [s["text"] for s in sentences(events) if s["sentence_end"]]


class GateRecognizer:
    """A recognizer whose ``feed`` waits for ``release``; the n-th feed may raise instead."""

    name = "gate"

    def __init__(self, *, fail_on_feed: int | None = None) -> None:
        self.release = trio.Event()
        self.fed = 0
        self.fail_on_feed = fail_on_feed
        self.closed_sessions = 0

    async def open_session(self, *, sample_rate: int, language: str | None) -> GateSession:
        await trio.lowlevel.checkpoint()
        return GateSession(self)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class GateSession:
    def __init__(self, owner: GateRecognizer) -> None:
        self._owner = owner
        self._ms = 0

    async def feed(self, pcm: bytes) -> list[Hypothesis]:
        owner = self._owner
        owner.fed += 1
        if owner.fail_on_feed == owner.fed:
            raise RuntimeError("decoder exploded")
        await owner.release.wait()
        begin, self._ms = self._ms, self._ms + len(pcm) // (2 * RATE // 1000)
        word = RecognizedWord(begin, self._ms, "word")
        return [Hypothesis(0, 0, None, "word", (word,))]

    async def flush(self) -> list[Hypothesis]:
        await trio.lowlevel.checkpoint()
        return [Hypothesis(0, 0, self._ms, "word", (RecognizedWord(0, self._ms, "word"),), True)]

    async def aclose(self) -> None:
        self._owner.closed_sessions += 1
        await trio.lowlevel.checkpoint()


def loud(ms: int) -> bytes:
    """A 440 Hz tone: not silence for the simulator's level check."""
    t = np.arange(RATE * ms // 1000) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()
