"""Holding sentences until their translations arrive, for bilingual subtitles.

Pure bookkeeping, no I/O: a subtitle sink adds events and writes what leaves.

Theory of operation
-------------------
A bilingual cue shows a sentence's source ``Final`` and one final ``Translation``
per target language. They arrive in any order (on the realtime protocol
transcription and translation run in parallel), so each sentence is *held* until
it is complete:

- its source is settled: its ``Final`` arrived; or a later sentence's ``Final``
  did (finals come in sentence order, so this one will never get one); or the
  stream does not transcribe at all (translation only);
- every target language's final translation arrived.

Sentences leave the hold in sentence order only, oldest first, so a complete
sentence waits behind an older incomplete one. The hold is bounded: while more
than ``max_held`` sentences wait, the oldest leaves as it is, and at the end of
the stream (:meth:`SentenceHold.next_out` with ``flush``) they all do. Once a
sentence has left, a result for it or an older sentence is *late*: it is
counted and dropped, never written out of order.

Without target languages a final is complete on arrival and leaves at once;
sentence order is then not enforced, so such a sink writes exactly what it
always did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.events import Final, Translation, samples_to_ms

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.events import Event

__all__ = ["DEFAULT_MAX_HELD", "Sentence", "SentenceHold", "span_ms"]

DEFAULT_MAX_HELD = 16
"""Sentences a bilingual sink waits on; translations trail a sentence by a few at most."""


def span_ms(start: int, end: int, rate: int) -> tuple[int, int]:
    """``[start, end)`` samples at ``rate`` as a cue span in ms, at least 1 ms long.

    Players and validators reject cues that end where they start.
    """
    start_ms = samples_to_ms(start, rate)
    return start_ms, max(samples_to_ms(end, rate), start_ms + 1)


@dataclass(slots=True)
class Sentence:
    """One held sentence: its source final and the final translations so far.

    ``translations`` holds only the target languages, keyed by language.
    """

    sentence_id: int
    source: Final | None = None
    translations: dict[str, Translation] = field(default_factory=dict)

    def span_ms(self) -> tuple[int, int]:
        """The cue span: the source's times, else those the translations cover.

        A translation without an end counts as ending where it starts.
        """
        if self.source is not None:
            return span_ms(self.source.start, self.source.end, self.source.rate)
        if not self.translations:
            raise ValueError(f"sentence {self.sentence_id} has neither a source nor a translation")
        spans = [
            span_ms(tr.start, max(tr.start, tr.end if tr.end is not None else tr.start), tr.rate)
            for tr in self.translations.values()
        ]
        return min(s for s, _ in spans), max(e for _, e in spans)


class SentenceHold:
    """Holds a stream's sentences until they are complete; see the module docstring.

    Args:
        languages: the target languages, in cue order (duplicates count once).
            Final translations into other languages, and every non-final
            translation, are ignored.
        transcript: whether the stream emits source finals; False for a
            translation-only stream, whose sentences never wait for a source.
        max_held: how many sentences may wait at once (0: none wait).

    Attributes:
        late: results dropped because their sentence, or a later one, had
            already left the hold.

    Raises:
        ValueError: a blank language or a negative ``max_held``.
    """

    def __init__(
        self,
        languages: Sequence[str] = (),
        *,
        transcript: bool = True,
        max_held: int = DEFAULT_MAX_HELD,
    ) -> None:
        if any(not lang.strip() for lang in languages):
            raise ValueError("a target language cannot be blank")
        if max_held < 0:
            raise ValueError("max_held cannot be negative")
        self.languages: tuple[str, ...] = tuple(dict.fromkeys(languages))
        self.transcript = transcript
        self.max_held = max_held
        self.late = 0
        self._held: dict[int, Sentence] = {}
        self._left_through: int | None = None
        self._finals_through: int | None = None

    def __len__(self) -> int:
        return len(self._held)

    def add(self, event: Event) -> bool:
        """Take ``event`` in. Not a checkpoint; no I/O.

        Returns:
            True when the event joined a held sentence; False when the hold
            does not use it, or it is late (then :attr:`late` grows).
        """
        if isinstance(event, Translation):
            if not event.final or event.lang not in self.languages:
                return False
        elif not isinstance(event, Final):
            return False
        sentence_id = event.sentence_id
        if self.languages and self._left_through is not None and sentence_id <= self._left_through:
            self.late += 1
            return False
        sentence = self._held.get(sentence_id)
        if sentence is None:
            sentence = self._held[sentence_id] = Sentence(sentence_id)
        if isinstance(event, Final):
            sentence.source = event
            if self._finals_through is None or sentence_id > self._finals_through:
                self._finals_through = sentence_id
        else:
            sentence.translations[event.lang] = event
        return True

    def missing(self, sentence: Sentence) -> list[str]:
        """The target languages whose final translation of ``sentence`` has not arrived."""
        return [lang for lang in self.languages if lang not in sentence.translations]

    def complete(self, sentence: Sentence) -> bool:
        """Whether ``sentence`` has its source settled and every translation."""
        settled = (
            sentence.source is not None
            or not self.transcript
            or (self._finals_through is not None and self._finals_through > sentence.sentence_id)
        )
        return settled and not self.missing(sentence)

    def next_out(self, *, flush: bool = False) -> Sentence | None:
        """The oldest held sentence if it may leave now, else None.

        It may leave when it is complete, when more than ``max_held`` sentences
        are held, or (``flush``) always. It stays held until :meth:`pop`, so a
        caller whose write failed can try it again.
        """
        if not self._held:
            return None
        oldest = self._held[min(self._held)]
        if flush or len(self._held) > self.max_held or self.complete(oldest):
            return oldest
        return None

    def pop(self, sentence: Sentence) -> None:
        """Let ``sentence`` (from :meth:`next_out`) leave; later results for it are late."""
        del self._held[sentence.sentence_id]
        if self._left_through is None or sentence.sentence_id > self._left_through:
            self._left_through = sentence.sentence_id
