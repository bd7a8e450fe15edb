"""Livetranslate target languages: which ones the model can speak, which only write.

Checked before connecting, so a wrong ``translation.language`` or a text-only
target with audio output is a :class:`~engine.errors.ConfigError` naming the
fix, not a failure in the middle of a session.

Sources — read this before trusting the table:

* ``../shared/protocol/DASHSCOPE.md`` is **silent** on the target-language list:
  it documents only ``translation.language`` (default ``en``) and that
  ``same_language_skip_options`` needs a ``zh``/``en`` target (§5.2).
* ``qwen3-livetranslate-flash-realtime``: Alibaba Cloud Model Studio's page for
  that model ("Supported languages") lists 18 languages, of which 11 have audio
  + text output and 7 text only. [DOC, recalled from the public page, not in
  DASHSCOPE.md] One Chinese edition of the page says "audio in 10 languages"
  while the English one says 11; we list Cantonese as audio-capable.
* ``qwen3.5-livetranslate-flash-realtime``: the public pages state 60 languages,
  29 with audio + text and 31 text only, but neither DASHSCOPE.md nor this repo
  has that list. Until someone records it, the 3.5 table is the qwen3 table
  (assumed a subset: what qwen3 speaks, 3.5 speaks). It is marked incomplete:
  a target outside it is refused with a message that says so, and a qwen3
  text-only target may in fact be speakable on 3.5 — extend the table, don't
  work around the check.
"""

from __future__ import annotations

from typing import Final

import msgspec

from engine.errors import ConfigError

__all__ = ["NAMES", "TARGETS", "TargetTable", "check_target", "targets_for"]

NAMES: Final[dict[str, str]] = {
    "zh": "Chinese",
    "en": "English",
    "ru": "Russian",
    "fr": "French",
    "de": "German",
    "pt": "Portuguese",
    "es": "Spanish",
    "it": "Italian",
    "ko": "Korean",
    "ja": "Japanese",
    "yue": "Cantonese",
    "id": "Indonesian",
    "vi": "Vietnamese",
    "th": "Thai",
    "ar": "Arabic",
    "hi": "Hindi",
    "el": "Greek",
    "tr": "Turkish",
}


class TargetTable(msgspec.Struct, frozen=True):
    """One model's targets; ``complete=False`` means the service knows more than we list."""

    audio: frozenset[str]
    text_only: frozenset[str]
    complete: bool
    source: str

    @property
    def all(self) -> frozenset[str]:
        return self.audio | self.text_only


_QWEN3_AUDIO: Final = frozenset({"zh", "en", "ru", "fr", "de", "pt", "es", "it", "ko", "ja", "yue"})
_QWEN3_TEXT: Final = frozenset({"id", "vi", "th", "ar", "hi", "el", "tr"})

TARGETS: Final[dict[str, TargetTable]] = {
    "qwen3-livetranslate-flash-realtime": TargetTable(
        _QWEN3_AUDIO,
        _QWEN3_TEXT,
        complete=True,
        source="Model Studio docs, qwen3-livetranslate-flash-realtime (18 languages)",
    ),
    "qwen3.5-livetranslate-flash-realtime": TargetTable(
        _QWEN3_AUDIO,
        _QWEN3_TEXT,
        complete=False,
        source="the qwen3 table; the service documents 60 (29 audio + 31 text-only)",
    ),
}


def targets_for(model: str) -> TargetTable:
    """The target table of ``model``, or a ConfigError naming the models that have one."""
    try:
        return TARGETS[model]
    except KeyError:
        known = ", ".join(sorted(TARGETS))
        raise ConfigError(
            f"{model!r} has no target-language table; fix: use one of {known}"
        ) from None


def check_target(model: str, lang: str, want_audio: bool) -> None:
    """Refuse a target ``model`` cannot translate into, or cannot speak when ``want_audio``.

    Raises:
        ConfigError: the model is unknown, the language is not a listed target,
            or it is text-only while audio output is wanted.
    """
    table = targets_for(model)
    if lang not in table.all:
        hint = (
            ""
            if table.complete
            else " (Stenograph's table for this model is incomplete: "
            "if the service lists it, add it to adapters/dashscope/languages.py)"
        )
        raise ConfigError(
            f"{model} cannot translate into {lang!r}{hint}; fix: use one of {_listing(table.all)}"
        )
    if want_audio and lang not in table.audio:
        raise ConfigError(
            f"{model} cannot speak {lang!r} ({NAMES.get(lang, lang)}); "
            f"text-only targets: {_listing(table.text_only)}; "
            f"fix: set modalities to text only (no translated speech), "
            f"or pick an audio target: {_listing(table.audio)}"
        )


def _listing(codes: frozenset[str]) -> str:
    return ", ".join(sorted(codes))
