"""Batch REST shaping (adapters/dashscope/batch.py): requests, responses, errors, polling maths."""

from __future__ import annotations

import itertools
import json

import msgspec
import pytest

from adapters.dashscope.batch import (
    BatchOptions,
    cancel_request,
    list_request,
    status_request,
    submit_request,
)
from adapters.dashscope.batch_tasks import (
    BatchServiceError,
    parse_task,
    parse_task_page,
    poll_delays,
    response_error,
)
from engine.errors import AuthError, ConfigError, RemoteProtocolError

URL = "https://example.com/meeting.wav"

SUCCEEDED = {
    "request_id": "91b4c2e0",
    "output": {
        "task_id": "t-1",
        "task_status": "SUCCEEDED",
        "submit_time": "2026-04-12 10:02:11.380",
        "scheduled_time": "2026-04-12 10:02:11.509",
        "end_time": "2026-04-12 10:02:14.450",
        "results": [
            {
                "file_url": URL,
                "transcription_url": "https://oss.example.com/r.json?Expires=1&Signature=x",
                "subtask_status": "SUCCEEDED",
            },
            {
                "file_url": "https://example.com/silence.wav",
                "code": "SUCCESS_WITH_NO_VALID_FRAGMENT",
                "message": "no valid speech found",
                "subtask_status": "FAILED",
            },
        ],
        "task_metrics": {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1},
        "some_new_field": True,
    },
    "usage": {"duration": 6},
}


class TestSubmitRequest:
    def test_shape(self) -> None:
        """POST with the async header, JSON in the SDK's key order, only the options set."""
        options = BatchOptions(language_hints=["en"], diarization_enabled=True, speaker_count=2)
        request = submit_request("paraformer-v2", [URL], options)
        assert request.method == "POST"
        assert request.path == "/services/audio/asr/transcription"
        headers = dict(request.headers)
        assert headers["X-DashScope-Async"] == "enable"
        assert headers["Content-Type"].startswith("application/json")
        assert "Authorization" not in headers, "the key is added by the transport only"
        assert request.body is not None
        body = json.loads(request.body)
        assert list(body) == ["model", "parameters", "input"]
        assert body["parameters"] == {
            "language_hints": ["en"],
            "diarization_enabled": True,
            "speaker_count": 2,
        }
        assert body["input"] == {"file_urls": [URL]}

    def test_sensevoice_takes_any_language(self) -> None:
        """sensevoice-v1 accepts ``auto`` and any language code."""
        request = submit_request(
            "sensevoice-v1", [URL], BatchOptions(language_hints=["auto", "th"])
        )
        assert request.body is not None
        assert json.loads(request.body)["parameters"]["language_hints"] == ["auto", "th"]

    @pytest.mark.parametrize(
        ("model", "urls", "options", "fix"),
        [
            ("paraformer-v9", [URL], BatchOptions(), "paraformer-v2 or sensevoice-v1"),
            ("paraformer-v2", [], BatchOptions(), "split the files"),
            ("paraformer-v2", [URL] * 101, BatchOptions(), "split the files"),
            ("paraformer-v2", ["/home/me/a.wav"], BatchOptions(), "upload local files"),
            ("paraformer-v2", ["ftp://x/a.wav"], BatchOptions(), "http(s)://"),
            ("paraformer-v2", [URL], BatchOptions(language_hints=["xx"]), "use one of"),
            ("sensevoice-v1", [URL], BatchOptions(diarization_enabled=True), "leave it out"),
        ],
    )
    def test_rejected_before_sending(
        self, model: str, urls: list[str], options: BatchOptions, fix: str
    ) -> None:
        """Bad models, URL counts, schemes, parameters and languages: ConfigError naming the fix."""
        with pytest.raises(ConfigError, match="fix: ") as caught:
            submit_request(model, urls, options)
        assert fix in str(caught.value)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"speaker_count": 2},
            {"speaker_count": 1, "diarization_enabled": True},
            {"channel_id": []},
            {"channel_id": [-1]},
        ],
    )
    def test_bad_options(self, kwargs: dict[str, object]) -> None:
        """Options validate on construction (msgspec turns these into ValidationError on decode)."""
        with pytest.raises(ValueError, match=r"speaker_count|channel_id"):
            BatchOptions(**kwargs)  # type: ignore[arg-type]

    def test_options_decode_strictly(self) -> None:
        """Unknown option keys are errors (our config format)."""
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(b'{"languages": ["en"]}', type=BatchOptions)


class TestOtherRequests:
    def test_status_cancel_list(self) -> None:
        """Task ids are quoted into the path; list carries its filters as parameters."""
        assert status_request("abc-1").path == "/tasks/abc-1"
        assert status_request("abc-1").method == "GET"
        assert cancel_request("abc-1").path == "/tasks/abc-1/cancel"
        assert cancel_request("abc-1").method == "POST"
        listing = list_request(page_no=2, page_size=5, status="RUNNING", model="sensevoice-v1")
        assert dict(listing.params) == {
            "page_no": "2",
            "page_size": "5",
            "status": "RUNNING",
            "model_name": "sensevoice-v1",
        }
        for request in (status_request("x"), cancel_request("x"), listing):
            assert "X-DashScope-Async" not in dict(request.headers)

    @pytest.mark.parametrize("task_id", ["", "a/b", ".."])
    def test_bad_task_id(self, task_id: str) -> None:
        """A task id that would change the path is refused."""
        with pytest.raises(ConfigError, match="not a task id"):
            status_request(task_id)


