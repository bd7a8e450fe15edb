"""The simulator's translator: scripted translations from a fixture table, else a labelled stand-in.

The simulator cannot translate. What it can do honestly is look the recognized
sentence up in a table of known sentences with their translations (the demo
audio's fixture, ``adapters/sim/translations.toml``) and, when the sentence
is not in the table, answer with a **stand-in** that says so in its text:
``[zh stand-in] the recognized words``. A stand-in is never passed off as a
translation; :attr:`Rendition.scripted` tells the two apart.

Recognized text is imperfect (pocketsphinx drops and swaps words), so the
lookup is fuzzy: word sequences are compared with :class:`difflib.SequenceMatcher`
and the best row at or above :data:`MATCH_RATIO` wins. A preview (partial
source text) is matched against the same-length prefix of each row and yields
the same share of the translation's units (words, or characters for languages
written without spaces), so previews grow towards the final translation.

Table format (TOML)::

    [[sentence]]
    en = "the weather today is sunny and warm"
    zh = "今天天气晴朗温暖。"

Any language of a row can be the source of any other.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import msgspec

from engine.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "DEMO_TABLE",
    "MATCH_RATIO",
    "Rendition",
    "ScriptedTranslator",
    "StandInTranslator",
    "Translator",
    "stand_in",
]

MATCH_RATIO: Final = 0.6
"""The least word-sequence similarity at which a recognized sentence matches a row."""

DEMO_TABLE: Final = Path(__file__).with_name("translations.toml")
"""The demo audio's fixture table: package data (``scenarios/audio/`` links to it)."""

_UNSPACED: Final = frozenset({"zh", "ja", "yue", "th", "lo", "km", "my"})
"""Languages written without spaces between words: previews grow by characters."""

_WORD = re.compile(r"[\w']+")


class Rendition(msgspec.Struct, frozen=True):
    """A translation snapshot: ``text`` is settled, ``stash`` the tentative tail.

    ``scripted`` is False for a stand-in (the text then carries its label).
    """

    text: str
    stash: str = ""
    scripted: bool = False


class Translator(Protocol):
    """What the simulator's handlers call; cheap and synchronous."""

    name: str

    def translate(self, source: str, target: str, *, final: bool) -> Rendition:
        """The translation of ``source`` into ``target``; ``final`` False for a preview."""
        ...


def stand_in(source: str, target: str) -> Rendition:
    """The labelled stand-in for a sentence no table knows."""
    text = f"[{target} stand-in] {source}" if source else ""
    return Rendition(text, scripted=False)


class StandInTranslator:
    """Translates nothing: every sentence becomes its labelled stand-in."""

    name = "stand-in"

    def translate(self, source: str, target: str, *, final: bool) -> Rendition:
        return stand_in(source, target)


class ScriptedTranslator:
    """Looks sentences up in a fixture table; falls back to the labelled stand-in.

    Args:
        rows: one mapping per sentence, language code -> text.
    """

    name = "scripted"

    def __init__(self, rows: Sequence[Mapping[str, str]]) -> None:
        self._rows = [dict(row) for row in rows]
        self._words = [{lang: _words(text) for lang, text in row.items()} for row in self._rows]

    @classmethod
    def load(cls, path: Path | str) -> ScriptedTranslator:
        """Read a table file.

        Raises:
            ConfigError: the file is missing or not a valid table.
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the translation table {path}: {exc.strerror or exc}; "
                "fix: pass an existing TOML file"
            ) from None
        try:
            table = msgspec.toml.decode(raw, type=_Table)
        except msgspec.DecodeError as exc:
            raise ConfigError(
                f"bad translation table {path}: {exc}; "
                'fix: use [[sentence]] rows of lang = "text" pairs'
            ) from None
        return cls(table.sentence)

    @classmethod
    def demo(cls) -> Translator:
        """The demo table (package data), else the stand-in."""
        if DEMO_TABLE.is_file():
            return cls.load(DEMO_TABLE)
        return StandInTranslator()

    def languages(self) -> frozenset[str]:
        return frozenset(lang for row in self._rows for lang in row)

    def translate(self, source: str, target: str, *, final: bool) -> Rendition:
        heard = _words(source)
        if not heard:
            return Rendition("", scripted=True)
        best, share = self._match(heard, target, final=final)
        if best is None:
            return stand_in(source, target)
        text = self._rows[best][target]
        if final or share >= 1.0:
            return Rendition(text, scripted=True)
        return _prefix(text, target, share)

    def _match(self, heard: list[str], target: str, *, final: bool) -> tuple[int | None, float]:
        best: int | None = None
        best_ratio = MATCH_RATIO
        share = 0.0
        for index, row in enumerate(self._words):
            if target not in row:
                continue
            for lang, words in row.items():
                if lang == target or not words:
                    continue
                candidate = words if final else words[: len(heard)]
                ratio = difflib.SequenceMatcher(None, heard, candidate, autojunk=False).ratio()
                if ratio > best_ratio or (ratio == best_ratio and best is None):
                    best, best_ratio = index, ratio
                    share = min(1.0, len(heard) / len(words))
        return best, share


class _Table(msgspec.Struct, forbid_unknown_fields=True):
    sentence: list[dict[str, str]]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _prefix(text: str, lang: str, share: float) -> Rendition:
    """The first ``share`` of ``text``'s units as settled text, the next unit as stash."""
    if lang in _UNSPACED:
        units, sep = list(text), ""
    else:
        units, sep = text.split(), " "
    shown = int(len(units) * share)
    settled = sep.join(units[:shown])
    stash = units[shown] if shown < len(units) else ""
    if settled and stash and sep:
        stash = sep + stash
    return Rendition(settled, stash, scripted=True)
