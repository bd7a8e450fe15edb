"""Batch file transcription over REST (paraformer-v2, sensevoice-v1): requests and responses.

Pure (house rule R1): requests are built as data (:class:`Request`) and response
bodies are parsed into Structs or mapped to ``engine.errors`` — no trio, no
clock, no sockets. The trio transport is :mod:`adapters.dashscope.batch_http`;
the result files are :mod:`adapters.dashscope.batch_result`; the server role is
the simulator's ``adapters/sim/rest.py``. DASHSCOPE.md §6, §7.3, §10 item 23.

The API key never enters this module: the transport adds ``Authorization`` when
it sends, so a :class:`Request` can be logged or compared freely.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from engine.config import USER_AGENT
from engine.errors import AuthError, ConfigError, RemoteProtocolError, ServerError, StenoError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BATCH_MODELS",
    "HTTP_ENDPOINTS",
    "MAX_FILES",
    "SUBMIT_PATH",
    "TERMINAL_STATUSES",
    "URL_SCHEMES",
    "BatchModel",
    "BatchOptions",
    "BatchServiceError",
    "Request",
    "SubtaskResult",
    "TaskInfo",
    "TaskPage",
    "TaskSummary",
    "cancel_request",
    "get_batch_model",
    "list_request",
    "parse_task",
    "parse_task_page",
    "poll_delays",
    "response_error",
    "status_request",
    "submit_request",
]

HTTP_ENDPOINTS: Final[dict[str, str]] = {
    "cn": "https://dashscope.aliyuncs.com/api/v1",
    "intl": "https://dashscope-intl.aliyuncs.com/api/v1",
}
SUBMIT_PATH: Final = "/services/audio/asr/transcription"
TASKS_PATH: Final = "/tasks"
MAX_FILES: Final = 100
TERMINAL_STATUSES: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})
URL_SCHEMES: Final = frozenset({"http", "https", "oss", "file"})
_JSON: Final = "application/json; charset=utf-8"

_COMMON: Final = frozenset({"language_hints", "channel_id"})


class BatchModel(msgspec.Struct, frozen=True):
    """One batch model: the parameters it takes and the language hints it knows.

    ``languages`` None means any code is accepted (sensevoice: ``auto`` and 50+).
    ``tags``: its result text carries SenseVoice ``<|…|>`` tags.
    """

    name: str
    parameters: frozenset[str]
    languages: tuple[str, ...] | None
    tags: bool = False


BATCH_MODELS: Final[dict[str, BatchModel]] = {
    m.name: m
    for m in (
        BatchModel(
            "paraformer-v2",
            _COMMON
            | {
                "diarization_enabled",
                "speaker_count",
                "vocabulary_id",
                "disfluency_removal_enabled",
                "timestamp_alignment_enabled",
            },
            ("zh", "en", "ja", "yue", "ko", "de", "fr", "ru"),
        ),
        BatchModel("sensevoice-v1", _COMMON, None, tags=True),
    )
}


def get_batch_model(name: str) -> BatchModel:
    """The batch model ``name``, or a ConfigError naming the ones there are."""
    try:
        return BATCH_MODELS[name]
    except KeyError:
        known = " or ".join(sorted(BATCH_MODELS))
        raise ConfigError(
            f"unsupported model {name!r} for batch transcription; fix: use {known}"
        ) from None


class BatchOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional ``parameters`` of a submit; ``None`` means "not sent" (the service default)."""

    language_hints: list[str] | None = None
    channel_id: list[int] | None = None
    diarization_enabled: bool | None = None
    speaker_count: int | None = None
    vocabulary_id: str | None = None
    disfluency_removal_enabled: bool | None = None
    timestamp_alignment_enabled: bool | None = None

    def __post_init__(self) -> None:
        if self.channel_id is not None and (
            not self.channel_id or any(c < 0 for c in self.channel_id)
        ):
            raise ValueError("channel_id must list track indexes ≥ 0")
        if self.speaker_count is not None:
            if not 2 <= self.speaker_count <= 100:
                raise ValueError("speaker_count must be 2–100")
            if not self.diarization_enabled:
                raise ValueError("speaker_count needs diarization_enabled")


