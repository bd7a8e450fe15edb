"""``[stream.translation]``: what a translating model makes of a daemon stream's speech.

:class:`TranslationSpec` is the table; :func:`translation_problem` checks, when
the file loads, that the stream's model takes those languages (livetranslate:
one target, speech only for some; gummy: its own target table) and names the
key and the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final

import msgspec

from adapters.dashscope.languages import check_gummy_targets, check_target
from adapters.dashscope.models import MODELS
from engine.config import TranslationOptions
from engine.daemon.config_base import StrictTable
from engine.errors import ConfigError
from engine.translation import check_translation

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.dashscope.models import ModelSpec

__all__ = ["TRANSLATING", "TranslationSpec", "translation_problem"]

_Language = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,34}$")]
TRANSLATING: Final = tuple(sorted(n for n, s in MODELS.items() if s.translation))


class TranslationSpec(StrictTable, frozen=True):
    """``[stream.translation]``: what a translating model makes of the stream's speech.

    ``to`` lists the target languages (livetranslate takes exactly one; gummy
    documents one at present); ``from`` is the source language, ``auto`` to let
    the service detect it. ``transcription = false`` keeps the translations
    alone (no source text: the translations then settle the sentences).

    livetranslate only: ``speech`` asks for the translated voice as well, which
    the daemon writes beside the text files as ``{stem}.voice.wav`` (24 kHz
    mono, one file per rolling period); ``voice`` names the voice (needs
    ``speech``); ``phrases`` maps source phrases to fixed translations.
    ``vad-silence-ms`` is the silence that ends a segment (livetranslate's
    server VAD; gummy's ``max_end_silence``), unset for the service default.

    Whether the stream's model takes these languages is checked when the file
    loads (``adapters.dashscope.languages``), not when a stream connects.
    """

    to: Annotated[tuple[_Language, ...], msgspec.Meta(min_length=1)]
    source: str = msgspec.field(default="auto", name="from")
    transcription: bool = True
    speech: bool = False
    voice: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    phrases: dict[str, str] = msgspec.field(default_factory=dict)
    vad_silence_ms: Annotated[int, msgspec.Meta(ge=200, le=6000)] | None = None

    def __post_init__(self) -> None:
        if len(set(self.to)) != len(self.to):
            raise ValueError("translation.to must not repeat a language")
        if not self.source:
            raise ValueError('translation.from must be a language code or "auto"')
        if self.voice is not None and not self.speech:
            raise ValueError(
                "translation.voice needs speech = true (it names the translated voice)"
            )

    def options(self) -> TranslationOptions:
        """The session's :class:`~engine.config.TranslationOptions` (``auto`` is None)."""
        return TranslationOptions(
            targets=self.to,
            source=None if self.source == "auto" else self.source,
            transcription=self.transcription,
            speech=self.speech,
            voice=self.voice,
            phrases=dict(self.phrases),
            vad_silence_ms=self.vad_silence_ms,
        )


def translation_problem(
    spec: ModelSpec, translation: TranslationSpec | None
) -> tuple[str, str] | None:
    """Why ``spec`` cannot do ``translation``, as (key, message), or None.

    ``key`` is relative to the stream (``translation.to``, ``model``…); the
    messages name the fix in the configuration file's terms. The language
    tables are ``adapters.dashscope.languages``'.
    """
    name = spec.name
    if translation is None:
        if spec.protocol == "realtime":
            return "translation", (
                f'{name} translates: it needs a target language; fix: translation = {{ to = ["en"] }}'
            )
        return None
    if not spec.translation:
        return "model", (
            f"{name} does not translate; fix: model = one of {', '.join(TRANSLATING)}, "
            "or remove the translation table"
        )
    options = translation.options()
    checks: list[tuple[str, Callable[[], object]]]
    if spec.protocol == "realtime":
        if len(translation.to) != 1:
            return "translation.to", (
                f"{name} translates into one language per stream, not "
                f"{', '.join(translation.to)}; fix: one language, and a stream per language"
            )
        target = translation.to[0]
        checks = [("translation.to", lambda: check_target(name, target, False))]
        if translation.speech:
            checks.append(("translation.speech", lambda: check_target(name, target, True)))
    else:
        for key, used in (
            ("speech", translation.speech),
            ("voice", translation.voice is not None),
            ("phrases", bool(translation.phrases)),
        ):
            if used:
                return f"translation.{key}", (
                    f"{name} takes no translation {key}; "
                    "fix: use qwen3.5-livetranslate-flash-realtime, or remove it"
                )
        checks = [
            ("translation.from", lambda: check_gummy_targets(name, options.source, ())),
            (
                "translation.to",
                lambda: check_gummy_targets(name, options.source, options.targets),
            ),
        ]
    # Whatever the checks above do not name (they are the same tables, so nothing today).
    checks.append(("translation", lambda: check_translation(spec, options)))
    for key, check in checks:
        try:
            check()
        except ConfigError as exc:
            return key, str(exc).replace(
                "fix: set modalities to text only (no translated speech), or",
                "fix: speech = false, or",
            )
    return None