class TestResponses:
    def test_parse_succeeded(self) -> None:
        """Status, times, per-file results, metrics and usage; unknown fields are ignored."""
        info = parse_task(200, json.dumps(SUCCEEDED).encode())
        assert info.task_id == "t-1"
        assert info.terminal
        assert info.request_id == "91b4c2e0"
        assert info.usage_duration == 6
        assert [r.subtask_status for r in info.results] == ["SUCCEEDED", "FAILED"]
        assert info.results[0].transcription_url is not None
        assert info.results[1].code == "SUCCESS_WITH_NO_VALID_FRAGMENT"
        assert info.task_metrics == {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1}

    @pytest.mark.parametrize(
        ("status", "terminal"),
        [
            ("PENDING", False),
            ("RUNNING", False),
            ("SUSPENDED", False),
            ("SUCCEEDED", True),
            ("FAILED", True),
            ("CANCELED", True),
            ("UNKNOWN", True),
        ],
    )
    def test_terminal(self, status: str, terminal: bool) -> None:
        """Polling stops on SUCCEEDED, FAILED, CANCELED and UNKNOWN (DASHSCOPE.md §10.23)."""
        body = {"output": {"task_id": "t", "task_status": status}}
        assert parse_task(200, json.dumps(body).encode()).terminal is terminal

    @pytest.mark.parametrize("body", [b"not json", b"{}", b'{"output": {"task_id": 1}}'])
    def test_malformed(self, body: bytes) -> None:
        """A 2xx body that is not a task is the service's protocol error."""
        with pytest.raises(RemoteProtocolError, match="unexpected body"):
            parse_task(200, body)

    def test_task_page(self) -> None:
        body = {
            "request_id": "r",
            "data": [{"task_id": "a", "status": "RUNNING", "model_name": "paraformer-v2"}],
            "total": 1,
        }
        page = parse_task_page(200, json.dumps(body).encode())
        assert [(t.task_id, t.status) for t in page.data] == [("a", "RUNNING")]
        assert page.total == 1


def _body(code: str, message: str) -> bytes:
    return json.dumps({"request_id": "r", "code": code, "message": message}).encode()


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "body", "kind", "fix"),
        [
            (
                401,
                _body("InvalidApiKey", "Invalid API-key provided."),
                AuthError,
                "DASHSCOPE_API_KEY",
            ),
            (403, _body("AccessDenied", "Access denied."), AuthError, "DASHSCOPE_API_KEY"),
            (
                400,
                _body("InvalidParameter", "send the header X-DashScope-Async: enable."),
                ConfigError,
                "X-DashScope-Async: enable",
            ),
            (
                403,
                _body("AccessDenied", "current user api does not support synchronous calls"),
                ConfigError,
                "X-DashScope-Async: enable",
            ),
            (400, _body("Model.NotExist", "Model not exist."), ConfigError, "paraformer-v2"),
            (404, _body("NotFound", "nope"), ConfigError, "/api/v1"),
            (400, _body("InvalidParameter", "bad speaker_count"), ConfigError, "check the options"),
            (429, _body("Throttling.RateQuota", "slow down"), BatchServiceError, "retry"),
            (503, _body("ServiceUnavailable", "busy"), BatchServiceError, "retry later"),
            (502, b"<html>bad gateway</html>", BatchServiceError, "retry later"),
        ],
    )
    def test_mapping(self, status: int, body: bytes, kind: type[Exception], fix: str) -> None:
        """Each non-2xx maps to one engine error family, one line, naming the fix."""
        error = response_error(status, body, what="submit")
        assert type(error) is kind
        text = str(error)
        assert "\n" not in text
        assert text.startswith("submit: ")
        assert f"HTTP {status}" in text
        assert f"fix: {fix}" in text or fix in text.split("fix: ", 1)[1]
        if isinstance(error, AuthError | BatchServiceError):
            assert error.status == status

    def test_parse_raises_the_mapped_error(self) -> None:
        with pytest.raises(AuthError, match="status of task t"):
            parse_task(401, _body("InvalidApiKey", "no"), what="status of task t")


class TestPollDelays:
    def test_sdk_schedule(self) -> None:
        """1 s, doubling every third poll, capped at 5 s (Transcription.wait)."""
        delays = list(itertools.islice(poll_delays(), 12))
        assert delays == [1, 1, 2, 2, 2, 4, 4, 4, 5, 5, 5, 5]

    def test_custom(self) -> None:
        assert list(itertools.islice(poll_delays(0.5, 1.5, 1), 4)) == [1.0, 1.5, 1.5, 1.5]

    @pytest.mark.parametrize(("initial", "cap", "steps"), [(0, 5, 3), (6, 5, 3), (1, 5, 0)])
    def test_bad(self, initial: float, cap: float, steps: int) -> None:
        with pytest.raises(ValueError, match="initial_s"):
            next(poll_delays(initial, cap, steps))
