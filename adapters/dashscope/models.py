"""The DashScope speech models Stenograph speaks, and their run-task parameters.

One table says, per model, which protocol it uses, the rate we stream at, its
rate-limit family and which ``run-task`` parameters it accepts, so the engine,
the simulator and the CLI agree (DASHSCOPE.md §3.1, §4.1, §8).
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Final, Literal

import msgspec

from engine.config import RecognitionOptions as RecognitionOptions
from engine.errors import ConfigError

__all__ = [
    "ENDPOINTS",
    "MODELS",
    "ModelSpec",
    "RecognitionOptions",
    "endpoint",
    "get_model",
    "inference_url",
    "realtime_url",
    "run_task_parameters",
]

Family = Literal["paraformer", "fun-asr", "gummy", "livetranslate"]

_ASR_PARAMS: Final = frozenset(
    {
        "language_hints",
        "vocabulary_id",
        "disfluency_removal_enabled",
        "semantic_punctuation_enabled",
        "max_sentence_silence",
        "multi_threshold_mode_enabled",
        "punctuation_prediction_enabled",
        "inverse_text_normalization_enabled",
        "heartbeat",
        "speech_noise_threshold",
    }
)
_GUMMY_PARAMS: Final = frozenset(
    {
        "transcription_enabled",
        "translation_enabled",
        "translation_target_languages",
        "source_language",
        "vocabulary_id",
        "max_end_silence",
        "semantic_punctuation_enabled",
        "disfluency_removal_enabled",
        "heartbeat",
    }
)


class ModelSpec(msgspec.Struct, frozen=True):
    """One model: its protocol, rate, rate-limit family and run-task parameters.

    ``utterance`` models (gummy-chat) recognize one sentence per task: the client
    stops sending at its end and opens a new task for the next one, and a task
    carries at most ``max_task_audio_s`` of audio (DASHSCOPE.md §4.4, §8).
    """

    name: str
    family: Family
    protocol: Literal["inference", "realtime"]
    sample_rate: int
    parameters: frozenset[str]
    translation: bool = False
    languages: tuple[str, ...] = ()
    utterance: bool = False
    max_task_audio_s: float | None = None


MODELS: Final[dict[str, ModelSpec]] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "paraformer-realtime-v2",
            "paraformer",
            "inference",
            16000,
            _ASR_PARAMS,
            languages=("zh", "en", "ja", "yue", "ko", "de", "fr", "ru"),
        ),
        ModelSpec(
            "paraformer-realtime-8k-v2",
            "paraformer",
            "inference",
            8000,
            _ASR_PARAMS,
            languages=("zh",),
        ),
        ModelSpec(
            "fun-asr-realtime",
            "fun-asr",
            "inference",
            16000,
            _ASR_PARAMS,
            languages=("zh", "en", "ja"),
        ),
        ModelSpec(
            "gummy-realtime-v1", "gummy", "inference", 16000, _GUMMY_PARAMS, translation=True
        ),
        ModelSpec(
            "gummy-chat-v1",
            "gummy",
            "inference",
            16000,
            _GUMMY_PARAMS,
            translation=True,
            utterance=True,
            max_task_audio_s=60.0,
        ),
        ModelSpec(
            "qwen3.5-livetranslate-flash-realtime",
            "livetranslate",
            "realtime",
            16000,
            frozenset(),
            translation=True,
        ),
    )
}

ENDPOINTS: Final[dict[str, str]] = {
    "cn": "wss://dashscope.aliyuncs.com",
    "intl": "wss://dashscope-intl.aliyuncs.com",
}


def get_model(name: str) -> ModelSpec:
    """The spec of ``name``, or a ConfigError that lists the known models."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"unknown model {name!r}; fix: use one of {known}") from None


def inference_url(region: str) -> str:
    """The inference WebSocket URL of a region (``cn`` or ``intl``)."""
    try:
        return ENDPOINTS[region] + "/api-ws/v1/inference"
    except KeyError:
        raise ConfigError(f"unknown region {region!r}; fix: use cn or intl") from None


def realtime_url(url: str, model: str) -> str:
    """The realtime endpoint beside the inference endpoint ``url``, for ``model``.

    >>> realtime_url("wss://dashscope.aliyuncs.com/api-ws/v1/inference", "m")
    'wss://dashscope.aliyuncs.com/api-ws/v1/realtime?model=m'
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/inference"):
        path = path[: -len("inference")] + "realtime"
    elif not path.endswith("/realtime"):
        path = "/api-ws/v1/realtime"
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "model"]
    query.append(("model", model))
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, path, urllib.parse.urlencode(query), "")
    )


def endpoint(model: str, url: str) -> str:
    """The URL a stream of ``model`` is served at, given the inference ``url``, without its query.

    Realtime models are served beside the inference endpoint (:func:`realtime_url`);
    the query (keys, fault plans) is dropped so the result can be logged and reported.

    >>> endpoint("paraformer-realtime-v2", "ws://h:1/api-ws/v1/inference?api_key=k")
    'ws://h:1/api-ws/v1/inference'
    """
    spec = MODELS.get(model)
    if spec is not None and spec.protocol == "realtime":
        url = realtime_url(url, model)
    return url.split("?", 1)[0]


def run_task_parameters(
    spec: ModelSpec, options: RecognitionOptions, *, sample_rate: int, audio_format: str = "pcm"
) -> dict[str, Any]:
    """The ``payload.parameters`` of a run-task for ``spec``, with only the options set."""
    if spec.protocol != "inference":
        raise ConfigError(f"{spec.name} uses the realtime protocol, not run-task")
    if sample_rate != spec.sample_rate:
        raise ConfigError(
            f"{spec.name} takes {spec.sample_rate} Hz audio, not {sample_rate} Hz; "
            "fix: let Stenograph resample (do not force the rate)"
        )
    parameters: dict[str, Any] = {"sample_rate": sample_rate, "format": audio_format}
    for name, value in msgspec.structs.asdict(options).items():
        if value is None:
            continue
        if name not in spec.parameters:
            raise ConfigError(f"{spec.name} does not accept the parameter {name!r}")
        parameters[name] = value
    hints = options.language_hints
    if hints and spec.languages:
        unknown = [h for h in hints if h not in spec.languages]
        if unknown:
            raise ConfigError(
                f"{spec.name} does not support language {unknown[0]!r}; "
                f"fix: use one of {', '.join(spec.languages)}"
            )
    return parameters
