"""SubRip (``.srt``) and WebVTT (``.vtt``) subtitles: one cue per final sentence.

Cue times come from the stream's global timeline, so cues stay continuous across
reconnects and rotations. A cue's text is a list of lines (today the sentence;
a translation line per cue is a matter of overriding :meth:`CueSink.cue_lines`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from adapters.sinks.base import AppendOnlyFile, text_lines
from engine.events import Final, samples_to_ms

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

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
    start = samples_to_ms(final.start, final.rate)
    end = samples_to_ms(final.end, final.rate)
    return start, max(end, start + 1)


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
    """Base of the subtitle sinks: numbers cues from 1, one cue per final with text.

    Subclasses set :meth:`format_cue` and may write a header at open.
    """

    header = b""

    def __init__(self, path: Path) -> None:
        self._file = AppendOnlyFile(path)
        self._next_index = 1
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

    def cue_lines(self, final: Final) -> list[str]:
        """The text lines of ``final``'s cue; empty means no cue."""
        return text_lines(final.text)

    def format_cue(self, index: int, start_ms: int, end_ms: int, lines: Sequence[str]) -> str:
        raise NotImplementedError

    def write(self, event: Event) -> None:
        if not isinstance(event, Final):
            return
        lines = self.cue_lines(event)
        if not lines:
            return
        start, end = cue_span_ms(event)
        self._file.append(self.format_cue(self._next_index, start, end, lines).encode())
        # Only a cue that reached the file takes a number: after a failed write
        # the next cue reuses it, so the numbers on disk stay contiguous.
        self._next_index += 1

    def close(self) -> None:
        self._file.close()

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
