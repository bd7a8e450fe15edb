"""The simulator's batch REST API: submit, poll, cancel, list, and result files.

Served on the simulator's one port beside the WebSocket endpoints (plain HTTP
requests are routed here by ``server.py``; DASHSCOPE.md §1.1, §6, §11 item 14):

=========================================================  ==========================
``POST /api/v1/services/audio/asr/transcription``          submit (``X-DashScope-Async: enable``)
``GET  /api/v1/tasks/{task_id}``                           status (+ results when done)
``POST /api/v1/tasks/{task_id}/cancel``                    cancel a PENDING task
``GET  /api/v1/tasks?page_no=&page_size=&status=&model_name=``  list, newest first
``GET  /results/{task_id}/{n}.json?Expires=…``              a result file (no key: a "signed URL")
``GET  /api/v1/steno/limits``                              the task-start budgets enforced (no key)
=========================================================  ==========================

Theory of operation
-------------------
A submit answers ``PENDING`` at once and starts the task's job in the
submitting connection's nursery (:func:`adapters.http.server.serve_http` keeps that open
after the client has gone), so a task lives exactly as long as the server. The
job waits ``pending_s`` (PENDING), then runs (RUNNING): every file is fetched,
decoded and recognized (``_batchjob.py``), a few at a time, and the task ends
no sooner than ``min_running_s`` (plus ``running_s_per_audio_s`` per second of
audio: slow tasks) after it started — SUCCEEDED when any file succeeded, else
FAILED. All timers are on trio's clock, so tests scale them with ``MockClock``.

Keys are checked like the WebSocket upgrade (the server's ``check_key``):
401 ``InvalidApiKey``. Submits and polls pass per-model token buckets (§8) →
429 ``Throttling.RateQuota``. :class:`RestFault` entries make chosen requests
fail with 429 or 5xx; ``fail_tasks`` makes every task end FAILED.
"""

from __future__ import annotations

import calendar
import math
import random
import re
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog
import trio

from adapters.dashscope.batch import BATCH_MODELS, MAX_FILES
from adapters.http.server import HttpRequest, HttpResponse, json_response, serve_http
from engine.policy import RateLimit, TokenBucket
from engine.ratelimit import LIMITS_PATH, DeclaredLimits

from ._batchjob import SimTask, check_parameters, run_task
from .restconfig import RestConfig, RestFault

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from adapters.recognizers.base import Recognizer

__all__ = ["RestConfig", "RestFault", "RestService"]

_log = structlog.get_logger()

