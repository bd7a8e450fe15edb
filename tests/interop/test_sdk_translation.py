"""The official dashscope SDK's gummy classes against the simulator over TCP.

``TranslationRecognizerRealtime`` (streaming and ``call(file)``) and
``TranslationRecognizerChat`` (one utterance per object, DASHSCOPE.md §4.4) run
unmodified in worker threads under a trio deadline. Most tests use the scripted
recognizer labelled with the demo transcript, so texts — and the fixture
table's translations — are exact; one uses pocketsphinx. Real clock: real
sockets, the SDK's own threads.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import dashscope
import pytest
import structlog.testing
import trio
from conftest import DEMO_AUDIO
from dashscope.audio.asr import (
    TranscriptionResult,
    TranslationRecognizerCallback,
    TranslationRecognizerChat,
    TranslationRecognizerRealtime,
    TranslationResult,
)

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.sphinx import SphinxRecognizer
from adapters.sim import SimConfig, SimulatorHandle, open_simulator
from adapters.sim.translate import ScriptedTranslator

if TYPE_CHECKING:
    from adapters.recognizers.base import Recognizer

pytestmark = pytest.mark.interop

T = TypeVar("T")

API_KEY = "sk-interop"
WEATHER_WAV = DEMO_AUDIO / "weather.wav"
WEATHER_PCM = WEATHER_WAV.read_bytes()[44:]  # the demo files have the canonical 44-byte header
WEATHER = (DEMO_AUDIO / "weather.txt").read_text().splitlines()
ROWS = {
    row["en"]: row
    for row in tomllib.loads((DEMO_AUDIO / "translations.toml").read_text())["sentence"]
}
FRAME = 3200  # 100 ms
SDK_DEADLINE_S = 30.0


def spoken(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:] + "."


class Collector(TranslationRecognizerCallback):  # type: ignore[misc]
    """Records every callback; ``done`` is set on on_complete or on_error."""

    def __init__(self) -> None:
        self.transcriptions: list[TranscriptionResult] = []
        self.translations: list[TranslationResult] = []
        self.usages: list[Any] = []
        self.errors: list[Any] = []
        self.completed = threading.Event()
        self.sentence_end = threading.Event()
        self.done = threading.Event()

    def on_event(
        self,
        request_id: str,
        transcription_result: TranscriptionResult | None,
        translation_result: TranslationResult | None,
        usage: Any,
    ) -> None:
        if transcription_result is not None:
            self.transcriptions.append(transcription_result)
        if translation_result is not None:
            self.translations.append(translation_result)
        ended = (transcription_result is not None and transcription_result.is_sentence_end) or (
            translation_result is not None and translation_result.is_sentence_end
        )
        if ended:
            self.usages.append(usage)
            self.sentence_end.set()

    def on_complete(self) -> None:
        self.completed.set()
        self.done.set()

    def on_error(self, message: Any) -> None:
        self.errors.append(message)
        self.done.set()

    def final_texts(self) -> list[str]:
        return [t.text for t in self.transcriptions if t.is_sentence_end]

    def final_translations(self, lang: str) -> list[str]:
        return [t.get_translation(lang).text for t in self.translations if t.is_sentence_end]

    def check_clean(self) -> None:
        assert not self.errors, [getattr(e, "message", e) for e in self.errors]
        assert self.completed.is_set(), "on_complete never fired"


@pytest.fixture(name="sdk")
def _sdk() -> Iterator[None]:
    """Restore the SDK globals the tests point at the simulator."""
    saved = (dashscope.base_websocket_api_url, dashscope.api_key)
    yield
    dashscope.base_websocket_api_url, dashscope.api_key = saved


@asynccontextmanager
async def simulator(
    recognizer: Recognizer, config: SimConfig | None = None
) -> AsyncIterator[SimulatorHandle]:
    config = config or SimConfig(api_keys=[API_KEY])
    translator = ScriptedTranslator.demo()
    async with open_simulator(config, recognizer, translator=translator) as sim:
        dashscope.base_websocket_api_url = sim.inference_url
        dashscope.api_key = API_KEY
        yield sim


@pytest.fixture(name="sim")
async def _sim(sdk: None) -> AsyncIterator[SimulatorHandle]:
    async with simulator(ScriptedRecognizer.transcript(WEATHER)) as sim:
        yield sim


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking SDK code in a thread; fail (abandoning it) after the deadline."""
    with trio.fail_after(SDK_DEADLINE_S):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def stream_realtime(model: str, pcm: bytes, **kwargs: Any) -> Collector:
    """start() / send_audio_frame() ×N (100 ms, back to back) / stop()."""
    callback = Collector()
    recognizer = TranslationRecognizerRealtime(
        model=model, format="pcm", sample_rate=16000, callback=callback, **kwargs
    )
    recognizer.start()
    for i in range(0, len(pcm), FRAME):
        recognizer.send_audio_frame(pcm[i : i + FRAME])
    recognizer.stop()
    return callback


