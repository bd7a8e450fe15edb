"""From a stream's :class:`~engine.config.TranslationOptions` to what each protocol sends.

One place decides, before anything connects, whether a model can do what the
configuration asks (:func:`check_translation`), and turns the options into the
gummy ``run-task`` parameters (:func:`gummy_parameters`, DASHSCOPE.md §4.1) or
the livetranslate ``session.update`` (:func:`realtime_settings`, §5.2), always
with explicit values so nothing depends on a service or SDK default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.dashscope.languages import check_gummy_targets, check_target
from adapters.dashscope.realtime_session import (
    ASR_MODEL,
    ServerVad,
    SessionSettings,
    TranscriptionSettings,
    TranslationSettings,
    VoiceCloneOptions,
)
from engine.errors import ConfigError

if TYPE_CHECKING:
    from adapters.dashscope.models import ModelSpec
    from engine.config import SessionConfig, TranslationOptions

__all__ = ["check_translation", "gummy_parameters", "realtime_settings", "transcribes"]

_TRANSLATING = "gummy-realtime-v1, gummy-chat-v1 or qwen3.5-livetranslate-flash-realtime"


def check_translation(spec: ModelSpec, options: TranslationOptions | None) -> None:
    """Refuse a translation the model cannot do, with the fix, before connecting.

    Raises:
        ConfigError: translation asked of a recognition-only model, a realtime
            model without a target, several targets for livetranslate, translated
            speech from gummy, or a target the model's language table refuses.
    """
    if options is None:
        if spec.protocol == "realtime":
            raise ConfigError(f"{spec.name} translates: it needs a target language; fix: --to LANG")
        return
    if not spec.translation:
        raise ConfigError(f"{spec.name} does not translate; fix: use {_TRANSLATING}")
    if spec.protocol == "realtime":
        if len(options.targets) != 1:
            raise ConfigError(
                f"{spec.name} translates into one language per stream, not "
                f"{', '.join(options.targets)}; fix: pass one --to LANG"
            )
        check_target(spec.name, options.targets[0], options.speech)
        return
    check_gummy_targets(spec.name, options.source, options.targets)
    if options.speech or options.voice_clone is not None:
        raise ConfigError(
            f"{spec.name} returns text only, no translated speech; "
            "fix: use qwen3.5-livetranslate-flash-realtime for a translated voice"
        )
    if options.phrases:
        raise ConfigError(
            f"{spec.name} takes no translation phrases; fix: use a vocabulary_id for hot words"
        )
    if options.image:
        raise ConfigError(
            f"{spec.name} takes no images; fix: use qwen3.5-livetranslate-flash-realtime"
        )


def transcribes(spec: ModelSpec, options: TranslationOptions | None) -> bool:
    """Whether the stream gets source-language text (and finals from it)."""
    return options is None or options.transcription or not spec.translation


def gummy_parameters(options: TranslationOptions | None) -> dict[str, Any]:
    """gummy's run-task parameters for ``options`` (None: transcription only).

    Sent as the Python SDK sends them (§4.1): both switches always, and
    ``source_language`` as an explicit ``null`` for auto-detection.
    """
    if options is None:
        return {
            "transcription_enabled": True,
            "translation_enabled": False,
            "source_language": None,
        }
    params: dict[str, Any] = {
        "transcription_enabled": options.transcription,
        "translation_enabled": True,
        "translation_target_languages": list(options.targets),
        "source_language": options.source,
    }
    if options.vad_silence_ms is not None:
        params["max_end_silence"] = options.vad_silence_ms
    return params


def realtime_settings(config: SessionConfig, spec: ModelSpec) -> SessionSettings:
    """The livetranslate session for ``config`` (checked by :func:`check_translation`)."""
    options = config.translation
    if options is None:  # pragma: no cover - check_translation refuses this first
        raise ConfigError(f"{spec.name} needs a target language; fix: --to LANG")
    vad = (
        ServerVad()
        if options.vad_silence_ms is None
        else ServerVad(silence_duration_ms=options.vad_silence_ms)
    )
    clone = options.voice_clone
    voice = options.voice or ("default" if clone in ("once", "always") else "Tina")
    try:
        return SessionSettings(
            modalities=("text", "audio") if options.speech else ("text",),
            voice=voice,
            enable_voice_clone=clone is not None,
            voice_clone_options=None if clone is None else VoiceCloneOptions(frequency=clone),
            sample_rate=spec.sample_rate,
            input_audio_transcription=TranscriptionSettings(
                model=ASR_MODEL if options.transcription else None, language=options.source
            ),
            turn_detection=vad,
            translation=TranslationSettings(
                language=options.targets[0], phrases=dict(options.phrases)
            ),
        )
    except ValueError as exc:
        raise ConfigError(
            f"bad livetranslate settings: {exc}; fix: check --voice/--voice-clone/--to"
        ) from None
