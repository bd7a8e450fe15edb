"""The batch client (adapters/dashscope/batch_http.py) against scripted HTTP, in virtual time.

Every test talks to an ``httpx.MockTransport`` whose handler plays the service,
so no socket is opened and polling, retries and deadlines run on
``MockClock(autojump_threshold=0)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import deadline

from adapters.dashscope.batch_http import BatchClient, BatchConfig, open_batch_client
from adapters.dashscope.batch_tasks import BatchServiceError, parse_task
from engine.config import Secret
from engine.errors import AuthError, ConfigError, ConnectFailed, StenoTimeout

BASE = "https://dashscope.test/api/v1"
KEY = "sk-secret-batch"
RESULT = {
    "file_url": "https://example.com/a.wav",
    "transcripts": [{"sentences": [{"begin_time": 100, "end_time": 900, "text": "Hello there."}]}],
}

Handler = Callable[[httpx.Request], Any]


def task_body(status: str, **output: Any) -> httpx.Response:
    return httpx.Response(
        200, json={"request_id": "r", "output": {"task_id": "t1", "task_status": status, **output}}
    )


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"request_id": "r", "code": code, "message": code})


class Service:
    """A scripted service: records (virtual time, request) and answers from a function."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.seen: list[tuple[float, httpx.Request]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((trio.current_time(), request))
        await trio.lowlevel.checkpoint()
        response = self.answer(request)
        if isinstance(response, Exception):
            raise response
        assert isinstance(response, httpx.Response)
        return response

    def times(self, path_part: str = "/tasks/") -> list[float]:
        start = self.seen[0][0]
        return [t - start for t, r in self.seen if path_part in r.url.path]


async def run(service: Service, body: Callable[[BatchClient], Any], **config: Any) -> Any:
    settings = BatchConfig(base_url=BASE, **config)
    async with open_batch_client(
        settings, Secret(KEY), transport=httpx.MockTransport(service)
    ) as client:
        return await body(client)