def chat_utterance() -> tuple[Collector, float | None]:
    """One gummy-chat utterance on a new object, fed like a microphone until it says stop.

    The SDK reads results only between the frames it sends (its sender polls
    the frame queue with blocking sleeps), so frames are fed at a pace — 10×
    real time, by waiting on the sentence end — and the loop ends when
    ``send_audio_frame`` returns False, as an application's would.

    Returns:
        The callback, and the seconds of audio ``send_audio_frame`` accepted
        before it returned False (None if it never did).
    """
    callback = Collector()
    chat = TranslationRecognizerChat(
        model="gummy-chat-v1",
        format="pcm",
        sample_rate=16000,
        callback=callback,
        transcription_enabled=True,
        translation_enabled=True,
        translation_target_languages=["zh"],
    )
    chat.start()
    audio = WEATHER_PCM + bytes(16000 * 2 * 20)  # then silence, should the end come late
    accepted: float | None = None
    for i in range(0, len(audio), FRAME):
        if not chat.send_audio_frame(audio[i : i + FRAME]):
            accepted = i / 32000
            break
        callback.sentence_end.wait(FRAME / 32000 / 10)
    chat.stop()
    return callback, accepted


class TestRealtime:
    async def test_streaming(self, sim: SimulatorHandle) -> None:
        """Transcriptions, translations per language, usage on finals, and on_complete."""
        callback = await in_thread(
            lambda: stream_realtime(
                "gummy-realtime-v1",
                WEATHER_PCM,
                transcription_enabled=True,
                translation_enabled=True,
                translation_target_languages=["zh", "ja"],
            )
        )
        callback.check_clean()
        assert callback.final_texts() == [spoken(s) for s in WEATHER]
        assert callback.final_translations("zh") == [ROWS[s]["zh"] for s in WEATHER]
        assert callback.final_translations("ja") == [ROWS[s]["ja"] for s in WEATHER]
        assert any(not t.is_sentence_end for t in callback.transcriptions), "partials"
        assert [t.sentence_id for t in callback.transcriptions if t.is_sentence_end] == [0, 1, 2]
        assert all(t.stash is not None for t in callback.transcriptions if t.is_sentence_end)
        assert all(isinstance(u["duration"], int) for u in callback.usages)

    async def test_call_file(self, sim: SimulatorHandle) -> None:
        """call(wav file): the whole file, header and all; one result pair per sentence."""

        def call() -> Any:
            recognizer = TranslationRecognizerRealtime(
                model="gummy-realtime-v1",
                format="wav",
                sample_rate=16000,
                callback=Collector(),
                translation_enabled=True,
                translation_target_languages=["zh"],
            )
            return recognizer.call(str(WEATHER_WAV))

        pack = await in_thread(call)
        assert pack.error_message is None
        assert [t.text for t in pack.transcription_result_list] == [spoken(s) for s in WEATHER]
        assert [t.get_translation("zh").text for t in pack.translation_result_list] == [
            ROWS[s]["zh"] for s in WEATHER
        ]
        assert all(u["duration"] >= 1 for u in pack.usage_list)

    async def test_translation_only(self, sim: SimulatorHandle) -> None:
        """transcription_enabled=False: on_event gets no transcription at all."""
        callback = await in_thread(
            lambda: stream_realtime(
                "gummy-realtime-v1",
                WEATHER_PCM,
                transcription_enabled=False,
                translation_enabled=True,
                translation_target_languages=["de"],
            )
        )
        callback.check_clean()
        assert not callback.transcriptions
        assert callback.final_translations("de") == [ROWS[s]["de"] for s in WEATHER]

    async def test_bad_parameter_reaches_on_error(self, sim: SimulatorHandle) -> None:
        """translation without a target: task-failed InvalidParameter → on_error."""
        callback = Collector()

        def start() -> bool:
            recognizer = TranslationRecognizerRealtime(
                model="gummy-realtime-v1",
                format="pcm",
                sample_rate=16000,
                callback=callback,
                translation_enabled=True,
            )
            recognizer.start()
            return callback.done.wait(SDK_DEADLINE_S)

        assert await in_thread(start)
        assert not callback.completed.is_set()
        [error] = callback.errors
        assert (error.status_code, error.code) == (44, "InvalidParameter")
        assert "translation_target_languages" in error.message


