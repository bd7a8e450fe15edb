"""Plain text transcript: one line per final sentence, of the source or of one translation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.sinks.base import AppendOnlyFile, text_lines
from engine.events import Final, Translation

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from engine.events import Event

__all__ = ["TextSink", "format_text_line"]


def format_text_line(event: Final | Translation) -> str | None:
    """The line for a final or a translation (with newline), or None when it has no text.

    A multi-line text is joined with spaces so each sentence stays one line.
    """
    lines = text_lines(event.text)
    return " ".join(lines) + "\n" if lines else None


class TextSink:
    """Writes one line per sentence (``.txt``, UTF-8) as each arrives.

    Without ``lang`` it writes the source: each :class:`~engine.events.Final`'s
    text. With ``lang`` it writes that language's final
    :class:`~engine.events.Translation` texts instead. Sentences without text are
    skipped; every other event is ignored.

    A language's final translations come in sentence order (each protocol
    translates one sentence after the other), so writing them as they arrive
    keeps the file in order without holding anything. Should one arrive out of
    order all the same, it is still written, and counted.

    Args:
        path: the output file, created fresh.
        lang: the translation language to write, or None for the source.

    Attributes:
        out_of_order: lines written after a line of a later sentence.

    Raises:
        OSError: from the constructor, :meth:`write` and :meth:`close`.
    """

    def __init__(self, path: Path, *, lang: str | None = None) -> None:
        self._file = AppendOnlyFile(path)
        self.lang = lang
        self.out_of_order = 0
        self._last_id: int | None = None

    @property
    def path(self) -> Path:
        return self._file.path

    def touches_file(self, events: Sequence[Event]) -> bool:
        return any(isinstance(e, Final | Translation) for e in events)

    def write(self, event: Event) -> None:
        if self.lang is None:
            if not isinstance(event, Final):
                return
        elif not (isinstance(event, Translation) and event.final and event.lang == self.lang):
            return
        line = format_text_line(event)
        if line is None:
            return
        self._file.append(line.encode())
        if self._last_id is not None and event.sentence_id < self._last_id:
            self.out_of_order += 1
        else:
            self._last_id = event.sentence_id

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        suffix = "" if self.lang is None else f", lang={self.lang!r}"
        return f"TextSink({str(self.path)!r}{suffix})"
