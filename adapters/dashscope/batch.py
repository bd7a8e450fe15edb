"""Batch file transcription over REST (paraformer-v2, sensevoice-v1): the models and the requests.

Pure (house rule R1): requests are built as data (:class:`Request`) — no trio, no
clock, no sockets. The responses are parsed in :mod:`adapters.dashscope.batch_tasks`;
the trio transport is :mod:`adapters.dashscope.batch_http`; the result files are
:mod:`adapters.dashscope.batch_result`; the server role is the simulator's
``adapters/sim/rest.py``. DASHSCOPE.md §6, §7.3, §10 item 23.

The API key never enters this module: the transport adds ``Authorization`` when
it sends, so a :class:`Request` can be logged or compared freely.
"""

from __future__ import annotations

import urllib.parse
from typing import Final, Literal

import msgspec

from engine.config import USER_AGENT
from engine.errors import ConfigError

__all__ = [
    "BATCH_MODELS",
    "HTTP_ENDPOINTS",
    "MAX_FILES",
    "SUBMIT_PATH",
    "URL_SCHEMES",
    "BatchModel",
    "BatchOptions",
    "Request",
    "cancel_request",
    "get_batch_model",
    "list_request",
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