class TestRequests:
    @deadline(60)
    async def test_headers(self, autojump_clock: trio.testing.MockClock) -> None:
        """Bearer key and the async header on submit; polls without it; results without the key."""

        def answer(request: httpx.Request) -> httpx.Response:
            if request.url.host == "oss.test":
                return httpx.Response(200, json=RESULT)
            if request.method == "POST":
                return task_body("PENDING")
            url = "https://oss.test/r.json?Signature=s"
            results = [{"file_url": "u", "transcription_url": url, "subtask_status": "SUCCEEDED"}]
            return task_body("SUCCEEDED", results=results)

        service = Service(answer)
        info, outcomes = await run(
            service, lambda c: c.transcribe("paraformer-v2", ["https://example.com/a.wav"])
        )
        assert info.task_status == "SUCCEEDED"
        assert [o.ok for o in outcomes] == [True]
        submit, poll, download = (r for _, r in service.seen)
        assert submit.url == BASE + "/services/audio/asr/transcription"
        assert submit.headers["authorization"] == f"Bearer {KEY}"
        assert submit.headers["x-dashscope-async"] == "enable"
        assert poll.url == BASE + "/tasks/t1"
        assert poll.headers["authorization"] == f"Bearer {KEY}"
        assert "x-dashscope-async" not in poll.headers
        assert download.url.host == "oss.test"
        assert "authorization" not in download.headers, "the key never goes to a result host"

    @deadline(60)
    async def test_list_and_cancel(self, autojump_clock: trio.testing.MockClock) -> None:
        def answer(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/cancel"):
                return task_body("CANCELED")
            return httpx.Response(200, json={"data": [{"task_id": "t1", "status": "PENDING"}]})

        service = Service(answer)

        async def body(client: BatchClient) -> Any:
            await client.cancel("t1")
            return await client.list_tasks(page_size=3, status="PENDING")

        page = await run(service, body)
        assert [t.task_id for t in page.data] == ["t1"]
        cancel, listing = (r for _, r in service.seen)
        assert (cancel.method, cancel.url.path) == ("POST", "/api/v1/tasks/t1/cancel")
        assert dict(listing.url.params) == {"page_no": "1", "page_size": "3", "status": "PENDING"}


class TestPolling:
    @deadline(120)
    async def test_sdk_schedule(self, autojump_clock: trio.testing.MockClock) -> None:
        """Polls at 0, 1, 2, 4, 6, 8, 12, 16, 20, 25, 30 s until the task is done."""
        polls = 0
        seen: list[str] = []

        def answer(request: httpx.Request) -> httpx.Response:
            nonlocal polls
            polls += 1
            return task_body("SUCCEEDED" if polls == 11 else "RUNNING")

        service = Service(answer)
        info = await run(
            service, lambda c: c.wait("t1", on_status=lambda i: seen.append(i.task_status))
        )
        assert info.task_status == "SUCCEEDED"
        assert service.times() == [0, 1, 2, 4, 6, 8, 12, 16, 20, 25, 30]
        assert seen == ["RUNNING"] * 10 + ["SUCCEEDED"]

    @deadline(200)
    async def test_deadline(self, autojump_clock: trio.testing.MockClock) -> None:
        """A task that never ends: StenoTimeout at wait_timeout_s, naming how to look later."""
        service = Service(lambda request: task_body("RUNNING"))
        start = trio.current_time()
        with pytest.raises(StenoTimeout) as caught:
            await run(service, lambda c: c.wait("t1"), wait_timeout_s=60)
        assert trio.current_time() - start == pytest.approx(60)
        assert "task t1 did not finish within 60 s" in str(caught.value)
        assert "steno batch status t1" in str(caught.value)

    @deadline(200)
    async def test_transient_failures_do_not_end_the_wait(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """503, 429 and refused connections between polls: the wait goes on and succeeds."""
        script: list[Any] = [
            error(503, "ServiceUnavailable"),
            error(503, "ServiceUnavailable"),
            error(503, "ServiceUnavailable"),
            error(503, "ServiceUnavailable"),  # retries exhausted: this poll failed
            error(429, "Throttling.RateQuota"),
            httpx.ConnectError("refused"),
            task_body("RUNNING"),
            task_body("SUCCEEDED"),
        ]
        service = Service(lambda request: script.pop(0))
        info = await run(service, lambda c: c.wait("t1"), retry_delay_s=0.5)
        assert info.task_status == "SUCCEEDED"
        assert not script

    @deadline(200)
    async def test_last_error_in_timeout(self, autojump_clock: trio.testing.MockClock) -> None:
        """A service down for the whole wait: the timeout says why."""
        service = Service(lambda request: error(503, "ServiceUnavailable"))
        with pytest.raises(StenoTimeout, match="last error: status of task t1: the service failed"):
            await run(service, lambda c: c.wait("t1"), wait_timeout_s=30)

    @deadline(60)
    async def test_auth_error_stops_at_once(self, autojump_clock: trio.testing.MockClock) -> None:
        """A rejected key is permanent: no retries, no more polls."""
        service = Service(lambda request: error(401, "InvalidApiKey"))
        with pytest.raises(AuthError, match="fix: set DASHSCOPE_API_KEY"):
            await run(service, lambda c: c.wait("t1"))
        assert len(service.seen) == 1


class TestSubmitRetries:
    @deadline(60)
    async def test_throttled_then_taken(self, autojump_clock: trio.testing.MockClock) -> None:
        """429 means not taken: the submit is retried after a delay."""
        script = [error(429, "Throttling.RateQuota"), task_body("PENDING")]
        service = Service(lambda request: script.pop(0))
        info = await run(service, lambda c: c.submit("paraformer-v2", ["https://x/a.wav"]))
        assert info.task_status == "PENDING"
        assert service.times("/transcription") == [0, 2]

    @deadline(60)
    async def test_refused_connection_is_retried(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        script: list[Any] = [httpx.ConnectError("refused"), task_body("PENDING")]
        service = Service(lambda request: script.pop(0))
        info = await run(service, lambda c: c.submit("paraformer-v2", ["https://x/a.wav"]))
        assert info.task_id == "t1"

    @deadline(60)
    async def test_timeout_is_not_resent(self, autojump_clock: trio.testing.MockClock) -> None:
        """A submit that may have been taken is never sent twice (no duplicate tasks)."""
        service = Service(lambda request: httpx.ReadTimeout("slow"))
        with pytest.raises(StenoTimeout, match="did not answer in time"):
            await run(service, lambda c: c.submit("paraformer-v2", ["https://x/a.wav"]))
        assert len(service.seen) == 1

    @deadline(60)
    async def test_request_deadline(self, autojump_clock: trio.testing.MockClock) -> None:
        """A service that never answers: the per-request deadline fires on trio's clock."""

        async def hang(request: httpx.Request) -> httpx.Response:
            await trio.sleep_forever()
            raise AssertionError

        with pytest.raises(StenoTimeout, match="no answer within 5 s"):
            async with open_batch_client(
                BatchConfig(base_url=BASE, request_timeout_s=5, retries=0),
                Secret(KEY),
                transport=httpx.MockTransport(hang),
            ) as client:
                await client.status("t1")

    @deadline(60)
    async def test_unreachable(self, autojump_clock: trio.testing.MockClock) -> None:
        """Nothing listening: ConnectFailed naming the host and the fix, after the retries."""
        service = Service(lambda request: httpx.ConnectError("connection refused"))
        with pytest.raises(ConnectFailed) as caught:
            await run(service, lambda c: c.status("t1"))
        assert "cannot reach dashscope.test" in str(caught.value)
        assert "fix: check the network" in str(caught.value)
        assert len(service.seen) == 4

    @deadline(60)
    async def test_unsupported_model_sends_nothing(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        service = Service(lambda request: task_body("PENDING"))
        with pytest.raises(ConfigError, match="unsupported model"):
            await run(service, lambda c: c.submit("whisper-1", ["https://x/a.wav"]))
        assert not service.seen

    @deadline(60)
    async def test_server_says_bad_model(self, autojump_clock: trio.testing.MockClock) -> None:
        service = Service(lambda request: error(400, "Model.NotExist"))
        with pytest.raises(ConfigError, match="fix: use paraformer-v2 or sensevoice-v1"):
            await run(service, lambda c: c.submit("paraformer-v2", ["https://x/a.wav"]))


class TestDownload:
    @deadline(60)
    async def test_per_file_outcomes(self, autojump_clock: trio.testing.MockClock) -> None:
        """Failed subtask, missing result, broken result, 503-then-ok: each file on its own."""
        hits = {"flaky": 0}

        def answer(request: httpx.Request) -> httpx.Response:
            name = request.url.path.rsplit("/", 1)[-1]
            if name == "flaky.json":
                hits["flaky"] += 1
                if hits["flaky"] == 1:
                    return error(503, "ServiceUnavailable")
            if name in ("ok.json", "flaky.json"):
                return httpx.Response(200, json=RESULT)
            if name == "broken.json":
                return httpx.Response(200, content=b"<xml/>")
            return httpx.Response(404, content=b"NoSuchKey")

        def sub(name: str, status: str = "SUCCEEDED", **extra: Any) -> dict[str, Any]:
            url = f"https://oss.test/{name}.json"
            return {
                "file_url": f"https://x/{name}.wav",
                "transcription_url": url,
                "subtask_status": status,
                **extra,
            }

        body = {
            "output": {
                "task_id": "t1",
                "task_status": "SUCCEEDED",
                "results": [
                    sub("ok"),
                    sub("failed", "FAILED", code="InvalidFile.DownloadFailed", message="404"),
                    sub("gone"),
                    sub("broken"),
                    sub("flaky"),
                ],
            }
        }
        info = parse_task(200, json.dumps(body).encode())
        outcomes = await run(Service(answer), lambda c: c.download(info), retry_delay_s=1)
        assert [(o.index, o.ok, o.code) for o in outcomes] == [
            (0, True, None),
            (1, False, "InvalidFile.DownloadFailed"),
            (2, False, "DownloadFailed"),
            (3, False, "DownloadFailed"),
            (4, True, None),
        ]
        assert json.loads(outcomes[0].raw or b"") == RESULT
        assert outcomes[0].result is not None
        assert "HTTP 404" in (outcomes[2].message or "")
        assert "not a transcription result" in (outcomes[3].message or "")


class TestErrorsAreOurs:
    @deadline(60)
    async def test_throttled_poll_after_retries(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """status() itself gives up after the retries with BatchServiceError (429)."""
        service = Service(lambda request: error(429, "Throttling"))
        with pytest.raises(BatchServiceError) as caught:
            await run(service, lambda c: c.status("t1"))
        assert caught.value.status == 429
        assert service.times() == [0, 2, 6, 11]  # 2 s, doubling, capped at 5 s
