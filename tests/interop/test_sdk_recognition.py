"""The official dashscope SDK (1.x-style ``Recognition``) against the simulator over TCP.

The SDK is synchronous and threaded (aiohttp in its own event loop per call), so
each scenario runs in a worker thread under a trio deadline, against a simulator
served on 127.0.0.1 with the pocketsphinx recognizer. Real clock: these tests
exercise real sockets and real processes.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import dashscope
import pytest
import trio
from conftest import DEMO_AUDIO
from dashscope.audio.asr import Recognition, RecognitionCallback, RecognitionResult

from adapters.recognizers.sphinx import SphinxRecognizer
from adapters.sim import SimConfig, SimulatorHandle, open_simulator

pytestmark = pytest.mark.interop

T = TypeVar("T")

API_KEY = "sk-interop"
WEATHER = DEMO_AUDIO / "weather.wav"
EXPECTED_WORDS = {"weather", "today", "sunny", "warm", "tomorrow", "umbrella", "meeting"}
MODELS = ["paraformer-realtime-v2", "fun-asr-realtime"]
SDK_DEADLINE_S = 30.0


class Collector(RecognitionCallback):  # type: ignore[misc]
    """Records every callback; ``done`` is set on on_complete or on_error."""

    def __init__(self) -> None:
        self.sentences: list[dict[str, Any]] = []
        self.errors: list[RecognitionResult] = []
        self.completed = False
        self.done = threading.Event()

    def on_event(self, result: RecognitionResult) -> None:
        sentence = result.get_sentence()
        if isinstance(sentence, dict):
            self.sentences.append(sentence)

    def on_complete(self) -> None:
        self.completed = True
        self.done.set()

    def on_error(self, result: RecognitionResult) -> None:
        self.errors.append(result)
        self.done.set()

    def finals(self) -> list[str]:
        return [s["text"] for s in self.sentences if RecognitionResult.is_sentence_end(s)]


@pytest.fixture(name="sdk")
def _sdk() -> Iterator[None]:
    """Restore the SDK globals the tests point at the simulator."""
    saved = (dashscope.base_websocket_api_url, dashscope.api_key)
    yield
    dashscope.base_websocket_api_url, dashscope.api_key = saved


@pytest.fixture(name="sim")
async def _sim(sdk: None) -> AsyncIterator[SimulatorHandle]:
    recognizer = SphinxRecognizer(workers=1)
    try:
        async with open_simulator(SimConfig(api_keys=[API_KEY]), recognizer) as sim:
            dashscope.base_websocket_api_url = sim.inference_url
            dashscope.api_key = API_KEY
            yield sim
    finally:
        await recognizer.aclose()


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking SDK code in a thread; fail (abandoning it) after the deadline."""
    with trio.fail_after(SDK_DEADLINE_S):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def words_of(texts: list[str]) -> set[str]:
    return {w.strip(".,?!").lower() for text in texts for w in text.split()}


def call_file(model: str) -> RecognitionResult:
    """(a) Recognition.call(wav file): the SDK sends the raw file, header and all."""
    recognition = Recognition(model=model, format="wav", sample_rate=16000, callback=Collector())
    return recognition.call(str(WEATHER))


def stream(model: str, pcm: bytes) -> Collector:
    """(b) start() / send_audio_frame() ×N (100 ms, back to back) / stop()."""
    callback = Collector()
    recognition = Recognition(model=model, format="pcm", sample_rate=16000, callback=callback)
    recognition.start()
    for i in range(0, len(pcm), 3200):
        recognition.send_audio_frame(pcm[i : i + 3200])
    recognition.stop()
    return callback


# One test per model runs both scenarios against one simulator, so the sphinx
# worker (about 2 s to start) starts once per model and the file stays under 30 s.
@pytest.mark.parametrize("model", MODELS)
async def test_call_file_and_streaming(sim: SimulatorHandle, model: str) -> None:
    """Sentences with real words, on_complete, and no on_error, for call() and streaming."""
    result = await in_thread(lambda: call_file(model))
    assert result.status_code == 200, result.message
    sentences = result.get_sentence()
    assert isinstance(sentences, list)
    assert len(sentences) >= 2
    texts = [s["text"] for s in sentences]
    assert all(t[:1].isupper() and t.endswith(".") for t in texts)
    assert len(words_of(texts) & EXPECTED_WORDS) >= 4, texts
    assert all(isinstance(s["end_time"], int) for s in sentences)

    pcm = WEATHER.read_bytes()[44:]  # the demo files have the canonical 44-byte header
    callback = await in_thread(lambda: stream(model, pcm))
    assert not callback.errors, [e.message for e in callback.errors]
    assert callback.completed
    assert len(callback.finals()) >= 2
    assert len(words_of(callback.finals()) & EXPECTED_WORDS) >= 4, callback.finals()
    assert any(not RecognitionResult.is_sentence_end(s) for s in callback.sentences), "partials"


async def test_wrong_key(sim: SimulatorHandle) -> None:
    """A key the simulator does not know: on_error with HTTP status 401."""
    dashscope.api_key = "sk-wrong"
    callback = Collector()

    def start() -> bool:
        recognition = Recognition(
            model=MODELS[0], format="pcm", sample_rate=16000, callback=callback
        )
        recognition.start()
        return callback.done.wait(SDK_DEADLINE_S)

    assert await in_thread(start)
    assert not callback.completed
    assert [e.status_code for e in callback.errors] == [401]
