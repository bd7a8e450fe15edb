"""Recognizer hypotheses → paraformer / fun-asr ``payload.output`` objects (DASHSCOPE.md §3.2).

Pure functions and one small filter; no trio. Every sentence carries the keys
the official SDK indexes (``end_time`` even when null, ``heartbeat``,
``sentence_id``, ``words``). Recognizers emit lowercase words without
punctuation; like the service, a sentence gets a capital first letter, and a
final one a closing period.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

    from adapters.recognizers.base import Hypothesis

__all__ = ["PartialFilter", "heartbeat_output", "sentence_output", "sentence_usage"]

_TERMINAL: Final = frozenset(".?!。？！")


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def sentence_output(hyp: Hypothesis) -> dict[str, Any]:
    """The ``payload.output`` of one result: ``sentence_id`` counts from 1 per task."""
    final = hyp.final
    text = _capitalise(hyp.text.strip())
    if final and text and text[-1] not in _TERMINAL:
        text += "."
    words: list[dict[str, Any]] = []
    last = len(hyp.words) - 1
    for i, word in enumerate(hyp.words):
        punctuation = word.punctuation
        if final and i == last and not punctuation and text.endswith("."):
            punctuation = "."
        words.append(
            {
                "begin_time": word.begin_ms,
                "end_time": word.end_ms,
                "text": _capitalise(word.text) if i == 0 else word.text,
                "punctuation": punctuation,
            }
        )
    return {
        "sentence": {
            "sentence_id": hyp.index + 1,
            "begin_time": hyp.begin_ms,
            "end_time": hyp.end_ms if final else None,
            "text": text,
            "heartbeat": False,
            "sentence_end": final,
            "words": words,
        }
    }


def sentence_usage(hyp: Hypothesis) -> dict[str, Any] | None:
    """``payload.usage`` of a result: billed seconds of a final sentence, none for partials."""
    if not hyp.final or hyp.end_ms is None:
        return None
    return {"duration": math.ceil(max(0, hyp.end_ms - hyp.begin_ms) / 1000)}


def heartbeat_output(now_ms: int) -> dict[str, Any]:
    """A keep-alive result at ``now_ms`` on the task's audio clock (``heartbeat: true``)."""
    return {
        "sentence": {
            "sentence_id": 0,
            "begin_time": now_ms,
            "end_time": None,
            "text": "",
            "heartbeat": True,
            "sentence_end": False,
            "words": [],
        }
    }


class PartialFilter:
    """Thins partial results: at most one per sentence per ``interval_ms`` of audio.

    Of the partials one ``feed`` returns, only the newest per sentence counts; a
    partial whose text did not change is dropped; finals always pass and reset
    the sentence. ``interval_ms=0`` keeps every changed partial.
    """

    def __init__(self, interval_ms: int) -> None:
        self._interval = interval_ms
        self._last_text: dict[int, str] = {}
        self._last_at: dict[int, int] = {}

    def select(self, hyps: Iterable[Hypothesis], audio_ms: int) -> list[Hypothesis]:
        """The hypotheses to send, in order; ``audio_ms`` is the audio fed so far."""
        hyps = list(hyps)
        newest = {h.index: i for i, h in enumerate(hyps) if not h.final}
        finalised = {h.index for h in hyps if h.final}
        out: list[Hypothesis] = []
        for i, hyp in enumerate(hyps):
            if hyp.final:
                self._last_text.pop(hyp.index, None)
                self._last_at.pop(hyp.index, None)
                out.append(hyp)
                continue
            if newest[hyp.index] != i or hyp.index in finalised:
                continue
            if hyp.text == self._last_text.get(hyp.index):
                continue
            last_at = self._last_at.get(hyp.index)
            if last_at is not None and audio_ms - last_at < self._interval:
                continue
            self._last_text[hyp.index] = hyp.text
            self._last_at[hyp.index] = audio_ms
            out.append(hyp)
        return out
