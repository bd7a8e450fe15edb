"""JSON Lines event log: every non-audio event, one ``encode_jsonl_line`` each.

The file replays into any renderer with :func:`engine.events.decode_jsonl_line`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.sinks.base import AppendOnlyFile
from engine.events import AudioEvent, Final, LifecycleEvent, Translation, encode_jsonl_line

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from engine.events import Event

__all__ = ["JsonlSink"]

DEFAULT_MAX_BUFFERED = 64


def _flushes(event: Event) -> bool:
    # Finals, final translations and lifecycle events (gaps, errors, the end) are
    # what a reader of a crashed run needs; only the high-rate partials and speech
    # markers wait in memory.
    return isinstance(event, Final | LifecycleEvent) or (
        isinstance(event, Translation) and event.final
    )


class JsonlSink:
    """Appends every event except :class:`~engine.events.AudioEvent` subclasses.

    Lines are buffered in memory and written as one record when a final, a final
    translation or a lifecycle event arrives, when ``max_buffered`` lines are
    waiting, and at :meth:`close`. A crash loses at most the buffered lines.

    Raises:
        OSError: from the constructor, :meth:`write` and :meth:`close`. A failed
            flush drops the buffered lines; the file keeps every earlier record.
    """

    def __init__(self, path: Path, *, max_buffered: int = DEFAULT_MAX_BUFFERED) -> None:
        if max_buffered < 1:
            raise ValueError("max_buffered must be at least 1")
        self._file = AppendOnlyFile(path)
        self._max_buffered = max_buffered
        self._buffer: list[bytes] = []

    @property
    def path(self) -> Path:
        return self._file.path

    def touches_file(self, events: Sequence[Event]) -> bool:
        lines = [e for e in events if not isinstance(e, AudioEvent)]
        return (
            any(_flushes(e) for e in lines) or len(self._buffer) + len(lines) >= self._max_buffered
        )

    def write(self, event: Event) -> None:
        if isinstance(event, AudioEvent):
            return
        if self._file.closed:
            raise ValueError(f"{self.path}: write to a closed sink")
        self._buffer.append(encode_jsonl_line(event))
        if _flushes(event) or len(self._buffer) >= self._max_buffered:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines as one record."""
        if self._buffer:
            record = b"".join(self._buffer)
            self._buffer.clear()
            self._file.append(record)

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self.flush()
        finally:
            self._file.close()

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"
