"""The console's status line: partials and translation previews, cut to the terminal's width.

Pure. Widths are terminal columns (:func:`display_width`: wide CJK characters
take 2, combining marks 0). The last column stays free, so terminals that wrap
on it keep the line single; a part that is cut keeps its end, the words just
heard, behind a leading ``…``.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

from engine.actors._consolelines import clean, stream_prefix

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.events import Partial, Translation

__all__ = [
    "PROGRESS_SEPARATOR",
    "STATUS_SEPARATOR",
    "display_width",
    "format_progress",
    "format_status",
    "format_translation_status",
]

ELLIPSIS = "…"


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide (CJK) characters 2, combining marks 0."""
    return sum(_char_width(ch) for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def format_status(
    partial: Partial | None, width: int, *, progress: str = "", stream: str = ""
) -> str:
    """The status line: ``[stream] progress · text``, at most ``width - 1`` columns.

    The last column stays free, so terminals that wrap on it keep the line single.
    A long text keeps its end, the words just heard, behind a leading ``…``.
    ``progress`` (see :func:`format_progress`) comes first and is never cut; with
    no ``partial`` the line is the progress alone (of ``stream``).
    """
    limit = max(width - 1, 1)
    prefix = stream_prefix(partial.stream if partial is not None else stream)
    if progress:
        prefix += progress + (PROGRESS_SEPARATOR if partial is not None else "")
    text = clean(partial.text + partial.stash) if partial is not None else ""
    if display_width(prefix + text) <= limit:
        return prefix + text
    room = limit - display_width(prefix) - 1
    if room <= 0:
        return _cut_head(prefix, limit)
    return prefix + ELLIPSIS + _cut_tail(text, room)


PROGRESS_SEPARATOR = " · "


def format_progress(heard_s: float, duration_s: float, elapsed_s: float) -> str:
    """``42% ETA 0:13``: how much of a file the service has heard, and when it ends.

    The ETA extrapolates the pace so far (``heard_s`` over ``elapsed_s``); before
    anything is heard it is ``--:--``. The percentage stays below 100 until the
    stream ends (the console then prints its ``done:`` line instead).
    """
    fraction = min(max(heard_s / duration_s, 0.0), 1.0) if duration_s > 0 else 0.0
    percent = min(int(fraction * 100), 99)
    if heard_s <= 0 or elapsed_s <= 0:
        return f"{percent}% ETA --:--"
    remaining = max(duration_s - heard_s, 0.0) * elapsed_s / heard_s
    minutes, seconds = divmod(round(remaining), 60)
    hours, minutes = divmod(minutes, 60)
    eta = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    return f"{percent}% ETA {eta}"


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
    prefix = stream_prefix(first.stream)
    labels = [""] if partial is not None else []
    texts = [clean(partial.text + partial.stash)] if partial is not None else []
    for preview in previews:
        labels.append(f"{clean(preview.lang)}: ")
        texts.append(clean(preview.text + preview.stash))
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
