"""The official dashscope SDK's realtime clients against the simulator's realtime endpoint over TCP.

The 1.x ``OmniRealtimeConversation`` (websocket-client in its own thread) and
the 2.x ``Client.audio.realtime`` session, unmodified, each translating the
demo clip ``weather.wav`` into Chinese. The recognizer is scripted: speech
segment k of the connection is labelled with sentence k of ``weather.txt``,
so the transcripts are exact; the translations come from the demo fixture
table (``scenarios/audio/translations.toml``). Real clock, real sockets.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import dashscope
import pytest
import trio
from conftest import DEMO_AUDIO
from dashscope.audio.qwen_omni import (
    MultiModality,
    OmniRealtimeCallback,
    OmniRealtimeConversation,
)
from dashscope.audio.qwen_omni.omni_realtime import TranslationParams

from adapters.recognizers.scripted import ScriptedRecognizer, TranscriptLabeler
from adapters.sim import SimConfig, SimulatorHandle, open_simulator

pytestmark = pytest.mark.interop

T = TypeVar("T")

API_KEY = "sk-interop"
MODEL = "qwen3.5-livetranslate-flash-realtime"
WEATHER = DEMO_AUDIO / "weather.wav"
SENTENCES = (DEMO_AUDIO / "weather.txt").read_text(encoding="utf-8").splitlines()
TRANSCRIPTS = [s[:1].upper() + s[1:] + "." for s in SENTENCES]
TRANSLATIONS = ["今天天气晴朗温暖。", "明天北方会下雨。", "请带一把伞来开会。"]
SDK_DEADLINE_S = 30.0
CHUNK = 3200  # 100 ms at 16 kHz


def weather_recognizer() -> ScriptedRecognizer:
    """Segment k of the simulator's connection gets sentence k (one labeler shared by sessions)."""
    labeler = TranscriptLabeler(SENTENCES)
    return ScriptedRecognizer(lambda _rate: labeler, name="weather")


@pytest.fixture(name="sim")
async def _sim() -> AsyncIterator[SimulatorHandle]:
    async with open_simulator(SimConfig(api_keys=[API_KEY]), weather_recognizer()) as sim:
        yield sim


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking SDK code in a thread; fail (abandoning it) after the deadline."""
    with trio.fail_after(SDK_DEADLINE_S):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def weather_pcm() -> bytes:
    return WEATHER.read_bytes()[44:]  # the demo files have the canonical 44-byte header


class Collector(OmniRealtimeCallback):  # type: ignore[misc]
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = threading.Event()

    def on_event(self, message: Any) -> None:
        self.events.append(message)

    def on_close(self, close_status_code: Any, close_msg: Any) -> None:
        self.closed.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]


def conversation(sim: SimulatorHandle, callback: Collector, **kwargs: Any) -> Any:
    return OmniRealtimeConversation(
        model=MODEL, callback=callback, url=sim.realtime_url, api_key=API_KEY, **kwargs
    )


def translate_1x(sim: SimulatorHandle) -> Collector:
    """connect, update_session (SDK defaults + ASR model + target zh), audio, end_session."""
    callback = Collector()
    conv = conversation(sim, callback)
    conv.connect()
    conv.update_session(
        output_modalities=[MultiModality.TEXT, MultiModality.AUDIO],
        input_audio_transcription_model="qwen3-asr-flash-realtime",
        translation_params=TranslationParams(language="zh"),
    )
    pcm = weather_pcm()
    for i in range(0, len(pcm), CHUNK):
        conv.append_audio(base64.b64encode(pcm[i : i + CHUNK]).decode())
    conv.end_session(timeout=20)
    conv.close()
    callback.closed.wait(5)
    return callback


async def test_omni_realtime_conversation(sim: SimulatorHandle) -> None:
    """The 1.x client: session events, exact transcripts and translations, 24 kHz audio."""
    callback = await in_thread(lambda: translate_1x(sim))
    kinds = [e["type"] for e in callback.events]
    assert kinds[:2] == ["session.created", "session.updated"]
    assert kinds[-1] == "session.finished"
    assert "error" not in kinds
    session = callback.of_type("session.updated")[0]["session"]
    # what the SDK sends by default must be accepted (§5.6): pcm16 and voice null
    assert (session["input_audio_format"], session["voice"]) == ("pcm16", "Tina")
    completed = callback.of_type("conversation.item.input_audio_transcription.completed")
    assert [e["transcript"] for e in completed] == TRANSCRIPTS
    done = callback.of_type("response.audio_transcript.done")
    assert [e["transcript"] for e in done] == TRANSLATIONS
    audio = b"".join(base64.b64decode(e["delta"]) for e in callback.of_type("response.audio.delta"))
    assert audio and len(audio) % 2 == 0
    assert [e["response"]["status"] for e in callback.of_type("response.done")] == ["completed"] * 3


def end_with_error(sim: SimulatorHandle) -> str:
    """A server error while end_session waits: the SDK closes and raises RuntimeError."""
    callback = Collector()
    # the 2nd client event (session.finish) fails the session before it is handled
    conv = conversation(sim, callback, headers={"X-Steno-Fault": "fail-task:InternalError,after=2"})
    conv.connect()
    conv.update_session(
        output_modalities=[MultiModality.TEXT],
        translation_params=TranslationParams(language="zh"),
    )
    with pytest.raises(RuntimeError, match="Session ended with error") as caught:
        conv.end_session(timeout=20)
    return str(caught.value)


async def test_end_session_error(sim: SimulatorHandle) -> None:
    message = await in_thread(lambda: end_with_error(sim))
    assert "InternalError" in message and "server_error" in message


def translate_2x(sim: SimulatorHandle) -> list[dict[str, Any]]:
    """The 2.x RealtimeSession (livetranslate dialect: an incremental session.update)."""
    events: list[dict[str, Any]] = []
    with (
        dashscope.Client(api_key=API_KEY, base_url=sim.http_url, timeout=SDK_DEADLINE_S) as client,
        client.audio.realtime.connect(model=MODEL, ws_url=sim.realtime_url) as session,
    ):
        session.update_session(
            output_modalities=["text", "audio"],
            enable_input_audio_transcription=True,
            translation_params={"language": "zh"},
        )
        for event in session.events():
            events.append(event)
            if event["type"] == "session.updated":
                break
        pcm = weather_pcm()
        for i in range(0, len(pcm), CHUNK):
            session.append_audio(pcm[i : i + CHUNK])
        session.end_session()
        events += list(session.events())
    return events


@pytest.mark.filterwarnings("ignore:dashscope 2.0 audio API is a preview:FutureWarning")
async def test_client_audio_realtime(sim: SimulatorHandle) -> None:
    """The 2.x client: the same translation, read with ``events()`` through session.finished."""
    events = await in_thread(lambda: translate_2x(sim))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["session.created", "session.updated"]
    assert kinds[-1] == "session.finished"
    completed = [e for e in events if e["type"].endswith("input_audio_transcription.completed")]
    assert [e["transcript"] for e in completed] == TRANSCRIPTS
    done = [e for e in events if e["type"] == "response.audio_transcript.done"]
    assert [e["transcript"] for e in done] == TRANSLATIONS
