"""Rolling output files: a new file per hour or day, and a new one at a size cap.

A :class:`RollingSink` wraps one of the existing append-only sinks
(``adapters.sinks``: TXT, SRT, VTT, JSONL — one ``os.write`` per record, so a
file is always a valid prefix). Before each record it checks the wall clock's
period and the current file's size; a change closes the file (fsync) and the
record goes to a new one. Switching therefore only ever happens *between*
records: no file holds half a line or half a cue, and every file is complete
in its format (a VTT file has its header, SRT cues are numbered from 1).

Names: ``{stream}-{YYYYmmdd-HH}.{ext}`` (hour), ``{stream}-{YYYYmmdd}.{ext}``
(day), ``{stream}.{ext}`` (never). A name that exists already (a restart within
the hour, or the size cap) is never reused — the sinks truncate at open — so
the next part is ``{stem}.1.{ext}``, ``{stem}.2.{ext}``, …

Files open lazily on the first record the format renders, so an idle hour
makes no empty files. The cap is soft: the record that crosses ``max_bytes``
completes its file.

Time: the period comes from an injected wall clock (``clock() -> epoch
seconds``; house rule R9): ``time.time`` in the daemon, a function of the trio
MockClock in tests.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from adapters.sinks.base import text_lines
from adapters.sinks.factory import FORMATS
from engine.events import AudioEvent
from engine.events import Final as FinalEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from adapters.sinks.base import Sink
    from engine.events import Event

__all__ = ["RollingSink", "WallClock", "open_rolling_sinks", "period_stem"]

WallClock: TypeAlias = "Callable[[], float]"
Rotate = Literal["hour", "day", "never"]

_STAMP: Final = {"hour": "%Y%m%d-%H", "day": "%Y%m%d"}


def period_stem(stream: str, epoch_s: float, rotate: Rotate, timezone: str = "utc") -> str:
    """The file stem for a record written at ``epoch_s``: ``lobby-20240101-05`` (hour)."""
    if rotate == "never":
        return stream
    moment = time.gmtime(epoch_s) if timezone == "utc" else time.localtime(epoch_s)
    return f"{stream}-{time.strftime(_STAMP[rotate], moment)}"


def _renders(fmt: str, event: Event) -> bool:
    """Whether the ``fmt`` sink writes something for ``event`` (so a file is worth opening)."""
    if isinstance(event, AudioEvent):
        return False
    if fmt == "jsonl":
        return True
    if fmt in ("txt", "srt", "vtt"):
        return isinstance(event, FinalEvent) and bool(text_lines(event.text))
    return True


class RollingSink:
    """A :class:`~adapters.sinks.base.Sink` that rotates files by period and size.

    Args:
        directory: where files go (created when missing).
        stream: the stream id (the name prefix).
        fmt: ``txt``, ``srt``, ``vtt`` or ``jsonl``.
        clock: wall clock, epoch seconds. It is called from the renderer's worker
            thread, so it must be thread-safe (``time.time`` is).
        rotate: ``hour``, ``day`` or ``never``.
        max_bytes: start a new file once the current one has this many bytes.
        timezone: ``utc`` or ``local`` for the names.

    Not thread-safe; the renderer calls it from one worker thread at a time.

    Raises:
        OSError: from :meth:`write` (the file cannot be created or written) and
            :meth:`close`.
    """

    def __init__(
        self,
        directory: Path,
        stream: str,
        fmt: str,
        *,
        clock: WallClock,
        rotate: Rotate = "hour",
        max_bytes: int | None = None,
        timezone: str = "utc",
    ) -> None:
        self._factory = FORMATS[fmt]
        self.directory = directory
        self.stream = stream
        self.fmt = fmt
        self._clock = clock
        self._rotate: Rotate = rotate
        self._max_bytes = max_bytes
        self._timezone = timezone
        self._sink: Sink | None = None
        self._stem = ""
        self._part = 0
        self.path: Path | None = None
        self.files_opened = 0

    def write(self, event: Event) -> None:
        if not _renders(self.fmt, event):
            return  # the sink would ignore it: no need to look at the clock
        stem = period_stem(self.stream, self._clock(), self._rotate, self._timezone)
        if self._sink is not None and (stem != self._stem or self._full()):
            self.close()
        if self._sink is None:
            self._open(stem)
        assert self._sink is not None
        self._sink.write(event)

    def _full(self) -> bool:
        if self._max_bytes is None or self.path is None:
            return False
        try:
            return self.path.stat().st_size >= self._max_bytes
        except OSError:
            return True  # gone or unreadable: start a fresh file

    def _open(self, stem: str) -> None:
        if stem != self._stem:
            self._stem, self._part = stem, 0
        while True:
            suffix = f".{self._part}" if self._part else ""
            path = self.directory / f"{stem}{suffix}.{self.fmt}"
            self._part += 1
            if not os.path.lexists(path):
                break
        self._sink = self._factory(path)
        self.path = path
        self.files_opened += 1

    def close(self) -> None:
        """Close the current file (flush, fsync). Idempotent; the next record opens a new one."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()

    def __repr__(self) -> str:
        return f"RollingSink({str(self.path or self.directory / self.stream)!r}, {self.fmt})"


def open_rolling_sinks(
    directory: Path,
    stream: str,
    formats: Sequence[str],
    *,
    clock: WallClock,
    rotate: Rotate,
    max_bytes: int | None,
    timezone: str,
) -> list[Sink]:
    """One :class:`RollingSink` per format, after checking the directory is writable.

    Blocking (creates the directory); run it in a thread.

    Raises:
        OSError: the directory cannot be created or written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(13, "not writable", str(directory))
    return [
        RollingSink(
            directory,
            stream,
            fmt,
            clock=clock,
            rotate=rotate,
            max_bytes=max_bytes,
            timezone=timezone,
        )
        for fmt in formats
    ]
