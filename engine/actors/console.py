"""The console: one per run, shared by every stream, prints progress for people.

On a terminal the newest partial of the most recently active stream sits on a
status line that is rewritten in place; everything else prints as whole lines
above it. Elsewhere (a pipe, a log file) only whole lines are printed, with no
control characters. The formatting is pure: the lines in
:mod:`engine.actors._consolelines`, the status line in :mod:`engine.actors._statusline`,
what to write when in :class:`ConsoleView`; :func:`run` only moves events from
the channel to the text stream.

In translation mode (``translate=True``, for the speech translation models) a
settled sentence prints as ``Transcript ==> text`` and each final translation as
``Translate ==> [lang] text``, as the vendor's samples do, and the status line
shows the source preview and each language's translation preview side by side.
Without it the console prints exactly what a transcription run always printed,
and ignores translations.

Two outputs (README "Output"): the transcript (finals, and final translations in
translation mode) goes to ``out`` (stdout), so ``steno transcribe a.wav > a.txt``
captures just the text; everything else — errors, reconnects, lost audio,
metrics, the ``done:`` line and the status line — goes to ``err`` (stderr), and
the status line is drawn only when ``err`` is a terminal. With ``err`` left out
both go to ``out``.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, NamedTuple

import structlog
import trio

from engine.actors._consolelines import format_line, is_transcript
from engine.actors._statusline import format_progress, format_status, format_translation_status
from engine.events import Final, Partial, StreamEnded, Translation

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TextIO

    from engine.events import Event

__all__ = ["ERASE_LINE", "ConsoleView", "Write", "run", "shown", "terminal_width"]

ERASE_LINE = "\r\x1b[2K"
"""Back to column 0 and erase the whole line (ANSI EL 2)."""

log = structlog.get_logger()


class Write(NamedTuple):
    """One piece of the console's output and where it goes.

    Attributes:
        text: what to write (never empty).
        transcript: the transcript output (stdout) rather than the status output
            (stderr, where the status line is drawn).
    """

    text: str
    transcript: bool


class _Status:
    """What one stream shows on the status line: its partial, translation previews, progress."""

    __slots__ = ("partial", "previews", "progress")

    def __init__(self) -> None:
        self.partial: Partial | None = None
        self.previews: dict[str, Translation] = {}
        self.progress = ""

    def __bool__(self) -> bool:
        return self.partial is not None or bool(self.previews) or bool(self.progress)


class _Progress:
    """How far the service has got through one file: seconds heard, since when."""

    __slots__ = ("duration_s", "heard_s", "since")

    def __init__(self, duration_s: float, since: float) -> None:
        self.duration_s = duration_s
        self.heard_s = 0.0
        self.since = since


class ConsoleView:
    """What the console shows, as text to write; no I/O.

    Args:
        tty: draw the status line (with ``\\r`` and ANSI erase) or print lines only.
        width: returns the terminal width in columns, asked at each status draw.
        translate: translation mode (see the module docstring); off, the output is
            that of a transcription run and translations are ignored.
        durations: each file's length in seconds, by stream: on a terminal, the
            status line shows how much of it the service has heard and an ETA
            (transcription mode). Times come from the events' ``t``, never a clock.
    """

    def __init__(
        self,
        *,
        tty: bool,
        width: Callable[[], int],
        translate: bool = False,
        durations: Mapping[str, float] | None = None,
    ) -> None:
        self._tty = tty
        self._durations = dict(durations or {}) if tty and not translate else {}
        self._progress: dict[str, _Progress] = {}
        self._width = width
        self._translate = translate
        # Status per stream, least recently updated first.
        self._status: dict[str, _Status] = {}
        # Per stream, languages in the order first seen, so their previews keep
        # their places on the status line from one sentence to the next.
        self._languages: dict[str, dict[str, None]] = {}
        self._status_shown = False

    def render(self, event: Event) -> str:
        """The text to write for ``event`` (may be empty), as one terminal shows both outputs."""
        return "".join(w.text for w in self.writes(event))

    def writes(self, event: Event) -> tuple[Write, ...]:
        """What to write for ``event``, in order, each piece to its output."""
        moved = event.stream in self._durations and self._advance(event)
        if isinstance(event, Partial):
            status = self._touch(event.stream)
            status.partial = event if event.text or event.stash else None
            return _status_writes(self._settle(event.stream))
        if isinstance(event, Translation) and self._translate and not event.final:
            status = self._touch(event.stream)
            self._languages.setdefault(event.stream, {})[event.lang] = None
            if event.text or event.stash:
                status.previews[event.lang] = event
            else:
                status.previews.pop(event.lang, None)
            return _status_writes(self._settle(event.stream))
        if isinstance(event, Final):
            current = self._status.get(event.stream)
            if current and current.partial and current.partial.sentence_id <= event.sentence_id:
                current.partial = None
                self._drop_if_empty(event.stream)
        elif isinstance(event, Translation) and self._translate:
            current = self._status.get(event.stream)
            preview = current.previews.get(event.lang) if current else None
            if current and preview and preview.sentence_id <= event.sentence_id:
                del current.previews[event.lang]
                self._drop_if_empty(event.stream)
        elif isinstance(event, StreamEnded):
            self._status.pop(event.stream, None)
            self._languages.pop(event.stream, None)
            self._progress.pop(event.stream, None)
            self._durations.pop(event.stream, None)
        line = format_line(event, translate=self._translate)
        if line is None:  # a line would redraw the status line anyway
            return _status_writes(self._settle(event.stream)) if moved else ()
        printed = Write(line + "\n", is_transcript(event, translate=self._translate))
        if not self._tty:
            return (printed,)
        # The status line (on the status output) steps aside for the line, then returns.
        return (Write(ERASE_LINE, False), printed, *_status_writes(self._redraw(erase=False)))

    def finish(self) -> str:
        """The text that leaves the terminal clean at the end (erases the status line)."""
        self._status.clear()
        shown, self._status_shown = self._status_shown, False
        return ERASE_LINE if self._tty and shown else ""

    def _advance(self, event: Event) -> bool:
        """Track how much of ``event``'s file was heard; whether its progress text changed."""
        progress = self._progress.get(event.stream)
        if progress is None:
            progress = self._progress[event.stream] = _Progress(
                self._durations[event.stream], event.t
            )
        if isinstance(event, Final):
            progress.heard_s = max(progress.heard_s, event.end / event.rate)
        elif isinstance(event, Partial):
            end = event.words[-1].end if event.words else event.start
            progress.heard_s = max(progress.heard_s, end / event.rate)
        if isinstance(event, StreamEnded):
            return False
        text = format_progress(progress.heard_s, progress.duration_s, event.t - progress.since)
        status = self._status.get(event.stream)
        if status is not None and status.progress == text:
            return False
        self._touch(event.stream).progress = text
        return True

    def _touch(self, stream: str) -> _Status:
        # Moves the stream to the end: the status line shows who spoke last.
        status = self._status.pop(stream, None) or _Status()
        self._status[stream] = status
        return status

    def _drop_if_empty(self, stream: str) -> None:
        if not self._status.get(stream, True):
            del self._status[stream]

    def _settle(self, stream: str) -> str:
        self._drop_if_empty(stream)
        return self._redraw() if self._tty else ""

    def _redraw(self, *, erase: bool = True) -> str:
        head = ERASE_LINE if erase else ""
        if not self._status:
            self._status_shown = False
            return head
        self._status_shown = True
        stream, latest = next(reversed(self._status.items()))
        if not self._translate:  # only translation mode has previews
            return head + format_status(
                latest.partial, self._width(), progress=latest.progress, stream=stream
            )
        order = self._languages.get(stream, {})
        previews = [latest.previews[lang] for lang in order if lang in latest.previews]
        return head + format_translation_status(latest.partial, previews, self._width())


