"""Results onto the stream's global timeline: sentence ids, finals, commit points (pure).

A task's results (:mod:`engine.results`) carry task times (ms from the task's
first audio) and per-task sentence keys. :class:`Transcript` turns each into the
engine event the renderer gets, on the global timeline (samples), with the
stream's own sentence numbering, and says where the commit point moves:

* a partial is the sentence in progress (id = the next one);
* a final settles its sentence: it gets the next id, counts, and moves the
  commit point to its end; a final ending at or before the commit point (after
  the first) is a duplicate a replay produced, and is dropped;
* a translation joins its source sentence by key; a model that gives no source
  text settles sentences by its final translations instead;
* an utterance model's task takes no more audio once its sentence ended.

No trio, no clock, no logging: the caller applies :attr:`Mapped.commit` to the
replay buffer, stamps and emits :attr:`Mapped.event`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple
from typing import Final as Const

from engine.events import Final, Partial, TranslatedAudio, Translation, Word
from engine.results import Heard, Translated, VoiceOut

if TYPE_CHECKING:
    from engine.results import HeardWord, Result
    from engine.timeline import TaskClock

    from ._task import TaskResults

__all__ = ["MAX_KEYS", "Mapped", "Transcript"]

MAX_KEYS: Const = 64
"""Sentence keys a task remembers, to join late translations to their finals."""


class Mapped(NamedTuple):
    """What one result means for the stream."""

    event: Partial | Final | Translation | TranslatedAudio | None
    commit: int | None = None  # move the commit point here (a settled sentence's end)
    duplicate: bool = False  # a final the stream already has (dropped)


class Transcript:
    """The stream's sentences: their ids and the count of finals (the only writer of both).

    Args:
        rate: the session's sample rate.
        utterance: the model recognizes one sentence per task.
        transcribes: the model gives source text (else final translations settle sentences).
    """

    def __init__(self, rate: int, *, utterance: bool, transcribes: bool) -> None:
        self.rate = rate
        self.utterance = utterance
        self.transcribes = transcribes
        self.next_sentence_id = 1
        self.finals = 0

    def map(
        self, task: TaskResults, clock: TaskClock, result: Result, commit_point: int, task_id: str
    ) -> Mapped:
        """The event for ``result`` of task ``task_id``, whose clock is ``clock``."""
        match result:
            case Heard():
                return self._heard(task, clock, result, commit_point, task_id)
            case Translated():
                return self._translated(task, clock, result, commit_point)
            case VoiceOut(response_id, pcm, rate):
                return Mapped(TranslatedAudio(response_id, pcm, rate))
        raise AssertionError(f"unhandled result {result!r}")  # pragma: no cover

    def _heard(
        self, task: TaskResults, clock: TaskClock, s: Heard, commit_point: int, task_id: str
    ) -> Mapped:
        base = _straight_offset(clock)
        words = _words(clock, base, s.words) if s.words else ()
        rate = clock.rate
        start = clock.to_global(s.begin_ms) if base is None else base + s.begin_ms * rate // 1000
        if not s.final or s.end_ms is None:
            task.pending_partial = bool(s.text)
            partial = Partial(
                self.next_sentence_id,
                start,
                s.text,
                words,
                rate=self.rate,
                stash=s.stash,
                pre_end=s.pre_end,
            )
            return Mapped(partial)
        task.pending_partial = False
        if self.utterance:
            task.utterance_done = True
        end_ms = s.end_ms
        end = clock.to_global_end(end_ms) if base is None else base + end_ms * rate // 1000
        end = max(start, end)
        sentence_id = self._settle(task, end, s.key, commit_point)
        if sentence_id is None:
            return Mapped(None, duplicate=True)
        final = Final(sentence_id, start, end, s.text, words, rate=self.rate, task_id=task_id)
        return Mapped(final, commit=end)

    def _settle(self, task: TaskResults, end: int, key: str, commit_point: int) -> int | None:
        """A sentence ended at global ``end``: its id (None: a duplicate)."""
        if end <= commit_point and self.finals:
            return None
        task.finals += 1
        self.finals += 1
        sentence_id, self.next_sentence_id = self.next_sentence_id, self.next_sentence_id + 1
        if key:
            ids = task.sentence_ids
            ids[key] = sentence_id
            if len(ids) > MAX_KEYS:
                del ids[next(iter(ids))]
        return sentence_id

    def _translated(
        self, task: TaskResults, clock: TaskClock, tr: Translated, commit_point: int
    ) -> Mapped:
        """A translation joins its source sentence by key; without source text it settles it."""
        start = clock.to_global(tr.begin_ms)
        end = max(start, clock.to_global_end(tr.end_ms)) if tr.end_ms is not None else None
        if tr.final and self.utterance:
            task.utterance_done = True
        commit: int | None = None
        sentence_id = task.sentence_ids.get(tr.key) if tr.key else None
        if sentence_id is None:
            if not self.transcribes:
                task.pending_partial = not tr.final and bool(tr.text)
                if tr.final:
                    commit = end if end is not None else start
                    sentence_id = self._settle(task, commit, tr.key, commit_point)
                    if sentence_id is None:
                        return Mapped(None, duplicate=True)
            elif not tr.key and tr.final:
                sentence_id = self.next_sentence_id - 1  # keyless: follows its final
        if sentence_id is None:
            sentence_id = self.next_sentence_id  # the sentence in progress
        translation = Translation(
            tr.lang, sentence_id, start, end, tr.text, tr.final, rate=self.rate, stash=tr.stash
        )
        return Mapped(translation, commit=commit)


def _straight_offset(clock: TaskClock) -> int | None:
    """The global sample of task time 0 while the task's clock is one straight run (no
    keep-alive padding, no skip: nearly always), else None.

    On a straight run every task time ``ms`` maps to ``offset + ms * rate // 1000``,
    exactly what :meth:`TaskClock.to_global` and :meth:`~TaskClock.to_global_end` say
    (one bisect here instead of two per word, #11).
    """
    offset = clock.offset
    if not clock.padded and clock.global_end == offset + clock.task_samples:
        return offset
    return None


def _words(clock: TaskClock, base: int | None, words: tuple[HeardWord, ...]) -> tuple[Word, ...]:
    """A sentence's words on the global timeline (``base``: :func:`_straight_offset`)."""
    if base is not None:
        rate = clock.rate
        return tuple(
            [
                Word(
                    base + w.begin_ms * rate // 1000,
                    base + w.end_ms * rate // 1000,
                    w.text,
                    w.punctuation,
                )
                for w in words
            ]
        )
    to_global, to_global_end = clock.to_global, clock.to_global_end
    return tuple(
        [Word(to_global(w.begin_ms), to_global_end(w.end_ms), w.text, w.punctuation) for w in words]
    )
