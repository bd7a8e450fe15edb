"""Test helpers for the simulator's realtime endpoint: a client over the RealtimeClient core.

Every frame the simulator sends is recorded as a dict *and* fed to our sans-IO
client core, which must accept it: the core's state table and id correlation
check the simulator on every test.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import trio
from simclient import AUTH, RATE
from trio_websocket import ConnectionClosed, WebSocketConnection

from adapters.dashscope import realtime_messages as m
from adapters.dashscope.realtime import RealtimeClient
from adapters.dashscope.realtime_session import SessionSettings, TranslationSettings
from adapters.sim import MemoryNet
from adapters.sim.translate import ScriptedTranslator

MODEL = "qwen3.5-livetranslate-flash-realtime"
TARGET = f"/api-ws/v1/realtime?model={MODEL}"
ZH = SessionSettings(translation=TranslationSettings(language="zh"))
ROWS = [
    {"en": "hello world", "zh": "你好世界。", "fr": "Bonjour le monde."},
    {"en": "the weather today is sunny and warm", "zh": "今天天气晴朗温暖。"},
    {"en": "good morning", "zh": "早上好。"},
]
TRANSLATOR = ScriptedTranslator(ROWS)


def zh(**changes: Any) -> SessionSettings:
    """The ZH settings with ``changes``."""
    return msgspec.structs.replace(ZH, **changes)


CHUNK = RATE * 2 // 10  # 100 ms


class RtClient:
    """A realtime client: commands through the core, raw JSON when a test needs it."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.core = RealtimeClient()
        self.frames: list[dict[str, Any]] = []
        """Every frame received, decoded."""
        self.events: list[Any] = []
        """Every client-core event, in order."""
        self.checking = True
        """Frames go through the core (off after :meth:`reconfigure`: the core allows one update)."""

    async def send(self, command: m.ClientCommand) -> None:
        await self.ws.send_message(self.core.send(command))

    async def send_json(self, obj: dict[str, Any]) -> None:
        """A raw frame past the core (the core's state does not change)."""
        await self.ws.send_message(json.dumps(obj, ensure_ascii=False))

    async def recv(self) -> dict[str, Any]:
        message = await self.ws.get_message()
        assert isinstance(message, str), "the simulator sent a binary frame"
        frame: dict[str, Any] = json.loads(message)
        self.frames.append(frame)
        if not self.checking:
            return frame
        self.core.receive_data(message)
        events = list(self.core.events())
        assert not any(isinstance(e, m.ProtocolViolation) for e in events), (frame, events)
        self.events += events
        return frame

    async def until(self, kind: str) -> list[dict[str, Any]]:
        """Frames up to and including the first of type ``kind``."""
        frames = []
        while True:
            frame = await self.recv()
            frames.append(frame)
            if frame["type"] == kind:
                return frames

    async def configure(self, settings: SessionSettings = ZH) -> dict[str, Any]:
        """Read session.created, send the update, read session.updated; the updated session."""
        if not self.frames:
            assert (await self.recv())["type"] == "session.created"
        await self.send(m.UpdateSession(settings))
        frames = await self.until("session.updated")
        assert [f["type"] for f in frames] == ["session.updated"]
        session: dict[str, Any] = frames[-1]["session"]
        return session

    async def reconfigure(self, settings: SessionSettings) -> None:
        """A second session.update (raw; from now on frames are not checked by the core)."""
        self.checking = False
        update = {"type": "session.update", "session": msgspec.to_builtins(settings.to_wire())}
        await self.send_json(update)

    async def append(self, pcm: bytes, *, pace: bool = True, chunk: int = CHUNK) -> None:
        """Append ``pcm`` in ``chunk``-byte pieces; ``pace`` sleeps each piece's duration."""
        rate = _rate(self.core)
        for i in range(0, len(pcm), chunk):
            piece = pcm[i : i + chunk]
            if self.checking:
                await self.send(m.AppendAudio(piece))
            else:
                audio = base64.b64encode(piece).decode()
                await self.send_json({"type": "input_audio_buffer.append", "audio": audio})
            if pace:
                await trio.sleep(len(piece) / (2 * rate))

    async def talk(self, pcm: bytes, *, pace: bool = True) -> list[dict[str, Any]]:
        """Append ``pcm`` (read meanwhile), then session.finish; frames up to session.finished."""
        async with trio.open_nursery() as nursery:

            async def upload() -> None:
                await self.append(pcm, pace=pace)
                await self.finish()

            nursery.start_soon(upload)
            return await self.until("session.finished")

    async def finish(self) -> None:
        if self.checking:
            await self.send(m.FinishSession())
        else:
            await self.send_json({"type": "session.finish"})

    async def closed(self) -> int:
        """Read until the server closes; the close code."""
        try:
            while True:
                await self.recv()
        except ConnectionClosed as exc:
            return int(exc.reason.code)


async def open_client(
    net: MemoryNet, target: str = TARGET, headers: dict[str, str] | None = None
) -> RtClient:
    return RtClient(await net.connect(target, {**AUTH, **(headers or {})}))


def _rate(core: RealtimeClient) -> int:
    session = core.session
    rate = session.sample_rate if session is not None else RATE
    return rate if isinstance(rate, int) else RATE


def types(frames: list[dict[str, Any]]) -> list[str]:
    return [f["type"] for f in frames]


def of_type(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == kind]


def voice_pcm(frames: list[dict[str, Any]], response_id: str | None = None) -> bytes:
    """The decoded audio deltas (of one response, if given)."""
    return b"".join(
        base64.b64decode(f["delta"])
        for f in of_type(frames, "response.audio.delta")
        if response_id is None or f["response_id"] == response_id
    )


def segments(frames: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each ASR item's frames: its own, and those of the response translating it, in order."""
    sources: dict[str, str] = {}  # translation item -> ASR item
    responses: dict[str, str] = {}  # response -> ASR item
    out: dict[str, list[dict[str, Any]]] = {}
    for frame in frames:
        kind = frame["type"]
        item = frame.get("item_id")
        if kind == "conversation.item.created" and frame["item"]["role"] == "assistant":
            sources[frame["item"]["id"]] = frame["previous_item_id"]
            item = frame["previous_item_id"]
        elif kind == "conversation.item.created":
            item = frame["item"]["id"]
        elif kind == "response.created":
            response = frame["response"]
            item = None
            responses[response["id"]] = list(sources.values())[-1]
            item = responses[response["id"]]
        elif kind == "response.done":
            item = responses[frame["response"]["id"]]
        elif kind == "response.output_item.added" or kind == "response.output_item.done":
            item = sources[frame["item"]["id"]]
        elif kind.startswith("response."):
            item = sources[frame["item_id"]]
        elif kind == "input_audio_buffer.committed":
            item = frame["item_id"]
        if item is not None:
            out.setdefault(item, []).append(frame)
    return out
