"""Batch file transcription over REST: the service's answers, parsed.

Pure (house rule R1), like :mod:`adapters.dashscope.batch`, whose requests these
answer: a task's status (:class:`TaskInfo`), a page of the task list
(:class:`TaskPage`), an error body mapped to ``engine.errors``
(:func:`response_error`), and the SDK's polling schedule (:func:`poll_delays`).
DASHSCOPE.md §6, §7.3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from adapters.dashscope.batch import BATCH_MODELS
from engine.errors import AuthError, ConfigError, RemoteProtocolError, ServerError, StenoError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "TERMINAL_STATUSES",
    "BatchServiceError",
    "SubtaskResult",
    "TaskInfo",
    "TaskPage",
    "TaskSummary",
    "parse_task",
    "parse_task_page",
    "poll_delays",
    "response_error",
]

TERMINAL_STATUSES: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})


class BatchServiceError(ServerError):
    """The service could not take the request now (HTTP 429 or 5xx); worth retrying."""

    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _ErrorBody(msgspec.Struct):
    code: str = ""
    message: str = ""
    request_id: str = ""


_AUTH_CODES: Final = frozenset({"InvalidApiKey", "AccessDenied", "AccessDenied.Unpurchased"})


def response_error(status: int, body: bytes, *, what: str) -> StenoError:
    """The error for a non-2xx response, in one line that names the fix (DASHSCOPE.md §7.3)."""
    try:
        err = msgspec.json.decode(body, type=_ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        err = _ErrorBody(message=body[:200].decode("utf-8", "replace").strip())
    detail = f"HTTP {status}" + (f" {err.code}" if err.code else "")
    detail += f": {err.message}" if err.message else ""
    lowered = f"{err.code} {err.message}".lower()
    if status < 500 and ("synchronous" in lowered or "x-dashscope-async" in lowered):
        # Checked before the key: the real service answers a submit without the
        # header with AccessDenied "does not support synchronous calls".
        return ConfigError(
            f"{what}: the service wants an async submit ({detail}); "
            "fix: send the header X-DashScope-Async: enable"
        )
    if status in (401, 403) or err.code in _AUTH_CODES:
        return AuthError(
            f"{what}: the service rejected the API key ({detail}); "
            "fix: set DASHSCOPE_API_KEY to a valid key",
            status=status,
        )
    if status == 429 or err.code.startswith("Throttling"):
        return BatchServiceError(
            f"{what}: throttled ({detail}); fix: wait and retry, or send fewer requests",
            status=status,
            code=err.code,
        )
    if status >= 500:
        return BatchServiceError(
            f"{what}: the service failed ({detail}); fix: retry later", status=status, code=err.code
        )
    if err.code == "Model.NotExist" or "model" in lowered:
        known = " or ".join(sorted(BATCH_MODELS))
        return ConfigError(f"{what}: unsupported model ({detail}); fix: use {known}")
    if err.code == "UnsupportedOperation":
        return ConfigError(
            f"{what}: the service refused ({detail}); fix: only PENDING tasks can be canceled"
        )
    if status == 404:
        return ConfigError(
            f"{what}: not found ({detail}); fix: check the URL (the API base ends in /api/v1)"
        )
    return ConfigError(
        f"{what}: the service rejected the request ({detail}); fix: check the options"
    )


class SubtaskResult(msgspec.Struct, frozen=True):
    """One file's outcome in a task (``output.results[i]``)."""

    file_url: str = ""
    subtask_status: str = "UNKNOWN"
    transcription_url: str | None = None
    code: str | None = None
    message: str | None = None


class TaskInfo(msgspec.Struct, frozen=True):
    """A task's status as the service reported it (``output`` plus ``request_id``/``usage``)."""

    task_id: str
    task_status: str
    submit_time: str | None = None
    scheduled_time: str | None = None
    end_time: str | None = None
    results: list[SubtaskResult] = msgspec.field(default_factory=list)
    task_metrics: dict[str, int] = msgspec.field(default_factory=dict)
    code: str | None = None
    message: str | None = None
    request_id: str = ""
    usage_duration: int | None = None

    @property
    def terminal(self) -> bool:
        """SUCCEEDED, FAILED, CANCELED or UNKNOWN: polling stops."""
        return self.task_status in TERMINAL_STATUSES


class _Usage(msgspec.Struct):
    duration: int | None = None


class _TaskOutput(msgspec.Struct):
    task_id: str
    task_status: str
    submit_time: str | None = None
    scheduled_time: str | None = None
    end_time: str | None = None
    results: list[SubtaskResult] = msgspec.field(default_factory=list)
    task_metrics: dict[str, int] = msgspec.field(default_factory=dict)
    code: str | None = None
    message: str | None = None


class _TaskBody(msgspec.Struct):
    output: _TaskOutput
    request_id: str = ""
    usage: _Usage | None = None


def _decode(body: bytes, type_: type[msgspec.Struct], what: str) -> object:
    try:
        return msgspec.json.decode(body, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RemoteProtocolError(f"{what}: the service sent an unexpected body ({exc})") from None


def _check(status: int, body: bytes, what: str) -> None:
    if not 200 <= status < 300:
        raise response_error(status, body, what=what)


def parse_task(status: int, body: bytes, *, what: str = "task") -> TaskInfo:
    """The task of a submit, status or cancel response.

    Raises:
        AuthError, ConfigError, BatchServiceError: a non-2xx response (:func:`response_error`).
        RemoteProtocolError: a 2xx body without ``output.task_id``/``task_status``.
    """
    _check(status, body, what)
    parsed = _decode(body, _TaskBody, what)
    assert isinstance(parsed, _TaskBody)
    out = parsed.output
    return TaskInfo(
        **msgspec.structs.asdict(out),
        request_id=parsed.request_id,
        usage_duration=parsed.usage.duration if parsed.usage else None,
    )


class TaskSummary(msgspec.Struct, frozen=True):
    """One row of a task list."""

    task_id: str
    status: str = "UNKNOWN"
    model_name: str = ""
    gmt_create: str | None = None
    end_time: str | None = None


class TaskPage(msgspec.Struct, frozen=True):
    """One page of ``GET /tasks``."""

    data: list[TaskSummary] = msgspec.field(default_factory=list)
    page_no: int = 1
    page_size: int = 10
    total: int = 0
    request_id: str = ""


def parse_task_page(status: int, body: bytes) -> TaskPage:
    """A ``GET /tasks`` response (errors as :func:`parse_task`)."""
    _check(status, body, "list tasks")
    page = _decode(body, TaskPage, "list tasks")
    assert isinstance(page, TaskPage)
    return page


def poll_delays(
    initial_s: float = 1.0, max_s: float = 5.0, increment_steps: int = 3
) -> Iterator[float]:
    """The SDK's polling schedule: the sleep after each status query, for ever.

    ``Transcription.wait`` sleeps ``initial_s`` and doubles the interval on every
    ``increment_steps``-th query, capped at ``max_s``: 1, 1, 2, 2, 2, 4, 4, 4, 5, 5, …
    """
    if not 0 < initial_s <= max_s or increment_steps < 1:
        raise ValueError("need 0 < initial_s <= max_s and increment_steps >= 1")
    wait = initial_s
    step = 0
    while True:
        step += 1
        if wait < max_s and step % increment_steps == 0:
            wait = min(wait * 2, max_s)
        yield wait
