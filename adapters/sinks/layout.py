"""Laying a sentence out as subtitle cues: lines of at most N characters, cues of at
most M lines, split on word timings. Pure functions, no I/O.

The semantics are the Whisper CLI's ``--max_line_width`` / ``--max_line_count``
(``openai-whisper``'s ``SubtitlesWriter.iterate_result``), applied per sentence:

- Words fill a line greedily while the line stays within ``max_line_width``
  characters; a word that does not fit starts the next line (a word longer than the
  width gets a line of its own, never cut).
- With ``max_lines`` too, a cue holds at most that many lines: the next line starts
  a new cue, timed from its first word's start. So does a word starting more than
  3 s after the previous word's start (Whisper's long pause).
- Without ``max_line_width`` the sentence is one cue with its text's own lines, as
  before; ``max_lines`` alone changes nothing (Whisper: it needs a width).

Unlike Whisper, a cue never spans two sentences: a live sink writes each sentence
once it is final, and waiting for the next one would hold subtitles back.

The text is the final's text, cut at its words (found in order, case-insensitively),
so punctuation, casing and scripts written without spaces come out exactly as the
service sent them. When the words cannot be found in the text, or their times do not
lie in order inside the sentence, the text is cut at its spaces and times are
interpolated by character position: an estimate, the best a sentence without usable
word timings allows.

The first cue starts with the sentence and the last ends with it; in between, cues
follow their words' times and never overlap.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import msgspec

from adapters.sinks.base import text_lines
from adapters.sinks.cues import span_ms
from engine.events import samples_to_ms

if TYPE_CHECKING:
    from engine.events import Final as FinalEvent
    from engine.events import Word

__all__ = ["DEFAULT_LAYOUT", "LONG_PAUSE_MS", "Cue", "CueLayout", "layout_cues"]

LONG_PAUSE_MS: Final = 3000
"""A word starting this long after the previous word's start begins a new cue."""

_TOKEN: Final = re.compile(r"\S+\s*")


class CueLayout(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a sentence becomes cues (see the module docstring).

    Args:
        max_line_width: most characters in a line; None: lines are not wrapped.
        max_lines: most lines in a cue; None: one cue per sentence.

    Raises:
        ValueError: a limit below 1.
    """

    max_line_width: int | None = 42
    max_lines: int | None = 2

    def __post_init__(self) -> None:
        for name in ("max_line_width", "max_lines"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or unset), not {value}")


DEFAULT_LAYOUT: Final = CueLayout()
"""42 characters by 2 lines: the common broadcast limits (EBU, BBC, Netflix)."""


class Cue(msgspec.Struct, frozen=True):
    """One cue: its span in ms (``end_ms > start_ms``) and its text lines."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]


class _Piece(msgspec.Struct, frozen=True):
    begin: int  # offset of the piece in the text
    end: int  # offset where the next piece begins
    start_ms: int
    end_ms: int


def layout_cues(final: FinalEvent, layout: CueLayout = DEFAULT_LAYOUT) -> list[Cue]:
    """The cues of one final sentence, in time order; empty when it has no text."""
    start_ms, end_ms = span_ms(final.start, final.end, final.rate)
    lines = text_lines(final.text)
    if not lines:
        return []
    if layout.max_line_width is None:
        return [Cue(start_ms, end_ms, tuple(lines))]
    text = " ".join(lines)
    pieces = _word_pieces(text, final.words, final.rate, start_ms, end_ms)
    if pieces is None:
        pieces = _spaced_pieces(text, start_ms, end_ms)
    groups = _group(text, pieces, layout.max_line_width, layout.max_lines)
    return _timed(text, groups, start_ms, end_ms)


def _word_pieces(
    text: str, words: tuple[Word, ...], rate: int, start_ms: int, end_ms: int
) -> list[_Piece] | None:
    """The text cut where each word begins, with the words' times; None when the words
    are not all in the text in order or their times are not usable."""
    found: list[tuple[int, int, int]] = []  # (offset, start ms, end ms)
    position = 0
    previous_start = start_ms
    for word in words:
        needle = word.text.strip()
        if not needle:
            continue
        match = re.compile(re.escape(needle), re.IGNORECASE).search(text, position)
        if match is None:
            return None
        w_start, w_end = samples_to_ms(word.start, rate), samples_to_ms(word.end, rate)
        if not previous_start <= w_start <= w_end <= end_ms:
            return None
        found.append((match.start(), w_start, w_end))
        position, previous_start = match.end(), w_start
    if not found:
        return None
    offsets = [0] + [offset for offset, _, _ in found[1:]] + [len(text)]
    return [
        _Piece(offsets[i], offsets[i + 1], w_start, w_end)
        for i, (_, w_start, w_end) in enumerate(found)
    ]


def _spaced_pieces(text: str, start_ms: int, end_ms: int) -> list[_Piece]:
    """The text cut at its spaces, timed by character position within the sentence."""
    length = len(text)

    def at(offset: int) -> int:
        return start_ms + (end_ms - start_ms) * offset // length

    return [
        _Piece(m.start(), m.end(), at(m.start()), at(m.start() + len(m.group().rstrip())))
        for m in _TOKEN.finditer(text)
    ]


def _group(
    text: str, pieces: list[_Piece], width: int, max_lines: int | None
) -> list[list[list[_Piece]]]:
    """Pieces into cues of lines (Whisper's greedy fill; see the module docstring)."""
    cues: list[list[list[_Piece]]] = [[]]
    last_start: int | None = None
    for piece in pieces:
        lines = cues[-1]
        long_pause = (
            max_lines is not None
            and last_start is not None
            and piece.start_ms - last_start > LONG_PAUSE_MS
        )
        if lines and not long_pause and _fits(text, lines[-1][0], piece, width):
            lines[-1].append(piece)
        elif lines and (long_pause or (max_lines is not None and len(lines) >= max_lines)):
            cues.append([[piece]])
        else:
            lines.append([piece])
        last_start = piece.start_ms
    return cues


def _fits(text: str, first: _Piece, piece: _Piece, width: int) -> bool:
    return len(text[first.begin : piece.end].strip()) <= width


def _timed(text: str, groups: list[list[list[_Piece]]], start_ms: int, end_ms: int) -> list[Cue]:
    """Cue spans from their pieces: the first starts with the sentence, the last ends
    with it, each ends where the next starts at the latest and lasts at least 1 ms."""
    starts = [start_ms] + [lines[0][0].start_ms for lines in groups[1:]]
    ends = [lines[-1][-1].end_ms for lines in groups[:-1]] + [end_ms]
    cues: list[Cue] = []
    for i, lines in enumerate(groups):
        begin = max(starts[i], cues[-1].end_ms if cues else start_ms)
        end = ends[i] if i + 1 == len(groups) else min(ends[i], starts[i + 1])
        texts = tuple(text[line[0].begin : line[-1].end].strip() for line in lines)
        cues.append(Cue(begin, max(end, begin + 1), texts))
    return cues
