"""The simulator's batch REST API (adapters/sim/rest.py).

Most tests talk to a :class:`SimServer` over memory streams (``MemoryNet``) through
the real HTTP path — sniffing, h11, routing — in virtual time. The simulator decodes
files in worker threads, which ``autojump_threshold=0`` would count as idle time, so
those tests use a clock that jumps only after 20 ms of real idleness (``clock``).
The last class serves over loopback TCP: http(s) inputs and the shared port.
"""

from __future__ import annotations

import json
import math
import pathlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing
from conftest import deadline
from simclient import API_KEY, silence, tone_pcm, wav_bytes
from trio_websocket import open_websocket_url

from adapters.dashscope.batch_http import (
    BatchClient,
    BatchConfig,
    open_batch_client,
    stream_transport,
)
from adapters.dashscope.batch_result import sentences
from adapters.http.server import HttpRequest, HttpResponse, serve_http
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import SimConfig, open_simulator
from adapters.sim.memory import MemoryNet
from adapters.sim.rest import RestConfig, RestFault
from adapters.sim.server import SimServer
from engine.config import Secret
from engine.errors import ConfigError, StenoTimeout

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SUBMIT = "/api/v1/services/audio/asr/transcription"
ASYNC = {**AUTH, "X-DashScope-Async": "enable"}
FINALS = ["Hello world.", "The weather today is sunny and warm."]
FAST = RestConfig(pending_s=1.0, min_running_s=2.0, seed=7)
NO_THREADS = "oss://bucket/a.wav"
"""An input that fails at once, without the worker threads file inputs need."""


@pytest.fixture(name="clock")
def _clock() -> trio.testing.MockClock:
    """Virtual time for tests whose simulator decodes files (in worker threads).

    ``autojump_threshold=0`` counts a task waiting for a thread as idle and jumps
    to the next deadline — at teardown, the test's own. Jumping only after 50 ms
    of real idleness lets the threads finish first.
    """
    return trio.testing.MockClock(autojump_threshold=0.05)


@pytest.fixture(name="audio")
def _audio(tmp_path: pathlib.Path) -> dict[str, str]:
    """file:// URLs: tone speech, silence, a file that is not audio, and one that is missing."""
    (tmp_path / "speech.wav").write_bytes(wav_bytes(tone_pcm()))
    (tmp_path / "quiet.wav").write_bytes(wav_bytes(silence(2000)))
    (tmp_path / "junk.wav").write_bytes(b"this is not a RIFF file at all" * 100)
    return {
        name: (tmp_path / f"{name}.wav").as_uri() for name in ("speech", "quiet", "junk", "missing")
    }


