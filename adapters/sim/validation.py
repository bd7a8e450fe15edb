"""Checking a ``run-task`` the way the service does, before ``task-started``.

Pure: :func:`check_run_task` returns the accepted :class:`TaskSpec` or the
:class:`Rejection` (``task-failed`` code and message) to send instead.
``null``-valued parameters count as absent; unknown parameters are ignored,
as the SDK forwards any keyword the caller passes.

gummy (DASHSCOPE.md §4.1) gets its parameters checked as well; they land on
:attr:`TaskSpec.gummy`. What the service does with some combinations is not
documented; the simulator's answers are guesses, marked *[guess]*:

* both ``transcription_enabled`` and ``translation_enabled`` false → the task
  would produce nothing: ``InvalidParameter`` *[guess]*;
* ``translation_enabled`` true without a target language → ``InvalidParameter``
  *[guess]*; targets given while translation is off are ignored;
* ``translation_target_languages``: the NLS SDK docs say the service supports
  one target at present (§13.10); the simulator accepts a list and translates
  into each (duplicates dropped) *[guess]*. Codes are checked for shape only
  (``en``, ``zh``, ``yue``, ``zh-TW``): ``adapters/dashscope/languages.py``
  holds only a *recalled* livetranslate table and none for gummy, so no list of
  supported pairs is enforced;
* ``source_language``: a code, ``"auto"`` or ``null`` (what the Python SDK
  sends when unset) — the last two mean auto-detection;
* ``max_end_silence`` 200–6000 ms (as documented); a boolean switch that is not
  a boolean, or a ``vocabulary_id`` that is not a string, is ``InvalidParameter``;
* sample rates 16–48 kHz *[guess: the docs and demos use 16 kHz; the service
  accepts higher rates for its other 16 kHz models]*.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

import msgspec

from adapters.dashscope.models import MODELS

if TYPE_CHECKING:
    from adapters.dashscope.messages import RunTaskRequested

__all__ = ["GummyOptions", "Rejection", "TaskSpec", "check_run_task"]

_FORMATS: Final = frozenset({"pcm", "wav"})
_RATES: Final[dict[str, range]] = {
    "paraformer-realtime-v2": range(8000, 48001),
    "gummy-realtime-v1": range(16000, 48001),
    "gummy-chat-v1": range(16000, 48001),
}
"""Models accepting a range of rates; the others take exactly their table rate."""
_SIMULATED_FAMILIES: Final = frozenset({"paraformer", "fun-asr", "gummy"})
_END_SILENCE_MS: Final = range(200, 6001)
_LANGUAGE_CODE: Final = re.compile(r"[a-z]{2,3}(-[A-Za-z]{2,4})?")
_GUMMY_SWITCHES: Final = (
    "transcription_enabled",
    "translation_enabled",
    "semantic_punctuation_enabled",
    "disfluency_removal_enabled",
)


class GummyOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The accepted gummy settings of a task (DASHSCOPE.md §4.1).

    ``targets`` is empty when translation is off; ``max_end_silence_ms`` is
    None when the client left the service default. ``utterance`` is True for
    gummy-chat: one sentence per task.
    """

    transcription: bool = True
    targets: tuple[str, ...] = ()
    vocabulary_id: str | None = None
    max_end_silence_ms: int | None = None
    semantic_punctuation: bool = False
    disfluency_removal: bool = False
    utterance: bool = False


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted task: what the recognizer and the timers need.

    ``language`` is the first ``language_hints`` entry (paraformer, fun-asr) or
    the ``source_language`` (gummy); ``gummy`` is None for the recognition-only
    models, whose results are ``output.sentence`` objects.
    """

    task_id: str
    model: str
    audio_format: str
    sample_rate: int
    language: str | None
    heartbeat: bool
    gummy: GummyOptions | None = None


class Rejection(msgspec.Struct, frozen=True):
    """A ``task-failed`` reply to a run-task."""

    code: str
    message: str


def check_run_task(request: RunTaskRequested) -> TaskSpec | Rejection:
    """Validate a run-task request (DASHSCOPE.md §11.4, gummy §4.1)."""
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
    language = _first_language(params.get("language_hints"))
    gummy: GummyOptions | None = None
    if spec.family == "gummy":
        checked = _check_gummy(spec.name, params)
        if isinstance(checked, Rejection):
            return checked
        gummy, language = checked
    return TaskSpec(
        task_id=request.task_id,
        model=spec.name,
        audio_format=audio_format.lower(),
        sample_rate=rate,
        language=language,
        heartbeat=params.get("heartbeat") is True,
        gummy=gummy,
    )


def _check_gummy(model: str, params: dict[str, Any]) -> tuple[GummyOptions, str | None] | Rejection:
    """gummy's parameters (nulls already removed): the options and the source language."""
    for name in _GUMMY_SWITCHES:
        value = params.get(name)
        if value is not None and not isinstance(value, bool):
            return _invalid(f"{name} must be true or false, got {value!r}")
    transcription = params.get("transcription_enabled", True)
    translation = params.get("translation_enabled", False)
    if not transcription and not translation:
        return _invalid(
            "transcription_enabled and translation_enabled are both false: "
            "the task would produce nothing; enable at least one"
        )
    targets: tuple[str, ...] = ()
    if translation:
        raw = params.get("translation_target_languages")
        if not isinstance(raw, list) or not raw:
            return _invalid(
                "translation_enabled needs translation_target_languages, "
                f'a non-empty list of language codes such as ["en"]; got {raw!r}'
            )
        for code in raw:
            if not isinstance(code, str) or not _LANGUAGE_CODE.fullmatch(code):
                return _invalid(
                    f"translation_target_languages: {code!r} is not a language code "
                    '(such as "en", "zh", "ja")'
                )
        targets = tuple(dict.fromkeys(raw))
    source = params.get("source_language")
    if source is not None and (
        not isinstance(source, str) or (source != "auto" and not _LANGUAGE_CODE.fullmatch(source))
    ):
        return _invalid(
            f'source_language {source!r} is not a language code (such as "zh"), "auto" or null'
        )
    vocabulary_id = params.get("vocabulary_id")
    if vocabulary_id is not None and not isinstance(vocabulary_id, str):
        return _invalid(f"vocabulary_id must be a string, got {vocabulary_id!r}")
    silence = params.get("max_end_silence")
    if silence is not None and (
        not isinstance(silence, int) or isinstance(silence, bool) or silence not in _END_SILENCE_MS
    ):
        return _invalid(f"max_end_silence must be an integer of 200–6000 ms, got {silence!r}")
    options = GummyOptions(
        transcription=transcription,
        targets=targets,
        vocabulary_id=vocabulary_id,
        max_end_silence_ms=silence,
        semantic_punctuation=params.get("semantic_punctuation_enabled", False),
        disfluency_removal=params.get("disfluency_removal_enabled", False),
        utterance=MODELS[model].utterance,  # one sentence per task (DASHSCOPE.md §4.4)
    )
    return options, None if source in (None, "auto") else source


def _invalid(message: str) -> Rejection:
    return Rejection("InvalidParameter", message)


def _first_language(hints: Any) -> str | None:
    if isinstance(hints, list) and hints and isinstance(hints[0], str):
        return hints[0]
    return None
