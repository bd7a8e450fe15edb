"""Plain text transcript: one line per final sentence."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.sinks.base import AppendOnlyFile, text_lines
from engine.events import Final

if TYPE_CHECKING:
    from pathlib import Path

    from engine.events import Event

__all__ = ["TextSink", "format_text_line"]


def format_text_line(final: Final) -> str | None:
    """The line for ``final`` (with newline), or None when it has no text.

    A multi-line text is joined with spaces so each final stays one line.
    """
    lines = text_lines(final.text)
    return " ".join(lines) + "\n" if lines else None


class TextSink:
    """Writes each :class:`~engine.events.Final`'s text as one line (``.txt``, UTF-8).

    Finals without text are skipped; every other event is ignored.

    Raises:
        OSError: from the constructor, :meth:`write` and :meth:`close`.
    """

    def __init__(self, path: Path) -> None:
        self._file = AppendOnlyFile(path)

    @property
    def path(self) -> Path:
        return self._file.path

    def write(self, event: Event) -> None:
        if isinstance(event, Final) and (line := format_text_line(event)) is not None:
            self._file.append(line.encode())

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"TextSink({str(self.path)!r})"