class Sim:
    def __init__(self, server: SimServer, net: MemoryNet, http: httpx.AsyncClient) -> None:
        self.server = server
        self.net = net
        self.http = http

    async def submit(self, urls: list[str], model: str = "paraformer-v2", **params: Any) -> str:
        body = {"model": model, "parameters": params, "input": {"file_urls": urls}}
        response = await self.http.post(SUBMIT, json=body, headers=ASYNC)
        assert response.status_code == 200, response.text
        output = response.json()["output"]
        assert output["task_status"] == "PENDING"
        return str(output["task_id"])

    async def task(self, task_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/v1/tasks/{task_id}", headers=AUTH)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def until_done(self, task_id: str) -> dict[str, Any]:
        while True:
            body = await self.task(task_id)
            if body["output"]["task_status"] not in ("PENDING", "RUNNING"):
                return body
            await trio.sleep(1)

    @asynccontextmanager
    async def client(self, **config: Any) -> AsyncIterator[BatchClient]:
        settings = BatchConfig(base_url="http://sim.test/api/v1", **config)
        transport = stream_transport(self.net.open_stream)
        async with open_batch_client(settings, Secret(API_KEY), transport=transport) as client:
            yield client


async def _creep() -> None:
    """Keeps a timer at most 5 s ahead, so a task waiting for a decoder thread (which
    the mock clock counts as idle) lets virtual time creep, never leap to a deadline."""
    while True:  # noqa: ASYNC110 - the timer itself is the point, there is nothing to wait for
        await trio.sleep(5)


@asynccontextmanager
async def sim_net(rest: RestConfig = FAST) -> AsyncIterator[Sim]:
    server = SimServer(SimConfig(api_keys=[API_KEY]), ScriptedRecognizer.tone(), rest=rest)
    async with trio.open_nursery() as outer:
        outer.start_soon(_creep)
        async with trio.open_nursery() as nursery:
            net = MemoryNet(server, nursery)
            transport = stream_transport(net.open_stream)
            async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
                yield Sim(server, net, http)
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


class TestRequests:
    @deadline(30)
    async def test_missing_async_header(self, autojump_clock: trio.testing.MockClock) -> None:
        """A submit without X-DashScope-Async: enable is HTTP 400 InvalidParameter."""
        async with sim_net() as sim:
            body = {"model": "paraformer-v2", "input": {"file_urls": ["https://x/a.wav"]}}
            response = await sim.http.post(SUBMIT, json=body, headers=AUTH)
        assert response.status_code == 400
        assert response.json()["code"] == "InvalidParameter"
        assert "X-DashScope-Async: enable" in response.json()["message"]
        assert not sim.server.rest.tasks

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}],
    )
    @deadline(30)
    async def test_key_rejected(
        self, autojump_clock: trio.testing.MockClock, headers: dict[str, str]
    ) -> None:
        """A missing or unknown key: 401 InvalidApiKey, as at the WebSocket upgrade."""
        async with sim_net() as sim:
            for method, path in (
                ("POST", SUBMIT),
                ("GET", "/api/v1/tasks/x"),
                ("GET", "/api/v1/tasks"),
            ):
                response = await sim.http.request(method, path, headers=headers)
                assert response.status_code == 401
                assert response.json()["code"] == "InvalidApiKey"

    @deadline(30)
    async def test_key_forms(self, autojump_clock: trio.testing.MockClock) -> None:
        """Lower-case ``bearer`` and ``?api_key=`` are accepted too."""
        async with sim_net() as sim:
            lower = await sim.http.get(
                "/api/v1/tasks", headers={"authorization": f"bearer {API_KEY}"}
            )
            query = await sim.http.get(f"/api/v1/tasks?api_key={API_KEY}")
        assert (lower.status_code, query.status_code) == (200, 200)

    @pytest.mark.parametrize(
        ("body", "code", "words"),
        [
            ({"model": "paraformer-v9", "input": {"file_urls": ["u"]}}, "Model.NotExist", "Model"),
            ({"model": "paraformer-v2", "input": {}}, "InvalidParameter", "file_urls"),
            (
                {"model": "paraformer-v2", "input": {"file_urls": ["u"] * 101}},
                "InvalidParameter",
                "100",
            ),
            (
                {
                    "model": "paraformer-v2",
                    "parameters": {"language_hints": ["th"]},
                    "input": {"file_urls": ["u"]},
                },
                "InvalidParameter",
                "language_hints",
            ),
            (
                {
                    "model": "paraformer-v2",
                    "parameters": {"speaker_count": 1},
                    "input": {"file_urls": ["u"]},
                },
                "InvalidParameter",
                "speaker_count",
            ),
            ({"input": {"file_urls": ["u"]}}, "InvalidParameter", "body"),
        ],
    )
    @deadline(30)
    async def test_bad_submit(
        self, autojump_clock: trio.testing.MockClock, body: dict[str, Any], code: str, words: str
    ) -> None:
        """Unsupported model, bad file list, parameters the model does not take: HTTP 400."""
        async with sim_net() as sim:
            response = await sim.http.post(SUBMIT, json=body, headers=ASYNC)
        assert response.status_code == 400
        assert response.json()["code"] == code
        assert words in response.json()["message"]

    @deadline(30)
    async def test_routes(self, autojump_clock: trio.testing.MockClock) -> None:
        """Unknown paths 404; wrong methods 405; unknown tasks are UNKNOWN; no such result 404."""
        async with sim_net() as sim:
            assert (await sim.http.get("/nope")).status_code == 404
            assert (await sim.http.get(SUBMIT, headers=AUTH)).status_code == 405
            assert (await sim.http.delete("/api/v1/tasks/x", headers=AUTH)).status_code == 405
            assert (await sim.task("no-such-task"))["output"]["task_status"] == "UNKNOWN"
            assert (await sim.http.get("/results/x/0.json")).status_code == 404