API: Final = "/api/v1"
SUBMIT: Final = API + "/services/audio/asr/transcription"
#: What ``GET /api/v1/steno/limits`` (:data:`engine.ratelimit.LIMITS_PATH`) answers, so a
#: client sizes its task-start budget to this server, not the service: the WebSocket tasks'
#: start budgets per model family; empty: the simulator enforces none.
TASK_START_LIMITS: Final[dict[str, RateLimit]] = {}
_TASK: Final = re.compile(r"^/api/v1/tasks/([^/]+)(/cancel)?/?$")
_RESULT: Final = re.compile(r"^/results/([^/]+)/(\d+)\.json$")
_SUBMIT_RATES: Final = {"paraformer-v2": 20.0, "sensevoice-v1": 10.0}
_QUERY_RATE: Final = 20.0
_ERRORS: Final = {
    400: "InvalidParameter",
    401: "InvalidApiKey",
    403: "AccessDenied",
    404: "NotFound",
    405: "MethodNotAllowed",
    429: "Throttling.RateQuota",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_THROTTLED: Final = "Requests rate limit exceeded, please try again later."


class _Submit(msgspec.Struct):
    model: str
    input: dict[str, Any]
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class RestService:
    """The batch REST API of one simulator; shared by all its HTTP connections.

    Args:
        config: timers, limits and faults.
        recognizer: the simulator's recognizer (the caller owns it).
        check_key: ``(headers, query) -> None | HTTP status``, the server's key check.
    """

    def __init__(
        self,
        config: RestConfig,
        recognizer: Recognizer,
        *,
        check_key: Callable[[Sequence[tuple[bytes, bytes]], str], int | None],
    ) -> None:
        self.config = config
        self.recognizer = recognizer
        self._check_key = check_key
        self.tasks: dict[str, SimTask] = {}
        self._rng = random.Random(config.seed)
        self._limiter = trio.CapacityLimiter(config.parallel_files)
        self._buckets: dict[str, TokenBucket] = {}
        self._fault_hits = [0] * len(config.faults)
        self._t0: float | None = None
        self._epoch = float(calendar.timegm((2026, 1, 1, 0, 0, 0)))

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one HTTP connection (owned and closed); returns when its tasks are done."""
        await serve_http(stream, self.handle, self.config.http)

    async def handle(self, request: HttpRequest, nursery: trio.Nursery) -> HttpResponse:
        """Answer one request; a submit starts its task's job in ``nursery``."""
        if self._t0 is None:
            self._t0 = trio.current_time()
        self._expire()
        route, task_id = _route(request)
        response = self._refuse(request, route)
        if response is None:
            match route:
                case "submit":
                    response = self._submit(request, nursery)
                case "status":
                    response = self._status(request, task_id)
                case "cancel":
                    response = self._cancel(task_id)
                case "list":
                    response = self._list(request)
                case "result":
                    response = self._result(request)
                case "limits":
                    response = json_response(200, DeclaredLimits(TASK_START_LIMITS))
                case _:
                    response = self._error(404 if route == "none" else 405)
        _log.info("rest.request", method=request.method, path=request.path, status=response.status)
        return response

    # ------------------------------------------------------------ checks

    def _refuse(self, request: HttpRequest, route: str) -> HttpResponse | None:
        if route in ("none", "result", "limits"):
            return None
        status = self._check_key(request.headers, request.query)
        if status is not None:
            return self._error(status)
        for i, fault in enumerate(self.config.faults):
            if fault.route in (route, "any"):
                self._fault_hits[i] += 1
                if fault.after < self._fault_hits[i] <= fault.after + fault.count:
                    return self._error(fault.status, "injected fault")
        if self.config.rate_limits and route != "bad-method":
            rate = _SUBMIT_RATES.get(_model_of(request), 10.0) if route == "submit" else _QUERY_RATE
            key = f"{route}:{_model_of(request)}" if route == "submit" else "query"
            bucket = self._buckets.setdefault(key, TokenBucket(RateLimit(rate), self._now()))
            if bucket.try_take(self._now()) > 0:
                return self._error(429, _THROTTLED)
        return None

    def _error(self, status: int, message: str | None = None) -> HttpResponse:
        code = _ERRORS.get(status, "Error")
        return json_response(
            status,
            {"request_id": self._id(), "code": code, "message": message or code},
        )

    # ------------------------------------------------------------ routes

    def _submit(self, request: HttpRequest, nursery: trio.Nursery) -> HttpResponse:
        if (request.header("x-dashscope-async") or "").strip().lower() != "enable":
            return self._error(
                400,
                "This API must be called asynchronously: send the header X-DashScope-Async: enable.",
            )
        try:
            body = msgspec.json.decode(request.body, type=_Submit)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._error(400, f"Bad request body: {exc}")
        model = BATCH_MODELS.get(body.model)
        if model is None:
            return json_response(
                400,
                {"request_id": self._id(), "code": "Model.NotExist", "message": "Model not exist."},
            )
        urls = body.input.get("file_urls")
        if not (isinstance(urls, list) and urls and all(isinstance(u, str) for u in urls)):
            return self._error(400, "input.file_urls must be a non-empty list of URLs.")
        if len(urls) > MAX_FILES:
            return self._error(400, f"input.file_urls takes at most {MAX_FILES} URLs.")
        problem = check_parameters(model, body.parameters)
        if problem:
            return self._error(400, problem)
        task = SimTask(self._id(), model, list(urls), body.parameters, self._now())
        self.tasks[task.task_id] = task
        nursery.start_soon(run_task, task, self.recognizer, self._limiter, self.config)
        _log.info("rest.submitted", task_id=task.task_id, model=model.name, files=len(urls))
        return json_response(200, {"request_id": self._id(), "output": self._output(task, None)})

    def _status(self, request: HttpRequest, task_id: str) -> HttpResponse:
        task = self.tasks.get(task_id)
        if task is None:
            output: dict[str, Any] = {"task_id": task_id, "task_status": "UNKNOWN"}
            return json_response(200, {"request_id": self._id(), "output": output})
        host = request.header("host") or "127.0.0.1"
        payload: dict[str, Any] = {"request_id": self._id(), "output": self._output(task, host)}
        if task.status == "SUCCEEDED":
            payload["usage"] = {"duration": task.billed_s}
        return json_response(200, payload)

    def _cancel(self, task_id: str) -> HttpResponse:
        task = self.tasks.get(task_id)
        if task is None:
            return self._error(404, f"No task {task_id}.")
        if task.status != "PENDING":
            return json_response(
                400,
                {
                    "request_id": self._id(),
                    "code": "UnsupportedOperation",
                    "message": f"Only PENDING tasks can be canceled; this one is {task.status}.",
                },
            )
        task.scope.cancel()
        task.status, task.ended = "CANCELED", self._now()
        return json_response(200, {"request_id": self._id(), "output": self._output(task, None)})

    def _list(self, request: HttpRequest) -> HttpResponse:
        query = _query(request.query)
        try:
            page_no = max(1, int(query.get("page_no", "1")))
            page_size = min(100, max(1, int(query.get("page_size", "10"))))
        except ValueError:
            return self._error(400, "page_no and page_size must be integers.")
        rows = sorted(self.tasks.values(), key=lambda t: t.submitted, reverse=True)
        if "status" in query:
            rows = [t for t in rows if t.status == query["status"]]
        if "model_name" in query:
            rows = [t for t in rows if t.model.name == query["model_name"]]
        page = rows[(page_no - 1) * page_size : page_no * page_size]
        data = [
            {
                "task_id": t.task_id,
                "status": t.status,
                "model_name": t.model.name,
                "gmt_create": self._wall(t.submitted),
                "end_time": self._wall(t.ended),
            }
            for t in page
        ]
        return json_response(
            200,
            {
                "request_id": self._id(),
                "data": data,
                "page_no": page_no,
                "page_size": page_size,
                "total": len(rows),
                "total_page": math.ceil(len(rows) / page_size),
            },
        )

    def _result(self, request: HttpRequest) -> HttpResponse:
        match = _RESULT.match(request.path)
        task = self.tasks.get(match.group(1)) if match else None
        body = task.files.get(int(match.group(2))) if task is not None and match else None
        if body is None:
            return self._error(404, "No such result file.")
        return HttpResponse(200, body)

    # ------------------------------------------------------------ shaping

    def _output(self, task: SimTask, host: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": task.status,
            "submit_time": self._wall(task.submitted),
        }
        if task.scheduled is not None:
            out["scheduled_time"] = self._wall(task.scheduled)
        if task.ended is not None:
            out["end_time"] = self._wall(task.ended)
        if task.subtasks and host is not None:
            expires = int(self._epoch + task.submitted - (self._t0 or 0) + self.config.retention_s)
            results = []
            for i, sub in enumerate(task.subtasks):
                if sub["subtask_status"] == "SUCCEEDED":
                    url = f"http://{host}/results/{task.task_id}/{i}.json?Expires={expires}"
                    sub = {**sub, "transcription_url": url}
                results.append(sub)
            out["results"] = results
            ok = sum(s["subtask_status"] == "SUCCEEDED" for s in task.subtasks)
            out["task_metrics"] = {
                "TOTAL": len(task.subtasks),
                "SUCCEEDED": ok,
                "FAILED": len(task.subtasks) - ok,
            }
        if task.code is not None:
            out["code"], out["message"] = task.code, task.message
        return out

    def _now(self) -> float:
        return trio.current_time()

    def _wall(self, t: float | None) -> str | None:
        """``YYYY-MM-DD HH:MM:SS.mmm``: trio time mapped onto a fixed epoch (no wall clock)."""
        if t is None:
            return None
        seconds = self._epoch + t - (self._t0 if self._t0 is not None else t)
        millis = round(seconds * 1000) % 1000
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}"

    def _id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _expire(self) -> None:
        horizon = self._now() - self.config.retention_s
        for task_id in [k for k, t in self.tasks.items() if t.submitted < horizon]:
            self.tasks.pop(task_id).scope.cancel()


def _route(request: HttpRequest) -> tuple[str, str]:
    path, method = request.path, request.method
    if path.rstrip("/") == SUBMIT:
        return ("submit" if method == "POST" else "bad-method"), ""
    if path.rstrip("/") == API + "/tasks":
        return ("list" if method == "GET" else "bad-method"), ""
    if match := _TASK.match(path):
        if match.group(2):
            return ("cancel" if method == "POST" else "bad-method"), match.group(1)
        return ("status" if method == "GET" else "bad-method"), match.group(1)
    if path.rstrip("/") == LIMITS_PATH:
        return ("limits" if method == "GET" else "bad-method"), ""
    if _RESULT.match(path):
        return ("result" if method == "GET" else "bad-method"), ""
    return "none", ""


def _query(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(query).items() if v}


def _model_of(request: HttpRequest) -> str:
    try:
        return str(msgspec.json.decode(request.body, type=_Submit).model)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
