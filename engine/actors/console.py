"""The console: one per run, shared by every stream, prints progress for people.

On a terminal the newest partial of the most recently active stream sits on a
status line that is rewritten in place; everything else prints as whole lines
above it. Elsewhere (a pipe, a log file) only whole lines are printed, with no
control characters. The formatting is pure (``format_*`` and :class:`ConsoleView`);
:func:`run` only moves events from the channel to the text stream.

In translation mode (``translate=True``, for the speech translation models) a
settled sentence prints as ``Transcript ==> text`` and each final translation as
``Translate ==> [lang] text``, as the vendor's samples do, and the status line
shows the source preview and each language's translation preview side by side.
Without it the console prints exactly what a transcription run always printed,
and ignores translations.
"""

from __future__ import annotations

import shutil
import unicodedata
from typing import TYPE_CHECKING

import structlog
import trio

from engine.events import (
    AudioGap,
    DeviceLost,
    DeviceRestored,
    Final,
    Partial,
    Reconnecting,
    StreamEnded,
    StreamError,
    TaskMetrics,
    Translation,
    samples_to_ms,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TextIO

    from engine.events import Event

__all__ = [
    "ERASE_LINE",
    "ConsoleView",
    "display_width",
    "format_ended",
    "format_error",
    "format_final",
    "format_gap",
    "format_line",
    "format_metrics",
    "format_reconnecting",
    "format_status",
    "format_transcript",
    "format_translation",
    "format_translation_status",
    "run",
    "terminal_width",
]

ERASE_LINE = "\r\x1b[2K"
"""Back to column 0 and erase the whole line (ANSI EL 2)."""

ELLIPSIS = "…"

log = structlog.get_logger()


def _clean(text: str) -> str:
    # Text from the network never reaches the terminal as control sequences.
    return "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text
    ).strip()


def _prefix(stream: str) -> str:
    return f"[{_clean(stream)}] " if stream else ""


def _seconds(samples: int, rate: int) -> str:
    ms = samples_to_ms(samples, rate)
    return f"{ms // 1000}.{ms % 1000:03d}"


def _delay(ms: float | None) -> str:
    return "n/a" if ms is None else f"{round(ms)} ms"


def format_final(event: Final) -> str:
    """``[stream] text``."""
    return f"{_prefix(event.stream)}{_clean(event.text)}"


def format_transcript(event: Final) -> str:
    """``[stream] Transcript ==> text``: a settled sentence in translation mode."""
    return f"{_prefix(event.stream)}Transcript ==> {_clean(event.text)}"


def format_translation(event: Translation) -> str:
    """``[stream] Translate ==> [lang] text``: a final translation."""
    return f"{_prefix(event.stream)}Translate ==> [{_clean(event.lang)}] {_clean(event.text)}"


def format_reconnecting(event: Reconnecting) -> str:
    """``[stream] reconnecting (attempt 2 in 1.5 s): cause``."""
    return (
        f"{_prefix(event.stream)}reconnecting (attempt {event.attempt} in {event.delay:.1f} s): "
        f"{_clean(event.cause)}"
    )


def format_error(event: StreamError) -> str:
    """``[stream] error: message``."""
    return f"{_prefix(event.stream)}error: {_clean(event.message)}"


def format_gap(event: AudioGap) -> str:
    """``[stream] lost audio 12.300–14.100 s (reason)``."""
    span = f"{_seconds(event.start, event.rate)}–{_seconds(event.end, event.rate)}"
    return f"{_prefix(event.stream)}lost audio {span} s ({_clean(event.reason)})"


def format_metrics(event: TaskMetrics) -> str:
    """``[stream] request_id=… first_package_delay=123 ms last_package_delay=456 ms finals=3 audio=10.2 s``."""
    return (
        f"{_prefix(event.stream)}request_id={_clean(event.request_id) or 'n/a'}"
        f" first_package_delay={_delay(event.first_package_delay_ms)}"
        f" last_package_delay={_delay(event.last_package_delay_ms)}"
        f" finals={event.finals} audio={event.audio_ms / 1000:.1f} s"
    )