class TestChat:
    async def test_one_utterance_per_object(self, sim: SimulatorHandle) -> None:
        """send_audio_frame turns False after the sentence end; stop() gets on_complete; a
        new object runs the next utterance."""
        with structlog.testing.capture_logs() as logs:
            for _ in range(2):
                callback, accepted = await in_thread(chat_utterance)
                callback.check_clean()
                assert callback.final_texts() == [spoken(WEATHER[0])]
                assert callback.final_translations("zh") == [ROWS[WEATHER[0]]["zh"]]
                assert callback.transcriptions[-1].is_sentence_end, "nothing after the end"
                # the first sentence ends at 3.0 s + 0.7 s of silence
                assert accepted is not None, "send_audio_frame never returned False"
                assert accepted > 3.7
        # task-finished waited for the SDK's finish-task
        lines = [e["event"] for e in logs if e["event"].startswith(("task ", "finish-task"))]
        assert lines == ["task started", "task ended"] * 2

    async def test_spontaneous_task_finished(self, sdk: None) -> None:
        """gummy_chat_auto_finish: the SDK copes with task-finished before finish-task."""
        config = SimConfig(api_keys=[API_KEY], gummy_chat_auto_finish=True)
        with structlog.testing.capture_logs() as logs:
            async with simulator(ScriptedRecognizer.transcript(WEATHER), config):
                for _ in range(2):
                    callback, accepted = await in_thread(chat_utterance)
                    callback.check_clean()
                    assert callback.final_texts() == [spoken(WEATHER[0])]
                    assert accepted is not None
                    assert accepted > 3.7
        # Whether on_complete fires before stop() is up to the SDK's sender loop (it
        # reads only between frames); the server's side is in its log: task-finished
        # went out first, and the SDK's finish-task came after it, ignored.
        lines = [e["event"] for e in logs if e["event"].startswith(("task ", "finish-task"))]
        assert lines == ["task started", "task ended", "finish-task after the task ended"] * 2


async def test_pocketsphinx_streaming(sdk: None) -> None:
    """The default recognizer: real words, and scripted translations for what it heard."""
    recognizer = SphinxRecognizer(workers=1)
    try:
        async with simulator(recognizer):
            callback = await in_thread(
                lambda: stream_realtime(
                    "gummy-realtime-v1",
                    WEATHER_PCM,
                    translation_enabled=True,
                    translation_target_languages=["zh"],
                )
            )
    finally:
        await recognizer.aclose()
    callback.check_clean()
    assert len(callback.final_texts()) >= 2
    table = {row["zh"] for row in ROWS.values()}
    # pocketsphinx slips a word now and then; the fuzzy table lookup still matches
    assert len(set(callback.final_translations("zh")) & table) >= 2, callback.final_translations(
        "zh"
    )
