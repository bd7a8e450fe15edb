"""Open a stream's file outputs by format name."""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from adapters.sinks.jsonl import JsonlSink
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


def open_sinks(out_dir: Path, stem: str, formats: Iterable[str]) -> list[Sink]:
    """Open ``out_dir/stem.<format>`` for each format, in order (duplicates once).

    Every format is checked before any file is created, and if one file cannot be
    opened the ones already open are closed again.

    Args:
        out_dir: the output directory; created when missing.
        stem: the file name without extension.
        formats: names from ``txt``, ``srt``, ``vtt``, ``jsonl`` (case-insensitive).

    Raises:
        ConfigError: an unknown format, or a file that cannot be created.
    """
    names = list(dict.fromkeys(name.strip().lower() for name in formats))
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise ConfigError(
            f"unknown output format {unknown[0]!r}: valid formats are {', '.join(sorted(FORMATS))}"
        )
    sinks: list[Sink] = []
    try:
        for name in names:
            path = out_dir / f"{stem}.{name}"
            try:
                sinks.append(FORMATS[name](path))
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
