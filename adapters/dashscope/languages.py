"""Translation languages: livetranslate targets (spoken or written) and gummy pairs.

Checked before connecting, so a wrong ``translation.language``, a text-only
target with audio output, or a gummy source → target pair the service does not
offer is a :class:`~engine.errors.ConfigError` naming the fix, not a failure in
the middle of a session.

Sources (read 2026 from stored copies of the public docs; none of this is in
``../shared/protocol/DASHSCOPE.md``, which documents only ``translation.language``
(default ``en``, §5.2), ``translation_target_languages`` / ``source_language``
(§4.1, "only **one** target is supported at present") and open question 10):

* ``qwen3-livetranslate-flash-realtime`` — 18 codes, 11 audio + text, 7 text
  only. Alibaba Cloud Model Studio, 实时音视频翻译-千问, section 支持的语种
  (https://help.aliyun.com/zh/model-studio/qwen3-livetranslate-flash-realtime,
  "更新时间 2026-02-12"): a table of code → output modality. The same page's
  sample ``main.py`` offers exactly these 11 targets in audio mode and all 18 in
  text mode, and its voice table has a Cantonese voice (Kiki). That page's prose
  says "translate into audio in 10 languages"; the English page
  (https://docs.qwencloud.com/developer-guides/speech/realtime-translation)
  says 11. We follow the table: ``yue`` speaks.
* ``qwen3.5-livetranslate-flash-realtime`` — 60 codes, 29 audio + text, 31 text
  only, verbatim from the "Supported languages" table of Qwen Cloud's
  "Real-time audio and video translation" page
  (https://docs.qwencloud.com/developer-guides/speech/realtime-translation,
  model alias of ``qwen3.5-livetranslate-flash-realtime-2026-05-19``); the
  counts match Alibaba Cloud's page
  (https://www.alibabacloud.com/help/en/model-studio/qwen3-5-livetranslate-flash-realtime).
  Not a superset of qwen3 in modality: ``yue`` and ``el`` are **text only** on
  3.5, while ``id vi th ar hi tr`` gained speech.
* gummy (``gummy-chat-v1``, ``gummy-realtime-v1``) — source → targets from the
  ``translation_target_languages`` row of "Gummy一句话识别、翻译WebSocket API"
  (https://help.aliyun.com/zh/model-studio/sentence-websocket-api, "更新时间
  2026-02-11"): 21 source codes, of which the page lists 14 as recognizable
  (``zh en ja ko yue de fr ru es it pt id ar th``); the other 7 are listed only
  as translation languages. The overview 实时语音识别-Fun-ASR/Gummy/Paraformer
  (https://help.aliyun.com/zh/model-studio/real-time-speech-recognition,
  2026-02-12) lists the same 21 languages for Gummy as a whole.

Not verified:

* That ``gummy-realtime-v1`` takes the full 21-source table. The only
  realtime-specific table found (an undated copy of "Gummy实时语音识别、翻译
  WebSocket API", under help.aliyun.com/zh/model-studio/real-time-speech-
  recognition-and-translation-api-reference) is older and smaller: 10 sources,
  zh → en ja ko, en → zh ja ko, ja ko yue de fr ru it es → zh en — a subset of
  the table here.
  The model cards (help.aliyun.com/zh/model-studio/gummy-realtime-v1 and
  .../gummy-chat-v1) still say "10 languages; zh/en/ja/ko between each other,
  the other 6 into zh or en". We apply the newer table to both models, so a
  pair outside the old subset may still be refused by the realtime service.
* Whether gummy accepts more than one target: the docs say one at present;
  ``TranslationOptions`` allows a list, and this module checks each target.
* Which livetranslate voice speaks which language (the 3.5 voice list is in the
  API reference, not read here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from engine.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "GUMMY",
    "NAMES",
    "TARGETS",
    "GummyTable",
    "TargetTable",
    "check_gummy_targets",
    "check_target",
    "gummy_table",
    "targets_for",
]

NAMES: Final[dict[str, str]] = {
    "zh": "Chinese",
    "en": "English",
    "ar": "Arabic",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "pt": "Portuguese",
    "id": "Indonesian",
    "it": "Italian",
    "ko": "Korean",
    "ru": "Russian",
    "th": "Thai",
    "vi": "Vietnamese",
    "ja": "Japanese",
    "tr": "Turkish",
    "hi": "Hindi",
    "ms": "Malay",
    "nl": "Dutch",
    "ur": "Urdu",
    "nb": "Norwegian Bokmål",
    "sv": "Swedish",
    "da": "Danish",
    "he": "Hebrew",
    "fi": "Finnish",
    "pl": "Polish",
    "is": "Icelandic",
    "cs": "Czech",
    "fil": "Filipino",
    "fa": "Persian",
    "yue": "Cantonese",
    "el": "Greek",
    "af": "Afrikaans",
    "ast": "Asturian",
    "be": "Belarusian",
    "bg": "Bulgarian",
    "bn": "Bengali",
    "bs": "Bosnian",
    "ca": "Catalan",
    "ceb": "Cebuano",
    "et": "Estonian",
    "gl": "Galician",
    "gu": "Gujarati",
    "hr": "Croatian",
    "hu": "Hungarian",
    "jv": "Javanese",
    "kk": "Kazakh",
    "kn": "Kannada",
    "ky": "Kyrgyz",
    "lv": "Latvian",
    "mk": "Macedonian",
    "ml": "Malayalam",
    "mr": "Marathi",
    "pa": "Punjabi",
    "ro": "Romanian",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sw": "Swahili",
    "tg": "Tajik",
    "az": "Azerbaijani",
    "uk": "Ukrainian",
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


def _codes(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


_QWEN3_DOC: Final = (
    "help.aliyun.com/zh/model-studio/qwen3-livetranslate-flash-realtime (支持的语种)"
)
_QWEN35_DOC: Final = (
    "docs.qwencloud.com/developer-guides/speech/realtime-translation (Supported languages)"
)

TARGETS: Final[dict[str, TargetTable]] = {
    "qwen3-livetranslate-flash-realtime": TargetTable(
        _codes("en zh ru fr de pt es it ko ja yue"),
        _codes("id vi th ar hi el tr"),
        complete=True,
        source=f"{_QWEN3_DOC}: 18 languages, 11 audio + text",
    ),
    "qwen3.5-livetranslate-flash-realtime": TargetTable(
        _codes(
            "zh en ar de fr es pt id it ko ru th vi ja tr hi ms nl ur nb sv da he fi pl is cs fil fa"
        ),
        _codes(
            "yue el af ast be bg bn bs ca ceb et gl gu hr hu jv kk kn ky lv mk ml mr pa ro sk sl"
            " sw tg az uk"
        ),
        complete=True,
        source=f"{_QWEN35_DOC}: 60 languages, 29 audio + text",
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


class GummyTable(msgspec.Struct, frozen=True):
    """A gummy model's languages.

    ``pairs`` maps each ``source_language`` the service translates from to the
    ``translation_target_languages`` it offers from it; ``recognized`` are the
    sources it can also transcribe (the rest are documented as translation
    sources only).
    """

    pairs: dict[str, frozenset[str]]
    recognized: frozenset[str]
    source: str

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(self.pairs)

    @property
    def targets(self) -> frozenset[str]:
        """Every target reachable from some source (what an auto-detected source may use)."""
        return frozenset[str]().union(*self.pairs.values())


_GUMMY_DOC: Final = "help.aliyun.com/zh/model-studio/sentence-websocket-api (2026-02-11)"

_GUMMY_PAIRS: Final[dict[str, frozenset[str]]] = {
    "zh": _codes("en ja ko fr de es ru it"),
    "en": _codes("zh ja ko pt fr de ru vi es nl da ar it hi yue tr ms ur id"),
    "ja": _codes("th en zh vi fr it de es"),
    "ko": _codes("th en zh vi fr es ru de"),
    "fr": _codes("th en ja zh vi de it es ru pt"),
    "de": _codes("th en ja zh fr vi ru es it pt"),
    "es": _codes("th en ja zh fr vi it de ru pt"),
    "ru": _codes("th en ja zh fr vi de es it yue pt"),
    "it": _codes("th en ja zh fr vi es ru de"),
    "pt": _codes("en"),
    "id": _codes("en"),
    "ar": _codes("en"),
    "th": _codes("ja vi fr"),
    "hi": _codes("en"),
    "da": _codes("en"),
    "ur": _codes("en"),
    "tr": _codes("en"),
    "nl": _codes("en"),
    "ms": _codes("en"),
    "vi": _codes("ja fr"),
    "yue": _codes("zh en"),
}
_GUMMY_RECOGNIZED: Final = _codes("zh en ja ko yue de fr ru es it pt id ar th")

GUMMY: Final[dict[str, GummyTable]] = {
    "gummy-chat-v1": GummyTable(
        _GUMMY_PAIRS, _GUMMY_RECOGNIZED, source=f"{_GUMMY_DOC}: 21 sources"
    ),
    "gummy-realtime-v1": GummyTable(
        _GUMMY_PAIRS,
        _GUMMY_RECOGNIZED,
        source=f"assumed as gummy-chat-v1, {_GUMMY_DOC}; the realtime page found lists a "
        "10-source subset",
    ),
}


def gummy_table(model: str) -> GummyTable:
    """The language table of gummy ``model``, or a ConfigError naming the gummy models."""
    try:
        return GUMMY[model]
    except KeyError:
        known = ", ".join(sorted(GUMMY))
        raise ConfigError(
            f"{model!r} has no gummy language table; fix: use one of {known}"
        ) from None


def check_gummy_targets(model: str, source: str | None, targets: Iterable[str]) -> None:
    """Refuse a source or a source → target pair gummy ``model`` does not translate.

    ``source`` None is auto-detection: each target must then be reachable from
    some source (which pair applies depends on what the service detects).

    Raises:
        ConfigError: the model is not gummy, the source is not one the service
            takes, or a target is not offered from that source (from any, when
            the source is auto-detected).
    """
    table = gummy_table(model)
    if source is not None and source not in table.pairs:
        raise ConfigError(
            f"{model} cannot take source language {source!r}; "
            f"fix: use one of {_listing(table.sources)}, or leave the source unset (auto-detect)"
        )
    for target in targets:
        if source is None:
            if target not in table.targets:
                raise ConfigError(
                    f"{model} cannot translate into {target!r} from any source; "
                    f"fix: use one of {_listing(table.targets)}"
                )
            continue
        allowed = table.pairs[source]
        if target not in allowed:
            raise ConfigError(
                f"{model} cannot translate {source!r} ({NAMES.get(source, source)}) "
                f"into {target!r}; fix: from {source} use one of {_listing(allowed)}"
            )


def _listing(codes: Iterable[str]) -> str:
    return ", ".join(sorted(codes))