class Request(msgspec.Struct, frozen=True):
    """One HTTP request relative to the API base (``…/api/v1``); no credentials inside."""

    method: Literal["GET", "POST"]
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    params: tuple[tuple[str, str], ...] = ()
    what: str = ""
    """What the request does, for error messages (``submit``, ``status of task …``)."""


def _headers(*extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("Accept", _JSON), ("User-Agent", USER_AGENT), *extra)


def submit_request(model: str, file_urls: list[str], options: BatchOptions) -> Request:
    """``POST /services/audio/asr/transcription`` with ``X-DashScope-Async: enable``.

    Raises:
        ConfigError: an unsupported model, 0 or more than 100 URLs, a URL the
            service cannot fetch, or a parameter or language the model does not take.
    """
    spec = get_batch_model(model)
    if not 1 <= len(file_urls) <= MAX_FILES:
        raise ConfigError(
            f"a batch task takes 1–{MAX_FILES} files, not {len(file_urls)}; "
            "fix: split the files into several submits"
        )
    for url in file_urls:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in URL_SCHEMES:
            raise ConfigError(
                f"{url!r} is not a URL the service can fetch; "
                "fix: pass http(s):// or oss:// URLs (upload local files first)"
            )
    parameters: dict[str, object] = {}
    for name, value in msgspec.structs.asdict(options).items():
        if value is None:
            continue
        if name not in spec.parameters:
            raise ConfigError(
                f"{spec.name} does not take the parameter {name!r}; fix: leave it out"
            )
        parameters[name] = value
    hints = options.language_hints or []
    if spec.languages is not None:
        unknown = [h for h in hints if h not in spec.languages]
        if unknown:
            raise ConfigError(
                f"{spec.name} does not support language {unknown[0]!r}; "
                f"fix: use one of {', '.join(spec.languages)}"
            )
    # The SDK's key order: model, parameters, input (DASHSCOPE.md §6.1).
    body = {"model": spec.name, "parameters": parameters, "input": {"file_urls": file_urls}}
    return Request(
        "POST",
        SUBMIT_PATH,
        _headers(("Content-Type", _JSON), ("X-DashScope-Async", "enable")),
        msgspec.json.encode(body),
        what="submit",
    )


def _task_path(task_id: str, *rest: str) -> str:
    if not task_id or "/" in task_id or task_id in {".", ".."}:
        raise ConfigError(f"{task_id!r} is not a task id; fix: pass the id `batch submit` printed")
    return "/".join([TASKS_PATH, urllib.parse.quote(task_id, safe=""), *rest])


def status_request(task_id: str) -> Request:
    """``GET /tasks/{task_id}``."""
    return Request("GET", _task_path(task_id), _headers(), what=f"status of task {task_id}")


def cancel_request(task_id: str) -> Request:
    """``POST /tasks/{task_id}/cancel`` (the service cancels only PENDING tasks)."""
    return Request("POST", _task_path(task_id, "cancel"), _headers(), what=f"cancel {task_id}")


def list_request(
    *, page_no: int = 1, page_size: int = 10, status: str | None = None, model: str | None = None
) -> Request:
    """``GET /tasks?page_no=…&page_size=…[&status=…&model_name=…]``."""
    if page_no < 1 or not 1 <= page_size <= 100:
        raise ConfigError("page_no must be ≥ 1 and page_size 1–100")
    params = [("page_no", str(page_no)), ("page_size", str(page_size))]
    if status is not None:
        params.append(("status", status))
    if model is not None:
        params.append(("model_name", model))
    return Request("GET", TASKS_PATH, _headers(), params=tuple(params), what="list tasks")


# ----------------------------------------------------------------- responses


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
