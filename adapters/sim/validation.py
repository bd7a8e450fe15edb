"""Checking a ``run-task`` the way the service does, before ``task-started``.

Pure: :func:`check_run_task` returns the accepted :class:`TaskSpec` or the
:class:`Rejection` (``task-failed`` code and message) to send instead.
``null``-valued parameters count as absent; unknown parameters are ignored,
as the SDK forwards any keyword the caller passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec

from adapters.dashscope.models import MODELS

if TYPE_CHECKING:
    from adapters.dashscope.messages import RunTaskRequested

__all__ = ["Rejection", "TaskSpec", "check_run_task"]

_FORMATS: Final = frozenset({"pcm", "wav"})
_RATES: Final[dict[str, range]] = {"paraformer-realtime-v2": range(8000, 48001)}
"""Models accepting a range of rates; the others take exactly their table rate."""
_SIMULATED_FAMILIES: Final = frozenset({"paraformer", "fun-asr"})


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted task: what the recognizer and the timers need."""

    task_id: str
    model: str
    audio_format: str
    sample_rate: int
    language: str | None
    heartbeat: bool


class Rejection(msgspec.Struct, frozen=True):
    """A ``task-failed`` reply to a run-task."""

    code: str
    message: str


def check_run_task(request: RunTaskRequested) -> TaskSpec | Rejection:
    """Validate a run-task request (DASHSCOPE.md §11.4)."""
    route = (request.task_group, request.task, request.function)
    if route != ("audio", "asr", "recognition"):
        return Rejection(
            "InvalidParameter",
            "task_group/task/function must be audio/asr/recognition, "
            f"got {'/'.join(str(part) for part in route)}",
        )
    spec = MODELS.get(request.model)
    if spec is None:
        return Rejection("Model.NotExist", f"Model not exist: {request.model!r}")
    if spec.protocol != "inference":
        return Rejection(
            "InvalidParameter",
            f"{spec.name} speaks the realtime protocol (/api-ws/v1/realtime), not run-task",
        )
    if spec.family not in _SIMULATED_FAMILIES:
        return Rejection(
            "Model.NotExist", f"{spec.name} is not available in the simulator (recognition only)"
        )
    params = {k: v for k, v in request.parameters.items() if v is not None}
    audio_format = params.get("format")
    if not isinstance(audio_format, str) or audio_format.lower() not in _FORMATS:
        return Rejection(
            "UNSUPPORTED_FORMAT", f"unsupported audio format {audio_format!r}; use pcm or wav"
        )
    rate = params.get("sample_rate")
    allowed = _RATES.get(spec.name, range(spec.sample_rate, spec.sample_rate + 1))
    if not isinstance(rate, int) or isinstance(rate, bool) or rate not in allowed:
        expected = (
            f"{allowed.start}–{allowed.stop - 1} Hz" if len(allowed) > 1 else f"{allowed.start} Hz"
        )
        return Rejection(
            "InvalidParameter",
            f"sample_rate {rate!r} is not supported by {spec.name} (expected {expected})",
        )
    return TaskSpec(
        task_id=request.task_id,
        model=spec.name,
        audio_format=audio_format.lower(),
        sample_rate=rate,
        language=_first_language(params.get("language_hints")),
        heartbeat=params.get("heartbeat") is True,
    )


def _first_language(hints: Any) -> str | None:
    if isinstance(hints, list) and hints and isinstance(hints[0], str):
        return hints[0]
    return None
