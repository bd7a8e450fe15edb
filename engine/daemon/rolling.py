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

Translation streams (``languages``): SRT and VTT cues are bilingual (the source
line, then one line per language), TXT gets a ``{stem}.{lang}.txt`` per
language beside ``{stem}.txt``, and with ``voice`` the translated speech goes to
``{stem}.voice.wav`` (one WAV per period; ``max-bytes`` does not split it, it
rolls over by itself at the 4 GiB WAV limit). A bilingual cue waits in its sink
for the sentence's translations, so a period change does not close a subtitle
file that still holds sentences: the switch waits until the hold is empty (the
late translation joins its cue in the old period's file), for at most
:data:`SWITCH_GRACE_S`; after that the held cues are written as they are.

Time: the period comes from an injected wall clock (``clock() -> epoch
seconds``; house rule R9): ``time.time`` in the daemon, a function of the trio
MockClock in tests.
"""

from __future__ import annotations

import os
import time
from functools import partial
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from adapters.sinks.base import text_lines
from adapters.sinks.factory import FORMATS
from adapters.sinks.layout import DEFAULT_LAYOUT, CueLayout
from adapters.sinks.subtitles import SrtSink, VttSink
from adapters.sinks.text import TextSink
from adapters.sinks.voice import VoiceWavSink
from engine.events import AudioEvent, TranslatedAudio, Translation
from engine.events import Final as FinalEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from adapters.sinks.base import Sink
    from engine.events import Event

__all__ = [
    "SWITCH_GRACE_S",
    "VOICE",
    "RollingSink",
    "WallClock",
    "open_rolling_sinks",
    "period_stem",
]

WallClock: TypeAlias = "Callable[[], float]"
Rotate = Literal["hour", "day", "never"]

_STAMP: Final = {"hour": "%Y%m%d-%H", "day": "%Y%m%d"}

VOICE: Final = "wav"
"""The format name of the translated voice (``{stem}.voice.wav``)."""
SWITCH_GRACE_S: Final = 60.0
"""How long a sink holding cues may keep its file once a switch is due (new period, size cap)."""


def period_stem(stream: str, epoch_s: float, rotate: Rotate, timezone: str = "utc") -> str:
    """The file stem for a record written at ``epoch_s``: ``lobby-20240101-05`` (hour)."""
    if rotate == "never":
        return stream
    moment = time.gmtime(epoch_s) if timezone == "utc" else time.localtime(epoch_s)
    return f"{stream}-{time.strftime(_STAMP[rotate], moment)}"


def _renders(
    fmt: str, event: Event, languages: Sequence[str] = (), lang: str | None = None
) -> bool:
    """Whether the ``fmt`` sink writes something for ``event`` (so a file is worth opening).

    A bilingual subtitle sink takes every final and final translation: a sentence
    is complete only with all of them.
    """
    if fmt == VOICE:
        return isinstance(event, TranslatedAudio)
    if isinstance(event, AudioEvent):
        return False
    if fmt == "txt":
        if lang is None:
            return isinstance(event, FinalEvent) and bool(text_lines(event.text))
        return (
            isinstance(event, Translation)
            and event.final
            and event.lang == lang
            and bool(text_lines(event.text))
        )
    if fmt in ("srt", "vtt"):
        if languages:
            return isinstance(event, FinalEvent) or (
                isinstance(event, Translation) and event.final and event.lang in languages
            )
        return isinstance(event, FinalEvent) and bool(text_lines(event.text))
    return True


class RollingSink:
    """A :class:`~adapters.sinks.base.Sink` that rotates files by period and size.

    Args:
        directory: where files go (created when missing).
        stream: the stream id (the name prefix).
        fmt: ``txt``, ``srt``, ``vtt``, ``jsonl``, or :data:`VOICE` (``wav``: the
            translated speech, ``{stem}.voice.wav``; never split by size here).
        clock: wall clock, epoch seconds. It is called from the renderer's worker
            thread, so it must be thread-safe (``time.time`` is).
        rotate: ``hour``, ``day`` or ``never``.
        max_bytes: start a new file once the current one has this many bytes.
        timezone: ``utc`` or ``local`` for the names.
        languages: translation target languages: ``srt``/``vtt`` cues become
            bilingual (see ``adapters.sinks.subtitles``).
        transcript: whether the stream emits source finals (False: translation only).
        lang: ``txt`` only: write this language's translations, to
            ``{stem}.{lang}.txt``, instead of the source.

    Not thread-safe; the renderer calls it from one worker thread at a time.

    Raises:
        OSError: from :meth:`write` (the file cannot be created or written) and
            :meth:`close`.
        ValueError: from the constructor: ``lang`` with a format other than ``txt``.
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
        languages: Sequence[str] = (),
        transcript: bool = True,
        lang: str | None = None,
        layout: CueLayout = DEFAULT_LAYOUT,
    ) -> None:
        if lang is not None and fmt != "txt":
            raise ValueError(f"a {fmt} sink writes every language; lang is for txt only")
        self._factory = _opener(fmt, tuple(languages), transcript, lang, layout)
        self.directory = directory
        self.stream = stream
        self.fmt = fmt
        self.languages = tuple(languages) if fmt in ("srt", "vtt") else ()
        self.lang = lang
        self.ext = "voice.wav" if fmt == VOICE else fmt if lang is None else f"{lang}.{fmt}"
        self._clock = clock
        self._rotate: Rotate = rotate
        self._max_bytes = None if fmt == VOICE else max_bytes
        self._timezone = timezone
        self._sink: Sink | None = None
        self._stem = ""
        self._part = 0
        self._due_since: float | None = None  # when a switch became due but cues were held
        self.path: Path | None = None
        self.files_opened = 0

    def touches_file(self, events: Sequence[Event]) -> bool:
        return any(_renders(self.fmt, e, self.languages, self.lang) for e in events)

    def write(self, event: Event) -> None:
        if not _renders(self.fmt, event, self.languages, self.lang):
            return  # the sink would ignore it: no need to look at the clock
        now = self._clock()
        stem = period_stem(self.stream, now, self._rotate, self._timezone)
        if (
            self._sink is not None
            and (stem != self._stem or self._full())
            and self._may_switch(now)
        ):
            self.close()
        if self._sink is None:
            self._open(stem)
        assert self._sink is not None
        self._sink.write(event)

    def _may_switch(self, now: float) -> bool:
        """Switch files unless cues wait for translations (then only after the grace)."""
        if not getattr(self._sink, "held", 0):
            return True
        if self._due_since is None:
            self._due_since = now
        return now - self._due_since >= SWITCH_GRACE_S

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
            path = self.directory / f"{stem}{suffix}.{self.ext}"
            self._part += 1
            if not os.path.lexists(path):
                break
        self._sink = self._factory(path)
        self._due_since = None
        self.path = path
        self.files_opened += 1

    def close(self) -> None:
        """Close the current file (flush, fsync). Idempotent; the next record opens a new one."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()

    def __repr__(self) -> str:
        return f"RollingSink({str(self.path or self.directory / self.stream)!r}, {self.ext})"


def _opener(
    fmt: str, languages: tuple[str, ...], transcript: bool, lang: str | None, layout: CueLayout
) -> Callable[[Path], Sink]:
    if fmt == VOICE:
        return VoiceWavSink
    if fmt == "txt" and lang is not None:
        return partial(TextSink, lang=lang)
    if fmt in ("srt", "vtt"):
        return partial(
            SrtSink if fmt == "srt" else VttSink,
            languages=languages,
            transcript=transcript,
            layout=layout,
        )
    return FORMATS[fmt]


def open_rolling_sinks(
    directory: Path,
    stream: str,
    formats: Sequence[str],
    *,
    clock: WallClock,
    rotate: Rotate,
    max_bytes: int | None,
    timezone: str,
    languages: Sequence[str] = (),
    transcript: bool = True,
    voice: bool = False,
    layout: CueLayout = DEFAULT_LAYOUT,
) -> list[Sink]:
    """One :class:`RollingSink` per format, after checking the directory is writable.

    With translation ``languages``, ``srt``/``vtt`` are bilingual and ``txt`` adds
    one sink per language (``{stem}.{lang}.txt``) right after the source's;
    ``voice`` adds the translated speech (``{stem}.voice.wav``) last; ``layout`` sets
    the line width and lines per cue of ``srt``/``vtt``.

    Blocking (creates the directory); run it in a thread.

    Raises:
        OSError: the directory cannot be created or written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(13, "not writable", str(directory))
    make = partial(
        RollingSink,
        directory,
        stream,
        clock=clock,
        rotate=rotate,
        max_bytes=max_bytes,
        timezone=timezone,
        layout=layout,
    )
    langs = tuple(dict.fromkeys(languages))
    sinks: list[Sink] = []
    for fmt in formats:
        sinks.append(make(fmt, languages=langs, transcript=transcript))
        if fmt == "txt":
            sinks.extend(make(fmt, lang=lang) for lang in langs)
    if voice:
        sinks.append(make(VOICE))
    return sinks