def format_ended(event: StreamEnded) -> str:
    """``[stream] done: status, N finals, R reconnects, audio lost X ms``."""
    return (
        f"{_prefix(event.stream)}done: {_clean(event.status)}, {event.finals} finals, "
        f"{event.reconnects} reconnects, audio lost {event.audio_lost_ms} ms"
    )


def format_line(event: Event, *, translate: bool = False) -> str | None:
    """The line ``event`` prints on its own (no newline), or None.

    ``translate`` selects translation mode: finals print as transcripts and final
    translations print too; otherwise translations print nothing.
    """
    match event:
        case Final() if _clean(event.text):
            return format_transcript(event) if translate else format_final(event)
        case Translation() if translate and event.final and _clean(event.text):
            return format_translation(event)
        case Reconnecting():
            return format_reconnecting(event)
        case StreamError():
            return format_error(event)
        case AudioGap():
            return format_gap(event)
        case TaskMetrics():
            return format_metrics(event)
        case StreamEnded():
            return format_ended(event)
        case DeviceLost(device, _, cause):
            return (
                f"{_prefix(event.stream)}device {_clean(device)!r} lost ({_clean(cause)}); retrying"
            )
        case DeviceRestored(device, _, outage_s):
            return f"{_prefix(event.stream)}device {_clean(device)!r} back after {outage_s:.1f} s"
        case _:
            return None


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide (CJK) characters 2, combining marks 0."""
    return sum(_char_width(ch) for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def format_status(partial: Partial, width: int) -> str:
    """The status line for ``partial``: ``[stream] text``, at most ``width - 1`` columns.

    The last column stays free, so terminals that wrap on it keep the line single.
    A long text keeps its end, the words just heard, behind a leading ``…``.
    """
    limit = max(width - 1, 1)
    prefix = _prefix(partial.stream)
    text = _clean(partial.text + partial.stash)
    if display_width(prefix + text) <= limit:
        return prefix + text
    room = limit - display_width(prefix) - 1
    if room <= 0:
        return _cut_head(prefix, limit)
    return prefix + ELLIPSIS + _cut_tail(text, room)


STATUS_SEPARATOR = " | "


def format_translation_status(
    partial: Partial | None, previews: Sequence[Translation], width: int
) -> str:
    """The translation-mode status line: ``[stream] source | de: translation | …``.

    The source preview (text and stash) comes first, then each translation
    preview as ``lang: text``, in the order given; either may be absent. The line
    takes at most ``width - 1`` columns. When it is too long the room is shared
    fairly between the parts, and each part cut keeps its end, the newest words,
    behind a leading ``…``, so a long source cannot push the translations off.

    Raises:
        ValueError: neither a partial nor a preview was given.
    """
    first = partial if partial is not None else (previews[0] if previews else None)
    if first is None:
        raise ValueError("a status line needs a partial or a translation preview")
    limit = max(width - 1, 1)
    prefix = _prefix(first.stream)
    labels = [""] if partial is not None else []
    texts = [_clean(partial.text + partial.stash)] if partial is not None else []
    for preview in previews:
        labels.append(f"{_clean(preview.lang)}: ")
        texts.append(_clean(preview.text + preview.stash))
    line = prefix + STATUS_SEPARATOR.join(
        label + text for label, text in zip(labels, texts, strict=True)
    )
    if display_width(line) <= limit:
        return line
    fixed = (
        display_width(prefix)
        + display_width(STATUS_SEPARATOR) * (len(texts) - 1)
        + sum(display_width(label) for label in labels)
    )
    room = limit - fixed
    if room < 2 * len(texts):  # not even "…" and one character each
        return _cut_head(line, limit)
    shares = _fair_shares([display_width(text) for text in texts], room)
    parts = [
        text if display_width(text) <= share else ELLIPSIS + _cut_tail(text, share - 1)
        for text, share in zip(texts, shares, strict=True)
    ]
    return prefix + STATUS_SEPARATOR.join(
        label + part for label, part in zip(labels, parts, strict=True)
    )


def _fair_shares(needs: list[int], room: int) -> list[int]:
    # Max-min fair: the shortest parts take what they need, the rest split what is left.
    shares = [0] * len(needs)
    left = room
    for done, i in enumerate(sorted(range(len(needs)), key=needs.__getitem__)):
        shares[i] = min(needs[i], left // (len(needs) - done))
        left -= shares[i]
    return shares


def _cut_head(text: str, cols: int) -> str:
    used = 0
    for i, ch in enumerate(text):
        used += _char_width(ch)
        if used > cols:
            return text[:i]
    return text


def _cut_tail(text: str, cols: int) -> str:
    used = 0
    for i in range(len(text) - 1, -1, -1):
        used += _char_width(text[i])
        if used > cols:
            return text[i + 1 :]
    return text


class _Status:
    """What one stream shows on the status line: its partial and translation previews."""

    __slots__ = ("partial", "previews")

    def __init__(self) -> None:
        self.partial: Partial | None = None
        self.previews: dict[str, Translation] = {}

    def __bool__(self) -> bool:
        return self.partial is not None or bool(self.previews)


class ConsoleView:
    """What the console shows, as text to write; no I/O.

    Args:
        tty: draw the status line (with ``\\r`` and ANSI erase) or print lines only.
        width: returns the terminal width in columns, asked at each status draw.
        translate: translation mode (see the module docstring); off, the output is
            that of a transcription run and translations are ignored.
    """

    def __init__(self, *, tty: bool, width: Callable[[], int], translate: bool = False) -> None:
        self._tty = tty
        self._width = width
        self._translate = translate
        # Status per stream, least recently updated first.
        self._status: dict[str, _Status] = {}
        # Per stream, languages in the order first seen, so their previews keep
        # their places on the status line from one sentence to the next.
        self._languages: dict[str, dict[str, None]] = {}
        self._status_shown = False

    def render(self, event: Event) -> str:
        """The text to write for ``event`` (may be empty)."""
        if isinstance(event, Partial):
            status = self._touch(event.stream)
            status.partial = event if event.text or event.stash else None
            return self._settle(event.stream)
        if isinstance(event, Translation) and self._translate and not event.final:
            status = self._touch(event.stream)
            self._languages.setdefault(event.stream, {})[event.lang] = None
            if event.text or event.stash:
                status.previews[event.lang] = event
            else:
                status.previews.pop(event.lang, None)
            return self._settle(event.stream)
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
        line = format_line(event, translate=self._translate)
        if line is None:
            return ""
        if not self._tty:
            return line + "\n"
        return ERASE_LINE + line + "\n" + self._redraw(erase=False)

    def finish(self) -> str:
        """The text that leaves the terminal clean at the end (erases the status line)."""
        self._status.clear()
        shown, self._status_shown = self._status_shown, False
        return ERASE_LINE if self._tty and shown else ""

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
        if not self._translate:
            assert latest.partial is not None  # only translation mode has previews
            return head + format_status(latest.partial, self._width())
        order = self._languages.get(stream, {})
        previews = [latest.previews[lang] for lang in order if lang in latest.previews]
        return head + format_translation_status(latest.partial, previews, self._width())


def terminal_width() -> int:
    """Columns of the terminal (``COLUMNS``, then the tty, then 80)."""
    return shutil.get_terminal_size().columns


async def run(
    *,
    inbox: trio.MemoryReceiveChannel[Event],
    out: TextIO,
    tty: bool,
    translate: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Print every stream's progress to ``out`` until ``inbox`` ends.

    Args:
        inbox: events of all streams; each renderer sends on its own clone.
        out: the text stream (usually stderr); written and flushed, never closed.
        tty: whether ``out`` is a terminal (status line) or not (lines only).
        translate: translation mode: transcripts and translations as the vendor's
            samples print them, translation previews on the status line.

    Channels:
        Closes ``inbox``. Ends when every clone of its send side is closed.

    Error handling:
        If ``out`` fails (a closed pipe), printing stops but the inbox is still
        drained, so the streams, which block on this channel, carry on.

    Cancellation:
        Writes are synchronous, so a cancel never splits one; the status line is
        erased on the way out.
    """
    view = ConsoleView(tty=tty, width=terminal_width, translate=translate)
    writer = _Writer(out)
    with structlog.contextvars.bound_contextvars(actor="console"), inbox:
        task_status.started()
        try:
            async for event in inbox:
                writer.write(view.render(event))
        finally:
            writer.write(view.finish())


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
