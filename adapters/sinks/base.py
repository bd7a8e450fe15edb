"""The sink interface and the append-only file every sink writes through.

Crash safety: a sink builds each record (a cue, a line, a batch of lines) as bytes
first and hands it to :meth:`AppendOnlyFile.append`, which writes it with one
``os.write`` on an ``O_APPEND`` descriptor. The file on disk is therefore always a
valid prefix of the final file: a crash can lose the records not yet written, never
leave half of one behind. Nothing is ever rewritten, so a record costs O(record)
however long the file grows.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from engine.events import Event

__all__ = ["AppendOnlyFile", "Sink", "text_lines"]

_OPEN_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_TRUNC
    | os.O_APPEND
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


class Sink(Protocol):
    """A synchronous output of one stream's events.

    Sinks do blocking file I/O: the renderer calls them from a worker thread, one
    call at a time, so they need not be thread-safe. Events a sink does not render
    are ignored. A batch for which :meth:`touches_file` is False is written in the
    renderer's own thread (no thread hop: most events, the partials, only render
    into memory or are ignored); still one call at a time.
    """

    def write(self, event: Event) -> None:
        """Render ``event``. Raises ``OSError`` when the output cannot be written."""
        ...

    def touches_file(self, events: Sequence[Event]) -> bool:
        """Whether writing ``events`` (in order, now) may make a system call.

        False only when every write would render into memory or ignore its event
        (pure, cheap; when in doubt, True).
        """
        ...

    def close(self) -> None:
        """Write anything buffered, make the output durable (fsync) and release it. Idempotent."""
        ...


class AppendOnlyFile:
    """A file created fresh (truncated) at open that only ever grows by whole records.

    Args:
        path: the file; missing parent directories are created.

    Raises:
        OSError: the file or its directory cannot be created.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = os.open(path, _OPEN_FLAGS, 0o644)
        self._size = 0

    @property
    def closed(self) -> bool:
        return self._fd is None

    def append(self, record: bytes) -> None:
        """Append one complete record.

        The record goes out in one ``os.write``. A regular file only takes less when
        the disk fills up or a limit is hit; then the rest is retried, and if that
        fails the file is truncated back to the end of the previous record before
        the error propagates, so it stays a valid prefix.

        Raises:
            OSError: the write failed (e.g. ``ENOSPC``); the file is unchanged.
            ValueError: the file is closed.
        """
        if self._fd is None:
            raise ValueError(f"{self.path}: write to a closed sink")
        fd = self._fd
        view = memoryview(record)
        done = 0
        try:
            while done < len(view):
                done += os.write(fd, view[done:])
        except BaseException:
            if done:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._size)
            raise
        self._size += done

    def close(self) -> None:
        """fsync the file and its directory, then close it. Idempotent.

        The descriptor is released even when fsync fails; the error then propagates.
        """
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.path.parent)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def _fsync_dir(directory: Path) -> None:
    # Makes the new file's directory entry durable too. Best effort: some platforms
    # and file systems cannot open or fsync a directory.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def text_lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, stripped; control characters become spaces.

    Recognized text is normally one line; this keeps a stray newline or control
    character from breaking a line-per-record or cue-per-block format.
    """
    lines = (line.translate(_CC_AS_SPACES).strip() for line in text.splitlines())
    return [line for line in lines if line]


_CONTROLS: Final = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
"""Unicode category Cc: 65 code points, fixed for good by Unicode's stability policy
(the tests check it against :mod:`unicodedata`)."""
# One translate (C) rather than a category lookup per character.
_CC_AS_SPACES: Final = str.maketrans(dict.fromkeys(_CONTROLS, " "))
