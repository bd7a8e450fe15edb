"""Recognizer hypotheses → ``payload.output`` objects: paraformer / fun-asr (DASHSCOPE.md §3.2)
and gummy (§4.2).

Pure functions and one small filter; no trio. Every sentence carries the keys
the official SDK indexes (``end_time`` even when null, ``heartbeat``,
``sentence_id``, ``words``; for gummy also ``current_time`` on partials,
``fixed`` in words and ``lang`` in translations). Recognizers emit lowercase
words without punctuation; like the service, a sentence gets a capital first
letter, and a final one a closing period.

gummy results (:func:`gummy_output`) hold ``transcription`` and/or
``translations`` (one per target, from the simulator's translator), both with
``sentence_id`` counting from 0 per task (the Java SDK's mock server does;
paraformer counts from 1). A translation has its source sentence's times and
one word spanning it. Finals carry a ``stash``: the next sentence, empty and
starting where this one ended, as in §4.2's example. ``vad_pre_end`` is always
false: the simulator sees hypotheses, not the recognizer's VAD, so it cannot
announce a sentence end early.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from adapters.recognizers.base import Hypothesis

    from .translate import Translator

__all__ = [
    "PartialFilter",
    "gummy_output",
    "heartbeat_output",
    "sentence_output",
    "sentence_usage",
]

_TERMINAL: Final = frozenset(".?!。？！")


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence_text(hyp: Hypothesis) -> str:
    text = _capitalise(hyp.text.strip())
    if hyp.final and text and text[-1] not in _TERMINAL:
        text += "."
    return text


def _words(hyp: Hypothesis, text: str, **extra: Any) -> list[dict[str, Any]]:
    """The words of a shaped sentence; ``extra`` keys follow ``punctuation`` in each."""
    words: list[dict[str, Any]] = []
    last = len(hyp.words) - 1
    for i, word in enumerate(hyp.words):
        punctuation = word.punctuation
        if hyp.final and i == last and not punctuation and text.endswith("."):
            punctuation = "."
        words.append(
            {
                "begin_time": word.begin_ms,
                "end_time": word.end_ms,
                "text": _capitalise(word.text) if i == 0 else word.text,
                "punctuation": punctuation,
                **extra,
            }
        )
    return words


def sentence_output(hyp: Hypothesis) -> dict[str, Any]:
    """The ``payload.output`` of one result: ``sentence_id`` counts from 1 per task."""
    final = hyp.final
    text = _sentence_text(hyp)
    return {
        "sentence": {
            "sentence_id": hyp.index + 1,
            "begin_time": hyp.begin_ms,
            "end_time": hyp.end_ms if final else None,
            "text": text,
            "heartbeat": False,
            "sentence_end": final,
            "words": _words(hyp, text),
        }
    }


def gummy_output(
    hyp: Hypothesis,
    *,
    transcription: bool,
    targets: Sequence[str],
    translator: Translator,
    current_ms: int,
) -> dict[str, Any]:
    """The gummy ``payload.output`` of one result (DASHSCOPE.md §4.2).

    Args:
        hyp: the source sentence, partial or final.
        transcription: include ``transcription`` (``transcription_enabled``).
        targets: one ``translations`` entry per language; empty: no
            ``translations`` key (``translation_enabled`` false).
        translator: renders the translations; a preview for partials.
        current_ms: the audio recognized so far on the task's timeline
            (``current_time`` of a partial).
    """
    final = hyp.final
    text = _sentence_text(hyp)
    end = hyp.end_ms if final else None
    now = max(current_ms, hyp.begin_ms, *(w.end_ms for w in hyp.words))
    timing: dict[str, Any] = {"begin_time": hyp.begin_ms, "end_time": end}
    if not final:
        timing["current_time"] = now
    flags = {"sentence_end": final, "vad_pre_end": False}
    output: dict[str, Any] = {}
    if transcription:
        sentence: dict[str, Any] = {
            "sentence_id": hyp.index,
            **timing,
            "text": text,
            **flags,
            "words": _words(hyp, text, fixed=final, speaker_id=None),
        }
        if final:
            stash_at = hyp.end_ms if hyp.end_ms is not None else now
            sentence["stash"] = {
                "sentence_id": hyp.index + 1,
                "text": "",
                "begin_time": stash_at,
                "current_time": max(stash_at, current_ms),
                "words": [],
            }
        output["transcription"] = sentence
    if targets:
        span_end = end if end is not None else now
        translations = []
        for lang in targets:
            rendition = translator.translate(text, lang, final=final)
            translated = rendition.text + rendition.stash
            words = []
            if translated:
                words.append(
                    {
                        "begin_time": hyp.begin_ms,
                        "end_time": span_end,
                        "text": translated,
                        "punctuation": translated[-1] if translated[-1] in _TERMINAL else "",
                        "fixed": final,
                        "speaker_id": None,
                    }
                )
            translations.append(
                {
                    "sentence_id": hyp.index,
                    "lang": lang,
                    **timing,
                    "text": translated,
                    **flags,
                    "words": words,
                }
            )
        output["translations"] = translations
    return output


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
        if len(hyps) == 1:  # the common case (one piece closed), without the bookkeeping
            return [hyps[0]] if self._passes(hyps[0], audio_ms) else []
        newest = {h.index: i for i, h in enumerate(hyps) if not h.final}
        finalised = {h.index for h in hyps if h.final}
        out: list[Hypothesis] = []
        for i, hyp in enumerate(hyps):
            if not hyp.final and (newest[hyp.index] != i or hyp.index in finalised):
                continue
            if self._passes(hyp, audio_ms):
                out.append(hyp)
        return out

    def _passes(self, hyp: Hypothesis, audio_ms: int) -> bool:
        """Whether ``hyp`` (the newest of its sentence) goes out; records it if so."""
        if hyp.final:
            self._last_text.pop(hyp.index, None)
            self._last_at.pop(hyp.index, None)
            return True
        if hyp.text == self._last_text.get(hyp.index):
            return False
        last_at = self._last_at.get(hyp.index)
        if last_at is not None and audio_ms - last_at < self._interval:
            return False
        self._last_text[hyp.index] = hyp.text
        self._last_at[hyp.index] = audio_ms
        return True
