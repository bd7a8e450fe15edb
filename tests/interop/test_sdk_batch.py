"""The official dashscope SDK's ``Transcription`` (batch REST) against the simulator over TCP.

Unmodified SDK calls — ``async_call``, ``wait``, ``fetch``, ``cancel``, ``list`` —
with ``dashscope.base_http_api_url`` pointed at the simulator's one port. The SDK
is synchronous (requests) and sleeps between polls, so each scenario runs in a
worker thread under a trio deadline: real time, a few seconds each. Audio is
tone-coded speech for the scripted recognizer (exact, fast); inputs are
``file://`` URLs, and an ``http://`` URL the simulator downloads from a file
server this module hosts on 127.0.0.1.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import dashscope
import pytest
import requests
import soundfile
import trio
from dashscope.audio.asr import Transcription

from adapters.http.server import HttpLimits, HttpRequest, HttpResponse, serve_http
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim import SimConfig, SimulatorHandle, open_simulator

pytestmark = pytest.mark.interop

T = TypeVar("T")

API_KEY = "sk-interop-batch"
SDK_DEADLINE_S = 60.0
SENTENCES = ["hello world", "the weather today is sunny and warm"]
FINALS = ["Hello world.", "The weather today is sunny and warm."]


@pytest.fixture(name="sdk")
def _sdk() -> Iterator[None]:
    """Restore the SDK globals the tests point at the simulator."""
    saved = (dashscope.base_http_api_url, dashscope.api_key)
    yield
    dashscope.base_http_api_url, dashscope.api_key = saved


@pytest.fixture(name="sim")
async def _sim(sdk: None) -> AsyncIterator[SimulatorHandle]:
    async with open_simulator(SimConfig(api_keys=[API_KEY]), ScriptedRecognizer.tone()) as sim:
        dashscope.base_http_api_url = sim.http_url
        dashscope.api_key = API_KEY
        yield sim


@pytest.fixture(name="wav")
def _wav(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "tones.wav"
    soundfile.write(str(path), synthesize(SENTENCES, 16000), 16000, subtype="PCM_16")
    return path


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking SDK code in a thread; fail (abandoning it) after the deadline."""
    with trio.fail_after(SDK_DEADLINE_S):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def texts(result: dict[str, Any]) -> list[str]:
    return [s["text"] for s in result["transcripts"][0]["sentences"]]


async def test_async_call_and_wait(sim: SimulatorHandle, wav: pathlib.Path) -> None:
    """async_call → PENDING; wait → SUCCEEDED with results; each result file downloads."""
    missing = wav.with_name("missing.wav").as_uri()

    def scenario() -> tuple[Any, Any, Any]:
        task = Transcription.async_call(model="paraformer-v2", file_urls=[wav.as_uri(), missing])
        done = Transcription.wait(task=task.output.task_id)
        fetched = Transcription.fetch(task=task.output.task_id)
        return task, done, fetched

    task, done, fetched = await in_thread(scenario)
    assert task.status_code == 200, task.message
    assert task.output.task_status == "PENDING"
    assert done.status_code == 200, done.message
    assert done.output.task_status == "SUCCEEDED"
    assert fetched.output.task_status == "SUCCEEDED"
    ok, failed = done.output["results"]
    assert ok["subtask_status"] == "SUCCEEDED"
    assert failed["subtask_status"] == "FAILED"
    assert failed["code"] == "InvalidFile.DownloadFailed"
    assert done.output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1}
    assert done.usage["duration"] >= 1
    # The SDK does not download results: its users do, with a plain GET (no key).
    assert ok["transcription_url"].startswith(f"http://127.0.0.1:{sim.port}/results/")
    result = (await in_thread(partial(requests.get, ok["transcription_url"], timeout=10))).json()
    assert texts(result) == FINALS


async def test_sensevoice_and_http_input(sim: SimulatorHandle, wav: pathlib.Path) -> None:
    """sensevoice-v1 on an http:// input: tagged text, as the service's demo expects."""
    audio = await trio.Path(wav).read_bytes()

    async def files(request: HttpRequest, nursery: trio.Nursery) -> HttpResponse:
        if request.path == "/tones.wav":
            return HttpResponse(200, audio, content_type="audio/wav")
        return HttpResponse(404, b"")

    async with trio.open_nursery() as nursery:
        serve = partial(serve_http, handler=files, limits=HttpLimits())
        listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), serve, 0)
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/tones.wav"

        def scenario() -> Any:
            task = Transcription.async_call(
                model="sensevoice-v1", file_urls=[url], language_hints=["en"]
            )
            return Transcription.wait(task=task.output.task_id)

        done = await in_thread(scenario)
        nursery.cancel_scope.cancel()
    assert done.output.task_status == "SUCCEEDED", done.output
    (ok,) = done.output["results"]
    result = (await in_thread(partial(requests.get, ok["transcription_url"], timeout=10))).json()
    assert result["file_url"] == url
    assert texts(result) == [f"<|Speech|><|NEUTRAL|>{t}<|/Speech|>" for t in FINALS]


async def test_cancel_and_list(sim: SimulatorHandle, wav: pathlib.Path) -> None:
    """cancel a PENDING task; list shows it, newest first."""

    def scenario() -> tuple[Any, Any, Any]:
        task = Transcription.async_call(model="paraformer-v2", file_urls=[wav.as_uri()])
        canceled = Transcription.cancel(task.output.task_id)
        listed = Transcription.list(status="CANCELED")
        return task, canceled, listed

    task, canceled, listed = await in_thread(scenario)
    assert canceled.status_code == 200, canceled.message
    assert canceled.output["task_status"] == "CANCELED"
    assert [row["task_id"] for row in listed.output["data"]] == [task.output.task_id]


@pytest.mark.parametrize(
    ("key", "model", "status", "code"),
    [
        ("sk-wrong", "paraformer-v2", 401, "InvalidApiKey"),
        (API_KEY, "paraformer-v9", 400, "Model.NotExist"),
    ],
)
async def test_rejected(
    sim: SimulatorHandle, wav: pathlib.Path, key: str, model: str, status: int, code: str
) -> None:
    """A wrong key or an unknown model: the SDK's response carries the HTTP status and code."""
    dashscope.api_key = key
    response = await in_thread(
        lambda: Transcription.async_call(model=model, file_urls=[wav.as_uri()])
    )
    assert (response.status_code, response.code) == (status, code)