def shown(event: Event, *, tty: bool, translate: bool = False) -> bool:
    """Whether the console can print anything for ``event``; pure.

    Off a terminal only whole lines print: a partial, and a translation that is no
    final one of translation mode, only ever feed the status line (and the progress,
    which is terminal only), so :class:`ConsoleView` writes nothing for them and keeps
    no state a later line reads. Senders use this to leave them out of the console's
    channel: a task wake saved per event, the output unchanged.
    """
    if tty:
        return True
    if isinstance(event, Partial):
        return False
    if isinstance(event, Translation):
        return translate and event.final
    return True


def _status_writes(text: str) -> tuple[Write, ...]:
    return (Write(text, False),) if text else ()


def terminal_width() -> int:
    """Columns of the terminal (``COLUMNS``, then the tty, then 80)."""
    return shutil.get_terminal_size().columns


async def run(
    *,
    inbox: trio.MemoryReceiveChannel[Event],
    out: TextIO,
    err: TextIO | None = None,
    tty: bool,
    translate: bool = False,
    durations: Mapping[str, float] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Print every stream's progress to ``out`` until ``inbox`` ends.

    Args:
        inbox: events of all streams; each renderer sends on its own clone.
        out: the transcript's text stream (stdout); written and flushed, never closed.
        err: the status text stream (stderr): problems, metrics, ``done:`` lines
            and the status line; ``out`` when left out.
        tty: whether ``err`` is a terminal (status line) or not (lines only).
        translate: translation mode: transcripts and translations as the vendor's
            samples print them, translation previews on the status line.
        durations: each file's length by stream, for a per-file progress with
            an ETA on the status line (terminal only; quiet otherwise).

    Channels:
        Closes ``inbox``. Ends when every clone of its send side is closed.

    Error handling:
        If ``out`` fails (a closed pipe), printing stops but the inbox is still
        drained, so the streams, which block on this channel, carry on.

    Cancellation:
        Writes are synchronous, so a cancel never splits one; the status line is
        erased on the way out.
    """
    view = ConsoleView(tty=tty, width=terminal_width, translate=translate, durations=durations)
    to_out = _Writer(out)
    to_err = to_out if err is None or err is out else _Writer(err)
    with structlog.contextvars.bound_contextvars(actor="console"), inbox:
        task_status.started()
        try:
            async for event in inbox:
                for piece in view.writes(event):
                    (to_out if piece.transcript else to_err).write(piece.text)
        finally:
            to_err.write(view.finish())


class _Writer:
    def __init__(self, out: TextIO) -> None:
        self._out: TextIO | None = out

    def write(self, text: str) -> None:
        if not text or self._out is None:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self._out = None
            log.warning("console.output_failed", error=repr(exc))