class TestLifecycle:
    @deadline(600)
    async def test_pending_running_succeeded(
        self, clock: trio.testing.MockClock, audio: dict[str, str]
    ) -> None:
        """PENDING for pending_s, RUNNING at least min_running_s, then SUCCEEDED with results."""
        rest = RestConfig(pending_s=5.0, min_running_s=20.0, seed=1)
        async with sim_net(rest) as sim:
            start = trio.current_time()
            task_id = await sim.submit([audio["speech"]])
            await trio.sleep(4.5)
            assert (await sim.task(task_id))["output"]["task_status"] == "PENDING"
            await trio.sleep(1.0)
            assert (await sim.task(task_id))["output"]["task_status"] == "RUNNING"
            body = await sim.until_done(task_id)
            assert trio.current_time() - start >= 25.0
        output = body["output"]
        assert output["task_status"] == "SUCCEEDED"
        assert output["submit_time"] < output["scheduled_time"] < output["end_time"]
        assert output["task_metrics"] == {"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0}
        (result,) = output["results"]
        assert result["file_url"] == audio["speech"]
        assert result["subtask_status"] == "SUCCEEDED"
        assert result["transcription_url"].startswith(f"http://sim.test/results/{task_id}/0.json?")
        duration_s = len(tone_pcm()) / 2 / 16000
        assert body["usage"] == {"duration": math.ceil(duration_s)}

    @deadline(600)
    async def test_result_file(self, clock: trio.testing.MockClock, audio: dict[str, str]) -> None:
        """The §6.3 JSON, served without a key (a signed URL stands in for it)."""
        async with sim_net() as sim:
            task_id = await sim.submit([audio["speech"]], diarization_enabled=True, speaker_count=2)
            body = await sim.until_done(task_id)
            url = body["output"]["results"][0]["transcription_url"]
            response = await sim.http.get(url)
        assert response.status_code == 200
        result = response.json()
        assert result["file_url"] == audio["speech"]
        assert result["properties"]["original_sampling_rate"] == 16000
        assert result["properties"]["channels"] == [0]
        (transcript,) = result["transcripts"]
        assert transcript["channel_id"] == 0
        assert [s["text"] for s in transcript["sentences"]] == FINALS
        assert transcript["text"] == " ".join(FINALS)
        assert [s["speaker_id"] for s in transcript["sentences"]] == [0, 1]
        first = transcript["sentences"][0]
        assert [w["text"] for w in first["words"]] == ["Hello", "world"]
        assert first["words"][-1]["punctuation"] == "."
        assert first["begin_time"] <= first["words"][0]["begin_time"]
        assert (
            0
            < transcript["content_duration_in_milliseconds"]
            <= result["properties"]["original_duration_in_milliseconds"]
        )

    @deadline(600)
    async def test_sensevoice_tags(
        self, clock: trio.testing.MockClock, audio: dict[str, str]
    ) -> None:
        """sensevoice-v1 text carries <|Speech|><|NEUTRAL|>…<|/Speech|>; the client strips it."""
        async with sim_net() as sim, sim.client() as client:
            info, (outcome,) = await client.transcribe(
                "sensevoice-v1", [audio["speech"]], on_status=None
            )
        assert info.task_status == "SUCCEEDED"
        assert outcome.raw is not None
        raw = json.loads(outcome.raw)
        texts = [s["text"] for s in raw["transcripts"][0]["sentences"]]
        assert texts == [f"<|Speech|><|NEUTRAL|>{t}<|/Speech|>" for t in FINALS]
        assert all("words" not in s for s in raw["transcripts"][0]["sentences"])
        assert outcome.result is not None
        clean = sentences(outcome.result)
        assert [s.text for s in clean] == FINALS
        assert {(s.tags.emotion, s.tags.events) for s in clean} == {("NEUTRAL", ("Speech",))}

    @deadline(600)
    async def test_per_file_failures(
        self, clock: trio.testing.MockClock, audio: dict[str, str]
    ) -> None:
        """Missing, not audio, no speech: each file fails on its own; the task SUCCEEDED."""
        urls = [audio[n] for n in ("speech", "missing", "junk", "quiet")]
        async with sim_net() as sim, sim.client() as client:
            info, outcomes = await client.transcribe("paraformer-v2", urls)
        assert info.task_status == "SUCCEEDED"
        assert info.task_metrics == {"TOTAL": 4, "SUCCEEDED": 1, "FAILED": 3}
        assert [(o.file_url, o.ok, o.code) for o in outcomes] == [
            (urls[0], True, None),
            (urls[1], False, "InvalidFile.DownloadFailed"),
            (urls[2], False, "InvalidFile.DecodeFailed"),
            (urls[3], False, "SUCCESS_WITH_NO_VALID_FRAGMENT"),
        ]
        assert "not found" in (outcomes[1].message or "")
        assert outcomes[0].result is not None
        assert [s.text for s in sentences(outcomes[0].result)] == FINALS

    @deadline(600)
    async def test_every_file_failed(
        self, clock: trio.testing.MockClock, audio: dict[str, str]
    ) -> None:
        """No file transcribed: the task is FAILED with the first file's code."""
        async with sim_net() as sim:
            body = await sim.until_done(await sim.submit([audio["missing"], audio["quiet"]]))
        output = body["output"]
        assert output["task_status"] == "FAILED"
        assert output["code"] == "InvalidFile.DownloadFailed"
        assert [r["subtask_status"] for r in output["results"]] == ["FAILED", "FAILED"]
        assert "usage" not in body

    @deadline(600)
    async def test_fail_tasks(self, clock: trio.testing.MockClock, audio: dict[str, str]) -> None:
        async with sim_net(RestConfig(fail_tasks="InternalError")) as sim:
            body = await sim.until_done(await sim.submit([audio["speech"]]))
        assert (body["output"]["task_status"], body["output"]["code"]) == (
            "FAILED",
            "InternalError",
        )


class TestCancelAndList:
    @deadline(600)
    async def test_cancel_pending(
        self, clock: trio.testing.MockClock, audio: dict[str, str]
    ) -> None:
        """A PENDING task cancels and never runs; a finished one cannot be canceled."""
        async with sim_net() as sim, sim.client() as client:
            task_id = await sim.submit([audio["speech"]])
            await client.cancel(task_id)
            await trio.sleep(60)
            body = await sim.task(task_id)
            assert body["output"]["task_status"] == "CANCELED"
            assert "results" not in body["output"]
            assert not sim.server.rest.tasks[task_id].files
            with pytest.raises(ConfigError, match="only PENDING tasks can be canceled"):
                await client.cancel(task_id)
            with pytest.raises(ConfigError, match="HTTP 404"):
                await client.cancel("no-such-task")

    @deadline(600)
    async def test_cancel_running(
        self, clock: trio.testing.MockClock, audio: dict[str, str]
    ) -> None:
        async with sim_net(RestConfig(pending_s=0.5, min_running_s=30)) as sim:
            task_id = await sim.submit([audio["speech"]])
            await trio.sleep(1)
            response = await sim.http.post(f"/api/v1/tasks/{task_id}/cancel", headers=AUTH)
        assert response.status_code == 400
        assert response.json()["code"] == "UnsupportedOperation"

    @deadline(600)
    async def test_list(self, clock: trio.testing.MockClock, audio: dict[str, str]) -> None:
        """Newest first, filtered by status and model, paged."""
        async with sim_net() as sim, sim.client() as client:
            first = await sim.submit([audio["speech"]])
            await trio.sleep(1)
            second = await sim.submit([audio["speech"]], model="sensevoice-v1")
            await client.cancel(second)
            page = await client.list_tasks()
            assert [t.task_id for t in page.data] == [second, first]
            assert page.total == 2
            canceled = await client.list_tasks(status="CANCELED")
            assert [t.task_id for t in canceled.data] == [second]
            paraformer = await client.list_tasks(model="paraformer-v2", page_size=1)
            assert [t.task_id for t in paraformer.data] == [first]
            assert (await client.list_tasks(page_no=2, page_size=1)).data[0].task_id == first

    @deadline(600)
    async def test_retention(self, clock: trio.testing.MockClock, audio: dict[str, str]) -> None:
        """After retention_s a task and its result files are gone."""
        async with sim_net(RestConfig(pending_s=0, min_running_s=0, retention_s=100)) as sim:
            task_id = await sim.submit([audio["speech"]])
            url = (await sim.until_done(task_id))["output"]["results"][0]["transcription_url"]
            assert (await sim.http.get(url)).status_code == 200
            await trio.sleep(101)
            assert (await sim.task(task_id))["output"]["task_status"] == "UNKNOWN"
            assert (await sim.http.get(url)).status_code == 404


class TestFaults:
    @deadline(600)
    async def test_5xx_and_throttling_are_survived(
        self, clock: trio.testing.MockClock, audio: dict[str, str]
    ) -> None:
        """429 on the submit and 503s on the polls: the client retries and gets the result."""
        faults = (
            RestFault(route="submit", status=429, count=1),
            RestFault(route="status", status=503, count=3, after=1),
            RestFault(route="status", status=500, count=1, after=6),
        )
        async with sim_net(RestConfig(faults=faults)) as sim, sim.client() as client:
            info, (outcome,) = await client.transcribe("paraformer-v2", [audio["speech"]])
        assert info.task_status == "SUCCEEDED"
        assert outcome.ok

    @deadline(30)
    async def test_fault_body(self, autojump_clock: trio.testing.MockClock) -> None:
        async with sim_net(RestConfig(faults=(RestFault(status=503, count=2),))) as sim:
            statuses = [
                (await sim.http.get("/api/v1/tasks", headers=AUTH)).status_code for _ in range(3)
            ]
            response = await sim.http.get("/api/v1/tasks", headers={})
        assert statuses == [503, 503, 200]
        assert response.status_code == 401

    @deadline(30)
    async def test_rate_limit(self, autojump_clock: trio.testing.MockClock) -> None:
        """sensevoice-v1 takes 10 submits a second: the 11th in a burst is 429 Throttling."""
        body = {"model": "sensevoice-v1", "input": {"file_urls": [NO_THREADS]}}
        async with sim_net() as sim:
            codes = [
                (await sim.http.post(SUBMIT, json=body, headers=ASYNC)).status_code
                for _ in range(11)
            ]
            await trio.sleep(1)
            later = await sim.http.post(SUBMIT, json=body, headers=ASYNC)
        assert codes == [200] * 10 + [429]
        assert later.status_code == 200

    @deadline(30)
    async def test_rate_limit_off(self, autojump_clock: trio.testing.MockClock) -> None:
        body = {"model": "sensevoice-v1", "input": {"file_urls": [NO_THREADS]}}
        async with sim_net(RestConfig(rate_limits=False)) as sim:
            codes = {
                (await sim.http.post(SUBMIT, json=body, headers=ASYNC)).status_code
                for _ in range(30)
            }
        assert codes == {200}

    @deadline(900)
    async def test_slow_task_hits_the_client_deadline(
        self, clock: trio.testing.MockClock, audio: dict[str, str]
    ) -> None:
        """A slow task (1000 s per second of audio): the client's wait deadline fires."""
        async with (
            sim_net(RestConfig(running_s_per_audio_s=1000)) as sim,
            sim.client(wait_timeout_s=60) as client,
        ):
            info = await client.submit("paraformer-v2", [audio["speech"]])
            task = sim.server.rest.tasks[info.task_id]
            while not task.files:  # noqa: ASYNC110 - the decoder thread has no event to wait on
                await trio.sleep(0.1)
            start = trio.current_time()
            with pytest.raises(StenoTimeout, match="did not finish within 60 s"):
                await client.wait(info.task_id)
            assert trio.current_time() - start == pytest.approx(60)
            assert (await sim.task(info.task_id))["output"]["task_status"] == "RUNNING"


# ------------------------------------------------------------------ over TCP


async def _static(request: HttpRequest, nursery: trio.Nursery) -> HttpResponse:
    if request.path == "/speech.wav":
        return HttpResponse(200, wav_bytes(tone_pcm()), content_type="audio/wav")
    return HttpResponse(404, b"not here", content_type="text/plain")


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestOverTcp:
    @deadline(60)
    async def test_http_inputs(self) -> None:
        """http:// inputs are downloaded; 404 and refused URLs fail their subtask only."""
        rest = RestConfig(pending_s=0, min_running_s=0, fetch_timeout_s=10)
        limits = rest.http
        server = SimServer(SimConfig(), ScriptedRecognizer.tone(), rest=rest)
        async with trio.open_nursery() as nursery:
            files = await nursery.start(
                partial(trio.serve_tcp, host="127.0.0.1"),
                partial(serve_http, handler=_static, limits=limits),
                0,
            )
            sim = await nursery.start(
                partial(trio.serve_tcp, host="127.0.0.1"), server.serve_stream, 0
            )
            files_port = files[0].socket.getsockname()[1]
            sim_port = sim[0].socket.getsockname()[1]
            urls = [
                f"http://127.0.0.1:{files_port}/speech.wav",
                f"http://127.0.0.1:{files_port}/gone.wav",
                f"http://127.0.0.1:{_refused_port()}/x.wav",
            ]
            config = BatchConfig(
                base_url=f"http://127.0.0.1:{sim_port}/api/v1",
                trust_env=False,
                poll_initial_s=0.1,
                poll_max_s=0.2,
            )
            async with open_batch_client(config, Secret("any")) as client:
                info, outcomes = await client.transcribe("paraformer-v2", urls)
            nursery.cancel_scope.cancel()
        assert info.task_status == "SUCCEEDED"
        assert [(o.ok, o.code) for o in outcomes] == [
            (True, None),
            (False, "InvalidFile.DownloadFailed"),
            (False, "InvalidFile.DownloadFailed"),
        ]
        assert "HTTP 404" in (outcomes[1].message or "")
        assert outcomes[0].result is not None
        assert [s.text for s in sentences(outcomes[0].result)] == FINALS

    @deadline(60)
    async def test_one_port_for_websocket_and_http(self) -> None:
        """open_simulator's port serves the inference WebSocket and the REST API alike."""
        async with open_simulator(SimConfig(api_keys=[API_KEY]), ScriptedRecognizer.tone()) as sim:
            assert sim.http_url == f"http://127.0.0.1:{sim.port}/api/v1"
            headers = [(b"Authorization", f"Bearer {API_KEY}".encode())]
            async with open_websocket_url(sim.inference_url, extra_headers=headers) as ws:
                run_task = {
                    "header": {"action": "run-task", "task_id": "t1", "streaming": "duplex"},
                    "payload": {
                        "task_group": "audio",
                        "task": "asr",
                        "function": "recognition",
                        "model": "paraformer-realtime-v2",
                        "parameters": {"format": "pcm", "sample_rate": 16000},
                        "input": {},
                    },
                }
                await ws.send_message(json.dumps(run_task))
                started = json.loads(await ws.get_message())
                assert started["header"]["event"] == "task-started"
                config = BatchConfig(base_url=sim.http_url, trust_env=False)
                async with open_batch_client(config, Secret(API_KEY)) as client:
                    page = await client.list_tasks()
                assert page.total == 0

    @deadline(60)
    async def test_head_in_pieces(self) -> None:
        """A request head split over TCP segments is still routed (the peek waits for it)."""
        async with open_simulator(SimConfig(api_keys=[API_KEY]), ScriptedRecognizer.tone()) as sim:
            stream = await trio.open_tcp_stream(sim.host, sim.port)
            async with stream:
                await stream.send_all(b"GET /api/v1/tasks/abc HTTP/1.1\r\nHost: x\r\n")
                await trio.sleep(0.05)  # real-time: the rest of the head must be a later segment
                await stream.send_all(f"Authorization: Bearer {API_KEY}\r\n\r\n".encode())
                data = b""
                while b"UNKNOWN" not in data:
                    chunk = await stream.receive_some()
                    assert chunk, data
                    data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
        body = data.split(b"\r\n\r\n", 1)[1]
        assert msgspec.json.decode(body)["output"]["task_status"] == "UNKNOWN"
