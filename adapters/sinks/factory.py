"""Open a stream's file outputs by format name."""

from __future__ import annotations

import re
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from adapters.sinks.jsonl import JsonlSink
from adapters.sinks.layout import DEFAULT_LAYOUT, CueLayout
from adapters.sinks.subtitles import SrtSink, VttSink
from adapters.sinks.text import TextSink
from engine.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

    from adapters.sinks.base import Sink

__all__ = ["FORMATS", "open_sinks"]

# Format name -> sink class; read-only so nothing can register formats at runtime.
FORMATS: Final[Mapping[str, Callable[[Path], Sink]]] = MappingProxyType(
    {"txt": TextSink, "srt": SrtSink, "vtt": VttSink, "jsonl": JsonlSink}
)

# A language code becomes part of a file name (stem.<lang>.txt): letters, digits,
# "-" and "_" only, so it can neither leave out_dir nor hide the extension.
_LANGUAGE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,34}")


def open_sinks(
    out_dir: Path,
    stem: str,
    formats: Iterable[str],
    languages: Iterable[str] = (),
    *,
    transcript: bool = True,
    layout: CueLayout = DEFAULT_LAYOUT,
) -> list[Sink]:
    """Open ``out_dir/stem.<format>`` for each format, in order (duplicates once).

    With target ``languages`` the subtitles are bilingual (the source line, then
    one line per language, in the order given) and ``txt`` also opens
    ``stem.<lang>.txt`` per language, right after ``stem.txt``.

    Every format and language is checked before any file is created, and if one
    file cannot be opened the ones already open are closed again.

    Args:
        out_dir: the output directory; created when missing.
        stem: the file name without extension.
        formats: names from ``txt``, ``srt``, ``vtt``, ``jsonl`` (case-insensitive).
        languages: translation target languages (duplicates once); empty for a
            transcription-only stream.
        transcript: whether the stream emits source finals (False: translation only).
        layout: line width and lines per cue of ``srt`` and ``vtt`` transcript cues.

    Raises:
        ConfigError: an unknown format, a language that cannot name a file, or a
            file that cannot be created.
    """
    names = list(dict.fromkeys(name.strip().lower() for name in formats))
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise ConfigError(
            f"unknown output format {unknown[0]!r}: valid formats are {', '.join(sorted(FORMATS))}"
        )
    langs = list(dict.fromkeys(lang.strip() for lang in languages))
    bad = [lang for lang in langs if not _LANGUAGE.fullmatch(lang)]
    if bad:
        raise ConfigError(
            f"invalid translation language {bad[0]!r}: use a language code such as en or zh-Hant"
        )
    openers: list[tuple[Path, Callable[[Path], Sink]]] = []
    for name in names:
        path = out_dir / f"{stem}.{name}"
        if name in ("srt", "vtt"):
            cls = SrtSink if name == "srt" else VttSink
            openers.append(
                (path, partial(cls, languages=langs, transcript=transcript, layout=layout))
            )
        else:
            openers.append((path, FORMATS[name]))
        if name == "txt":
            openers.extend(
                (out_dir / f"{stem}.{lang}.txt", partial(TextSink, lang=lang)) for lang in langs
            )
    sinks: list[Sink] = []
    try:
        for path, opener in openers:
            try:
                sinks.append(opener(path))
            except OSError as exc:
                raise ConfigError(
                    f"cannot create output file {path}: {exc.strerror or exc}; fix: check --out"
                ) from exc
    except BaseException:
        for sink in sinks:
            try:
                sink.close()
            except OSError:
                pass
        raise
    return sinks
