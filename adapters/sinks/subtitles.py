"""SubRip (``.srt``) and WebVTT (``.vtt``) subtitles: one cue per final sentence.

Cue times come from the stream's global timeline, so cues stay continuous across
reconnects and rotations. A long sentence is laid out in lines of at most
``max_line_width`` characters and cues of at most ``max_lines`` lines, split on its
word timings (:mod:`adapters.sinks.layout`; 42 x 2 by default). All the cues of a
sentence are written as one record.

Bilingual subtitles: given target languages, a cue shows the source line, then
one line per language in the order given. Translations may arrive before or after
their sentence's final, so sentences wait in a bounded
:class:`~adapters.sinks.cues.SentenceHold` until complete; a cue written without
every translation is counted in :attr:`CueSink.incomplete_cues`, and a result that
came after its cue was written in :attr:`CueSink.late_results`. The held cues are
the only state in memory: a crash loses at most those, and the file stays a valid
prefix.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from adapters.sinks.base import AppendOnlyFile, text_lines
from adapters.sinks.cues import DEFAULT_MAX_HELD, SentenceHold, span_ms
from adapters.sinks.layout import DEFAULT_LAYOUT, Cue, CueLayout, layout_cues
from engine.events import Final, Translation

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from adapters.sinks.cues import Sentence
    from engine.events import Event

__all__ = [
    "CueSink",
    "SrtSink",
    "VttSink",
    "cue_span_ms",
    "format_srt_cue",
    "format_timestamp",
    "format_vtt_cue",
]


def format_timestamp(ms: int, *, decimal: str) -> str:
    """``HH:MM:SS<decimal>mmm``; hours grow past two digits rather than wrap.

    >>> format_timestamp(3_723_004, decimal=",")
    '01:02:03,004'
    """
    if ms < 0:
        raise ValueError(f"a subtitle time cannot be negative: {ms} ms")
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal}{millis:03d}"


def cue_span_ms(final: Final) -> tuple[int, int]:
    """Start and end of ``final``'s cue in ms; a zero-length sentence lasts 1 ms.

    Players and validators reject cues that end where they start.
    """
    return span_ms(final.start, final.end, final.rate)


def format_srt_cue(index: int, start_ms: int, end_ms: int, lines: Sequence[str]) -> str:
    """One SubRip cue, ending with its blank separator line."""
    timing = (
        f"{format_timestamp(start_ms, decimal=',')} --> {format_timestamp(end_ms, decimal=',')}"
    )
    return f"{index}\n{timing}\n" + "".join(f"{line}\n" for line in lines) + "\n"


def format_vtt_cue(index: int, start_ms: int, end_ms: int, lines: Sequence[str]) -> str:
    """One WebVTT cue (``index`` as its identifier), text escaped, ending with a blank line."""
    timing = (
        f"{format_timestamp(start_ms, decimal='.')} --> {format_timestamp(end_ms, decimal='.')}"
    )
    return f"{index}\n{timing}\n" + "".join(f"{_vtt_escape(line)}\n" for line in lines) + "\n"


def _vtt_escape(line: str) -> str:
    # Cue text is markup: a bare "<" starts a tag and "-->" would end the cue.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class CueSink:
    """Base of the subtitle sinks: numbers cues from 1, one cue per sentence with text.

    Subclasses set :meth:`format_cue` and may write a header at open.

    Args:
        path: the output file, created fresh.
        languages: target languages for bilingual cues, in line order; empty
            (the default) writes the source text alone, as each final arrives.
        transcript: whether the stream emits source finals; False for a
            translation-only stream, whose cues take the translations' times.
        max_held: how many sentences may wait for their translations.
        layout: line width and lines per cue of a transcript (source-only) cue.
            Bilingual cues keep one line per language, whatever their length.

    Attributes:
        incomplete_cues: cues written without every target language's translation
            (the hold overflowed, or the stream ended first).

    Raises:
        ValueError: a blank language or a negative ``max_held``.
        OSError: from the constructor, :meth:`write` and :meth:`close`.
    """

    header = b""

    def __init__(
        self,
        path: Path,
        *,
        languages: Sequence[str] = (),
        transcript: bool = True,
        max_held: int = DEFAULT_MAX_HELD,
        layout: CueLayout = DEFAULT_LAYOUT,
    ) -> None:
        self._hold = SentenceHold(languages, transcript=transcript, max_held=max_held)
        self.layout = layout
        self._file = AppendOnlyFile(path)
        self._next_index = 1
        self.incomplete_cues = 0
        if self.header:
            try:
                self._file.append(self.header)
            except BaseException:
                with contextlib.suppress(OSError):
                    self._file.close()
                raise

    @property
    def path(self) -> Path:
        return self._file.path

    @property
    def languages(self) -> tuple[str, ...]:
        return self._hold.languages

    @property
    def late_results(self) -> int:
        """Finals and translations dropped because their cue had already been written."""
        return self._hold.late

    @property
    def held(self) -> int:
        """Sentences waiting for their translations."""
        return len(self._hold)

    def cues(self, sentence: Sentence) -> list[Cue]:
        """The cues of ``sentence``, in order; empty means none.

        A transcript cue is laid out by :attr:`layout`; a bilingual one is a single
        cue of :meth:`cue_lines`.
        """
        if not self._hold.languages and sentence.source is not None:
            return layout_cues(sentence.source, self.layout)
        lines = self.cue_lines(sentence)
        if not lines:
            return []
        return [Cue(*sentence.span_ms(), tuple(lines))]

    def cue_lines(self, sentence: Sentence) -> list[str]:
        """The text lines of ``sentence``'s cue; empty means no cue.

        Without target languages these are the source text's lines. With them,
        each language (the source first) gives exactly one line, or none when its
        text is missing or blank, so a line never spills into the next language's.
        """
        source = text_lines(sentence.source.text) if sentence.source is not None else []
        if not self._hold.languages:
            return source
        lines = [source]
        for lang in self._hold.languages:
            translation = sentence.translations.get(lang)
            lines.append(text_lines(translation.text) if translation is not None else [])
        return [" ".join(parts) for parts in lines if parts]

    def format_cue(self, index: int, start_ms: int, end_ms: int, lines: Sequence[str]) -> str:
        raise NotImplementedError

    def touches_file(self, events: Sequence[Event]) -> bool:
        return any(isinstance(e, Final | Translation) for e in events)

    def write(self, event: Event) -> None:
        if not isinstance(event, Final | Translation):
            return
        if self._file.closed:
            raise ValueError(f"{self.path}: write to a closed sink")
        if self._hold.add(event):
            self._write_ready()

    def close(self) -> None:
        """Write the held cues with the translations they have, then fsync and close.

        Idempotent; the file is closed even when a write fails.
        """
        if self._file.closed:
            return
        try:
            self._write_ready(flush=True)
        finally:
            self._file.close()

    def _write_ready(self, *, flush: bool = False) -> None:
        while (sentence := self._hold.next_out(flush=flush)) is not None:
            cues = self.cues(sentence)
            if cues:
                record = "".join(
                    self.format_cue(self._next_index + i, cue.start_ms, cue.end_ms, cue.lines)
                    for i, cue in enumerate(cues)
                )
                self._file.append(record.encode())
                # Only cues that reached the file take numbers: after a failed write
                # the sentence stays held and the next attempt reuses the numbers,
                # so the numbers on disk stay contiguous.
                self._next_index += len(cues)
                if self._hold.missing(sentence):
                    self.incomplete_cues += 1
            self._hold.pop(sentence)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class SrtSink(CueSink):
    """SubRip subtitles (``HH:MM:SS,mmm``)."""

    def format_cue(self, index: int, start_ms: int, end_ms: int, lines: Sequence[str]) -> str:
        return format_srt_cue(index, start_ms, end_ms, lines)


class VttSink(CueSink):
    """WebVTT subtitles (``WEBVTT`` header, ``HH:MM:SS.mmm``)."""

    header = b"WEBVTT\n\n"

    def format_cue(self, index: int, start_ms: int, end_ms: int, lines: Sequence[str]) -> str:
        return format_vtt_cue(index, start_ms, end_ms, lines)
