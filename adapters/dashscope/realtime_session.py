"""Realtime session configuration: what the client asks for, and what the server accepts.

* :class:`SessionSettings` is ours (strict): the engine's choice of modalities,
  voice, formats, ASR, VAD and translation. :meth:`SessionSettings.to_wire`
  sends every value explicitly (DASHSCOPE.md §10 item 17), so nothing depends on
  the service's or the 1.x SDK's defaults.
* :func:`default_session` and :func:`merge_session` are the server's view
  (lenient, §11 item 11): the session a connection starts with, and how a
  ``session.update`` overlays it — absent keeps, ``null`` resets, legacy
  ``pcm16``/``pcm24`` and ``null`` voice/model pass — then validates it. A
  rejected update leaves the previous session in force.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET

from .realtime_wire import (
    WireCorpus,
    WireSession,
    WireSessionConfig,
    WireTranscription,
    WireTranslation,
    WireTurnDetection,
    WireVoiceClone,
)

__all__ = [
    "ASR_MODEL",
    "Rejection",
    "ServerVad",
    "SessionSettings",
    "TranscriptionSettings",
    "TranslationSettings",
    "VoiceCloneOptions",
    "default_session",
    "merge_session",
]

ASR_MODEL: Final = "qwen3-asr-flash-realtime"
"""The source-transcription model livetranslate runs when ASR is on (§5.2)."""

_MODALITIES: Final = (frozenset({"text"}), frozenset({"text", "audio"}))
_INPUT_FORMATS: Final = frozenset({"pcm", "opus", "pcm16", "pcm24"})  # pcm16/24: 1.x SDK legacy
_OUTPUT_FORMATS: Final = frozenset({"pcm", "pcm16", "pcm24"})
_RATES: Final = (8000, 16000)
_FREQUENCIES: Final = frozenset({"never", "once", "always"})
_CLONE_VOICE: Final = "default"


# ------------------------------------------------------------------ client settings


class ServerVad(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Server-side VAD (``turn_detection.type: server_vad``); defaults as the service's."""

    threshold: float = 0.2
    silence_duration_ms: int = 1000
    prefix_padding_ms: int | None = None

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError("turn_detection.threshold must be within -1.0…1.0")
        if not 200 <= self.silence_duration_ms <= 6000:
            raise ValueError("turn_detection.silence_duration_ms must be 200–6000 ms")
        if self.prefix_padding_ms is not None and self.prefix_padding_ms < 0:
            raise ValueError("turn_detection.prefix_padding_ms must not be negative")


class TranscriptionSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Source-language ASR: ``model=None`` turns it off; ``language=None`` auto-detects."""

    model: str | None = ASR_MODEL
    language: str | None = None


class TranslationSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The target language and hot phrases (source → target)."""

    language: str = "en"
    phrases: dict[str, str] = {}

    def __post_init__(self) -> None:
        if not self.language:
            raise ValueError("translation.language must not be empty")


class VoiceCloneOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    frequency: Literal["never", "once", "always"] = "never"

    def __post_init__(self) -> None:
        if self.frequency not in _FREQUENCIES:
            raise ValueError("voice_clone_options.frequency must be never, once or always")


class SessionSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the client asks of a livetranslate session (DASHSCOPE.md §5.2).

    ``turn_detection=None`` is manual mode (the client commits each turn).
    With ``enable_voice_clone`` and a clone frequency of ``once``/``always`` the
    voice must be ``"default"``.
    """

    modalities: tuple[str, ...] = ("text", "audio")
    voice: str = "Tina"
    sample_rate: int = 16000
    input_audio_format: Literal["pcm", "opus"] = "pcm"
    output_audio_format: Literal["pcm"] = "pcm"
    input_audio_transcription: TranscriptionSettings = TranscriptionSettings()
    turn_detection: ServerVad | None = ServerVad()
    translation: TranslationSettings = TranslationSettings()
    enable_voice_clone: bool = False
    voice_clone_options: VoiceCloneOptions | None = None

    def __post_init__(self) -> None:
        modalities = frozenset(self.modalities)
        if len(modalities) != len(self.modalities) or modalities not in _MODALITIES:
            raise ValueError(
                f"modalities {list(self.modalities)!r} are not supported; "
                "use ('text',) or ('text', 'audio')"
            )
        if self.sample_rate not in _RATES:
            raise ValueError(f"sample_rate must be 8000 or 16000, not {self.sample_rate}")
        if self.input_audio_format not in ("pcm", "opus"):
            raise ValueError("input_audio_format must be pcm or opus")
        if self.output_audio_format != "pcm":
            raise ValueError("output_audio_format must be pcm")
        problem = _clone_problem(
            self.enable_voice_clone,
            None if self.voice_clone_options is None else self.voice_clone_options.frequency,
            self.voice,
        )
        if problem is not None:
            raise ValueError(problem)

    @property
    def audio_output(self) -> bool:
        return "audio" in self.modalities

    def to_wire(self) -> WireSessionConfig:
        """The ``session`` of a ``session.update``, with every value explicit."""
        vad = self.turn_detection
        transcription = self.input_audio_transcription
        translation = self.translation
        return WireSessionConfig(
            modalities=list(self.modalities),
            voice=self.voice,
            sample_rate=self.sample_rate,
            input_audio_format=self.input_audio_format,
            output_audio_format=self.output_audio_format,
            input_audio_transcription=WireTranscription(
                model=transcription.model,  # None is sent as null: ASR off
                language=UNSET if transcription.language is None else transcription.language,
            ),
            turn_detection=None
            if vad is None
            else WireTurnDetection(
                type="server_vad",
                threshold=vad.threshold,
                silence_duration_ms=vad.silence_duration_ms,
                prefix_padding_ms=UNSET if vad.prefix_padding_ms is None else vad.prefix_padding_ms,
            ),
            translation=WireTranslation(
                language=translation.language,
                corpus=WireCorpus(phrases=dict(translation.phrases))
                if translation.phrases
                else UNSET,
            ),
            enable_voice_clone=True if self.enable_voice_clone else UNSET,
            voice_clone_options=UNSET
            if self.voice_clone_options is None
            else WireVoiceClone(frequency=self.voice_clone_options.frequency),
        )


def _clone_problem(enabled: bool | None, frequency: str | None, voice: str | None) -> str | None:
    if not enabled or frequency not in ("once", "always") or voice == _CLONE_VOICE:
        return None
    return (
        f"voice_clone_options.frequency {frequency!r} clones the speaker's voice, so voice "
        f"must be {_CLONE_VOICE!r}, not {voice!r}; use a pre-cloned voice id only with 'never'"
    )


# ------------------------------------------------------------------ server: defaults


def default_session(model: str, session_id: str) -> WireSession:
    """The session a livetranslate connection starts with (the §5.3 ``session.created``)."""
    return WireSession(
        id=session_id,
        model=model,
        modalities=["text", "audio"],
        voice="Cherry" if model.startswith("qwen3-livetranslate") else "Tina",
        sample_rate=16000,
        input_audio_format="pcm",
        output_audio_format="pcm",
        input_audio_transcription=WireTranscription(model=ASR_MODEL),
        turn_detection=_DEFAULT_VAD,
        translation=WireTranslation(language="en"),
    )


_DEFAULT_VAD: Final = WireTurnDetection(
    type="server_vad",
    threshold=0.2,
    prefix_padding_ms=300,
    silence_duration_ms=1000,
    create_response=True,
    interrupt_response=True,
)


# --------------------------------------------------------------- server: merge + check


class Rejection(msgspec.Struct, frozen=True):
    """Why a ``session.update`` was refused: the fields of the ``error`` event."""

    code: str
    message: str
    param: str


def merge_session(
    current: WireSession, update: WireSessionConfig, default: WireSession
) -> WireSession | Rejection:
    """``current`` with ``update`` laid over it, or why the result is invalid.

    Absent fields keep their current value; ``null`` resets a field to
    ``default`` — except ``turn_detection: null`` (manual mode) and
    ``input_audio_transcription: null`` / ``model: null`` (ASR off).
    """
    merged = _overlay(current, update)
    resets: dict[str, Any] = {}
    for name in (
        "modalities",
        "voice",
        "sample_rate",
        "input_audio_format",
        "output_audio_format",
        "translation",
    ):
        if getattr(merged, name) is None:
            resets[name] = getattr(default, name)
    if merged.input_audio_transcription is None:
        resets["input_audio_transcription"] = WireTranscription(model=None)
    translation = resets.get("translation", merged.translation)
    if isinstance(translation, WireTranslation) and translation.language is None:
        fallback = default.translation
        language = fallback.language if isinstance(fallback, WireTranslation) else "en"
        resets["translation"] = msgspec.structs.replace(translation, language=language)
    if isinstance(update.turn_detection, WireTurnDetection):
        # An object after manual mode starts from the defaults; nulls inside reset.
        vad = merged.turn_detection
        if not isinstance(current.turn_detection, WireTurnDetection):
            vad = _overlay(_DEFAULT_VAD, update.turn_detection)
        assert isinstance(vad, WireTurnDetection)
        resets["turn_detection"] = _fill(vad, _DEFAULT_VAD)
    if resets:
        merged = msgspec.structs.replace(merged, **resets)
    problem = _check(merged)
    return merged if problem is None else problem


def _overlay(base: Any, update: Any) -> Any:
    """``base`` with every field ``update`` sets (not UNSET); nested Structs merge."""
    if not isinstance(update, msgspec.Struct):
        return base
    changes: dict[str, Any] = {}
    for name in update.__struct_fields__:
        value = getattr(update, name)
        if value is UNSET:
            continue
        old = getattr(base, name, UNSET)
        if isinstance(value, msgspec.Struct) and isinstance(old, type(value)):
            value = _overlay(old, value)
        changes[name] = value
    return msgspec.structs.replace(base, **changes)


def _fill(vad: WireTurnDetection, default: WireTurnDetection) -> WireTurnDetection:
    """Null or absent VAD fields take the default value."""
    changes = {
        name: getattr(default, name)
        for name in vad.__struct_fields__
        if getattr(vad, name) is None or getattr(vad, name) is UNSET
    }
    return msgspec.structs.replace(vad, **changes) if changes else vad


def _check(session: WireSession) -> Rejection | None:
    modalities = session.modalities
    if (
        not isinstance(modalities, list)
        or len(set(modalities)) != len(modalities)
        or frozenset(modalities) not in _MODALITIES
    ):
        return _invalid(
            "session.modalities",
            f"Invalid modalities: {modalities!r}. "
            "Supported combinations are: ['text'] and ['audio', 'text'].",
        )
    if session.sample_rate not in _RATES:
        return _invalid(
            "session.sample_rate",
            f"Invalid sample_rate: {session.sample_rate!r}. Supported: 8000, 16000.",
        )
    if session.input_audio_format not in _INPUT_FORMATS:
        return _invalid(
            "session.input_audio_format",
            f"Invalid input_audio_format: {session.input_audio_format!r}.",
        )
    if session.output_audio_format not in _OUTPUT_FORMATS:
        return _invalid(
            "session.output_audio_format",
            f"Invalid output_audio_format: {session.output_audio_format!r}.",
        )
    vad = session.turn_detection
    if isinstance(vad, WireTurnDetection):
        problem = _check_vad(vad)
        if problem is not None:
            return problem
    translation = session.translation
    if not isinstance(translation, WireTranslation) or not isinstance(translation.language, str):
        return _invalid("session.translation.language", "translation.language is required.")
    if not translation.language:
        return _invalid("session.translation.language", "translation.language is empty.")
    options = session.voice_clone_options
    frequency = options.frequency if isinstance(options, WireVoiceClone) else None
    if isinstance(frequency, str) and frequency not in _FREQUENCIES:
        return _invalid(
            "session.voice_clone_options.frequency",
            f"Invalid frequency: {frequency!r}. Supported: never, once, always.",
        )
    voice = session.voice if isinstance(session.voice, str) else None
    enabled = session.enable_voice_clone if isinstance(session.enable_voice_clone, bool) else None
    clash = _clone_problem(enabled, frequency if isinstance(frequency, str) else None, voice)
    return None if clash is None else _invalid("session.voice", clash)


def _check_vad(vad: WireTurnDetection) -> Rejection | None:
    if vad.type != "server_vad":
        return _invalid(
            "session.turn_detection.type", f"Invalid turn_detection.type: {vad.type!r}."
        )
    threshold = vad.threshold
    if isinstance(threshold, float | int) and not -1.0 <= threshold <= 1.0:
        return _invalid(
            "session.turn_detection.threshold", f"threshold {threshold} is outside -1.0…1.0."
        )
    silence = vad.silence_duration_ms
    if isinstance(silence, int) and not 200 <= silence <= 6000:
        return _invalid(
            "session.turn_detection.silence_duration_ms",
            f"silence_duration_ms {silence} is outside 200–6000.",
        )
    padding = vad.prefix_padding_ms
    if isinstance(padding, int) and padding < 0:
        return _invalid(
            "session.turn_detection.prefix_padding_ms", "prefix_padding_ms must not be negative."
        )
    return None


def _invalid(param: str, message: str) -> Rejection:
    return Rejection("invalid_value", message, param)
