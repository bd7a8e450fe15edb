"""Batch result files (the JSON behind ``transcription_url``) → sentences and engine Finals.

Pure. :func:`parse_result_file` reads the §6.3 JSON leniently (the service adds
fields); :func:`sentences` flattens its transcripts into :class:`Sentence` records
with SenseVoice's ``<|…|>`` tags lifted out of the text into structured fields
(:func:`strip_tags`); :func:`to_finals` turns those into
:class:`~engine.events.Final` events on a 16 kHz global timeline, so the stream
sinks (TXT, SRT, VTT, JSONL) render a batch result exactly like a live one.

SenseVoice tags (DASHSCOPE.md §6.3): an emotion (``<|HAPPY|>``, ``<|SAD|>``,
``<|ANGRY|>``, ``<|NEUTRAL|>``, …), audio events as opening/closing pairs
(``<|Speech|>…<|/Speech|>``, ``<|BGM|>``, ``<|Applause|>``, ``<|Laughter|>``, …),
sometimes a language code (``<|en|>``) and special tokens
(``<|SPECIAL_TOKEN_1|>``). Every ``<|…|>`` token is removed from the text,
known or not, the way the official demo's regular expressions do.
"""

from __future__ import annotations

import re
from typing import Final as _Final

import msgspec

from engine.errors import RemoteProtocolError
from engine.events import Final, Word

__all__ = [
    "ResultFile",
    "ResultProperties",
    "ResultSentence",
    "ResultWord",
    "Sentence",
    "Tags",
    "Transcript",
    "parse_result_file",
    "sentences",
    "strip_tags",
    "to_finals",
]

_TAG: _Final = re.compile(r"<\|(/?)([A-Za-z0-9_.\-]{1,64})\|>")
_SPACES: _Final = re.compile(r"[ \t]{2,}")
EMOTIONS: _Final = frozenset(
    {"HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED", "EMO_UNKNOWN"}
)
EVENTS: _Final = frozenset(
    {"Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough", "Event_UNK"}
)
_LANGUAGE: _Final = re.compile(r"^[a-z]{2,3}$|^nospeech$")


class Tags(msgspec.Struct, frozen=True, omit_defaults=True):
    """The SenseVoice tags of one text, in order of appearance, without duplicates."""

    emotion: str | None = None
    events: tuple[str, ...] = ()
    language: str | None = None
    other: tuple[str, ...] = ()


def strip_tags(text: str) -> tuple[str, Tags]:
    """``text`` without its ``<|…|>`` tokens, and the tags they were.

    >>> strip_tags("<|Speech|><|NEUTRAL|>Hello everyone, welcome.<|/Speech|>")
    ('Hello everyone, welcome.', Tags(emotion='NEUTRAL', events=('Speech',), language=None, other=()))
    """
    if "<|" not in text:
        return text, Tags()
    emotion: str | None = None
    language: str | None = None
    events: list[str] = []
    other: list[str] = []
    for closing, name in _TAG.findall(text):
        if name in EMOTIONS:
            emotion = emotion or name
        elif name in EVENTS or closing:
            if name not in events:
                events.append(name)
        elif _LANGUAGE.match(name):
            language = language or name
        elif name not in other:
            other.append(name)
    clean = text
    while _TAG.search(clean):  # removing a token can join the halves of another
        clean = _TAG.sub("", clean)
    clean = _SPACES.sub(" ", clean).strip()
    return clean, Tags(emotion, tuple(events), language, tuple(other))


# ---------------------------------------------------------------- the file


class ResultWord(msgspec.Struct, frozen=True):
    begin_time: int
    end_time: int
    text: str = ""
    punctuation: str = ""


class ResultSentence(msgspec.Struct, frozen=True):
    begin_time: int
    end_time: int
    text: str = ""
    sentence_id: int | None = None
    speaker_id: int | None = None
    words: list[ResultWord] = msgspec.field(default_factory=list)


class Transcript(msgspec.Struct, frozen=True):
    channel_id: int = 0
    text: str = ""
    content_duration_in_milliseconds: int = 0
    sentences: list[ResultSentence] = msgspec.field(default_factory=list)


class ResultProperties(msgspec.Struct, frozen=True):
    audio_format: str = ""
    channels: list[int] = msgspec.field(default_factory=list)
    original_sampling_rate: int = 0
    original_duration_in_milliseconds: int = 0


class ResultFile(msgspec.Struct, frozen=True):
    """One file's transcription result (DASHSCOPE.md §6.3); unknown fields are ignored."""

    file_url: str = ""
    properties: ResultProperties = msgspec.field(default_factory=ResultProperties)
    transcripts: list[Transcript] = msgspec.field(default_factory=list)


def parse_result_file(body: bytes) -> ResultFile:
    """Decode a result file.

    Raises:
        RemoteProtocolError: not JSON, or not shaped like a result file.
    """
    try:
        return msgspec.json.decode(body, type=ResultFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RemoteProtocolError(
            f"the result file is not a transcription result ({exc})"
        ) from None


class Sentence(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One sentence of a result: clean text, times in ms from the file's start, its tags."""

    channel_id: int = 0
    start_ms: int
    end_ms: int
    text: str
    words: tuple[ResultWord, ...] = ()
    speaker_id: int | None = None
    tags: Tags = Tags()


def sentences(result: ResultFile) -> list[Sentence]:
    """Every sentence of every transcript (channel), ordered by start time then channel.

    Times are clamped so no sentence or word ends before it starts.
    """
    out: list[Sentence] = []
    for transcript in result.transcripts:
        for raw in transcript.sentences:
            text, tags = strip_tags(raw.text)
            start = max(0, raw.begin_time)
            words = tuple(
                ResultWord(
                    max(0, w.begin_time),
                    max(w.begin_time, w.end_time, 0),
                    strip_tags(w.text)[0],
                    w.punctuation,
                )
                for w in raw.words
            )
            out.append(
                Sentence(
                    channel_id=transcript.channel_id,
                    start_ms=start,
                    end_ms=max(start, raw.end_time),
                    text=text,
                    words=words,
                    speaker_id=raw.speaker_id,
                    tags=tags,
                )
            )
    out.sort(key=lambda s: (s.start_ms, s.channel_id))
    return out


def to_finals(
    items: list[Sentence], *, stream: str = "", task_id: str = "", rate: int = 16000
) -> list[Final]:
    """One :class:`~engine.events.Final` per sentence with text, numbered from 1.

    Times become samples at ``rate`` from the file's start (the stream's global
    timeline), so SRT/VTT cues land where the sentences were spoken.
    """
    finals: list[Final] = []
    for sentence in items:
        if not sentence.text:
            continue
        words = tuple(
            Word(w.begin_time * rate // 1000, w.end_time * rate // 1000, w.text, w.punctuation)
            for w in sentence.words
        )
        finals.append(
            Final(
                len(finals) + 1,
                sentence.start_ms * rate // 1000,
                sentence.end_ms * rate // 1000,
                sentence.text,
                words,
                rate,
                task_id,
                stream=stream,
            )
        )
    return finals
