"""One speech segment of the realtime endpoint: its ASR item and its translation response.

Pure (no trio): :class:`Segment` takes the recognizer's hypotheses for one
segment and returns the server commands to send, in the order of
DASHSCOPE.md §5.4 — the caller sends them through the realtime server core,
which checks the ids.

* **Source text.** Each final hypothesis is one sentence of the segment,
  shaped like the service's ASR (capital first letter, closing period); the
  ASR snapshot's ``text`` is the segment's finished sentences and ``stash``
  the sentence still being heard (so ``text`` only grows);
  ``…transcription.completed`` carries them all.
* **Translation.** Sentence by sentence: finished sentences get the
  translator's final rendition, the one being heard its preview, so a
  response starts as soon as the first preview has text — before the speaker
  stopped, as livetranslate interprets simultaneously. The response opens with
  ``conversation.item.created`` (``previous_item_id`` = the ASR item),
  ``response.created``, ``output_item.added``, ``content_part.added``; each
  changed preview is one translation snapshot followed by the stand-in voice
  of the units it settled (:mod:`.realtime_voice`); the end brings the rest of
  the voice, the final text and the ``…done`` events, ``response.done`` last,
  with usage.
* **Throttling.** Snapshots (ASR and translation together) go out at most
  once per ``partial_interval_ms`` of segment audio, except when a sentence
  finished.
* **Usage** (undocumented in detail; a guess): input audio 25 tokens per
  second of segment audio, output text one token per spoken unit, output
  audio 25 tokens per second of voice.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Final

from adapters.dashscope import realtime_messages as m
from adapters.dashscope.realtime_wire import WireUsage

from .realtime_voice import VoiceStream, units

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from adapters.recognizers.base import Hypothesis

    from .translate import Translator

__all__ = ["EMOTION", "Segment", "join_text", "shape_sentence"]

EMOTION: Final = "neutral"
"""The simulator hears no emotion."""
_TERMINAL: Final = frozenset(".?!。？！")
_CJK = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_MS_PER_TOKEN: Final = 40


def shape_sentence(text: str, *, final: bool) -> str:
    """Recognizer words as the service writes them: capitalised, a final one with a period."""
    text = text.strip()
    text = text[:1].upper() + text[1:]
    if final and text and text[-1] not in _TERMINAL:
        text += "。" if _CJK.match(text[-1]) else "."
    return text


def join_text(left: str, right: str) -> str:
    """Two pieces of text with a space between, unless either side is CJK at the seam."""
    if not left or not right:
        return left + right
    if _CJK.match(left[-1]) or _CJK.match(right[0]):
        return left + right
    return f"{left} {right}"


def guess_language(text: str) -> str:
    """The source language when the session does not name one: the simulator cannot detect."""
    return "zh" if _CJK.search(text) else "en"


class Segment:
    """One segment's ASR item, source text and translation response.

    Args:
        item_id: the ASR item (``speech_started.item_id``, or the committed item).
        target: ``translation.language``.
        translator: renders previews and finals.
        new_id: makes the translation item and response ids.
        language: ``input_audio_transcription.language``; None guesses from the text.
        partial_interval_ms: the snapshot throttle.
    """

    def __init__(
        self,
        item_id: str,
        *,
        target: str,
        translator: Translator,
        new_id: Callable[[str], str],
        language: str | None = None,
        partial_interval_ms: int = 0,
    ) -> None:
        self.item_id = item_id
        self._target = target
        self._translator = translator
        self._new_id = new_id
        self._language = language
        self._interval = partial_interval_ms
        self._sentences: list[str] = []
        self._translated: list[str] = []
        self._partial = ""
        self._sent_source = ("", "")
        self._sent_translation = ("", "")
        self._last_emit_ms: int | None = None
        self.response: tuple[str, str] | None = None
        """The open response: (response id, translation item id)."""
        self._voice = VoiceStream()
        self.fed_bytes = 0
        """Segment audio fed to the recognizer so far (kept by the caller)."""

    @property
    def transcript(self) -> str:
        """The source text so far (finished sentences and the one being heard)."""
        return join_text(" ".join(self._sentences), self._partial)

    @property
    def language(self) -> str:
        return self._language or guess_language(self.transcript)

    def heard(
        self, hyps: Iterable[Hypothesis], audio_ms: int, *, asr: bool, audio: bool
    ) -> list[m.ServerCommand]:
        """New hypotheses after ``audio_ms`` of segment audio; the snapshots to send."""
        sentence_ended = self._take(hyps)
        due = (
            sentence_ended
            or self._last_emit_ms is None
            or audio_ms - self._last_emit_ms >= self._interval
        )
        if not due:
            return []
        out: list[m.ServerCommand] = []
        source = (" ".join(self._sentences), self._partial)
        if source != self._sent_source:
            self._sent_source = source
            if asr:
                text, stash = source
                stash = " " + stash if text and stash and not _CJK.match(stash[0]) else stash
                out.append(m.SendSourcePartial(self.item_id, text, stash, self.language, EMOTION))
        translation = self._translation()
        if translation != self._sent_translation and any(translation):
            self._sent_translation = translation
            response_id, item_id = self._open(out)
            out.append(m.SendTranslationPartial(response_id, item_id, *translation))
            if audio:
                for chunk in self._voice.say(translation[0], final=False):
                    out.append(m.SendAudioDelta(response_id, item_id, chunk))
        if out:
            self._last_emit_ms = audio_ms
        return out

    def finish(
        self, hyps: Iterable[Hypothesis], audio_ms: int, *, asr: bool, audio: bool
    ) -> list[m.ServerCommand]:
        """The segment's audio ended (flushed ``hyps``): the final ASR and the response's end."""
        self._take(hyps)
        if self._partial:  # a recognizer that never finalised its last words: keep them
            self._take_final(self._partial)
        out: list[m.ServerCommand] = []
        transcript = " ".join(self._sentences)
        if asr:
            out.append(m.SendSourceFinal(self.item_id, transcript, self.language, EMOTION))
        text = self._join(self._translated)
        if self.response is None and not text:
            return out  # nothing heard, nothing to translate
        response_id, item_id = self._open(out)
        if audio:
            for chunk in self._voice.say(text, final=True):
                out.append(m.SendAudioDelta(response_id, item_id, chunk))
        out.append(m.SendTranslationFinal(response_id, item_id, text))
        if audio:
            out.append(m.FinishAudio(response_id, item_id))
        usage = self._usage(audio_ms, text)
        out += [
            m.FinishContentPart(response_id, item_id, text),
            m.FinishOutputItem(response_id, item_id, text),
            m.FinishResponse(response_id, item_id, text, usage),
        ]
        self.response = None
        return out

    def fail(self, code: str, message: str, *, asr: bool) -> list[m.ServerCommand]:
        """The recognizer failed: ``…transcription.failed``; an open response ends ``failed``."""
        out: list[m.ServerCommand] = []
        if asr:
            out.append(m.SendSourceFailed(self.item_id, code, message))
        if self.response is not None:
            response_id, item_id = self.response
            text = self._sent_translation[0]
            out += [
                m.FinishContentPart(response_id, item_id, text),
                m.FinishOutputItem(response_id, item_id, text),
                m.FinishResponse(response_id, item_id, text, WireUsage(), "failed"),
            ]
            self.response = None
        return out

    # ------------------------------------------------------------ internals

    def _take(self, hyps: Iterable[Hypothesis]) -> bool:
        """Apply hypotheses; True if a sentence finished."""
        ended = False
        for hyp in hyps:
            if hyp.final:
                self._take_final(hyp.text)
                ended = True
            else:
                self._partial = shape_sentence(hyp.text, final=False)
        return ended

    def _take_final(self, text: str) -> None:
        self._partial = ""
        sentence = shape_sentence(text, final=True)
        if sentence:
            self._sentences.append(sentence)
            rendition = self._translator.translate(sentence, self._target, final=True)
            self._translated.append(rendition.text + rendition.stash)

    def _join(self, parts: Iterable[str]) -> str:
        text = ""
        for part in parts:
            text = join_text(text, part)
        return text

    def _translation(self) -> tuple[str, str]:
        settled = self._join(self._translated)
        if not self._partial:
            return settled, ""
        preview = self._translator.translate(self._partial, self._target, final=False)
        text = join_text(settled, preview.text)
        stash = preview.stash
        if not preview.text and settled and stash and not _CJK.match(stash[0]):
            stash = " " + stash.lstrip()
        return text, stash

    def _open(self, out: list[m.ServerCommand]) -> tuple[str, str]:
        """The open response; opened (its four opening commands appended to ``out``) if none."""
        if self.response is None:
            item_id, response_id = self._new_id("item"), self._new_id("resp")
            self.response = (response_id, item_id)
            out += [
                m.CreateItem(item_id, self.item_id),
                m.CreateResponse(response_id, item_id),
                m.AddOutputItem(response_id, item_id),
                m.AddContentPart(response_id, item_id),
            ]
        return self.response

    def _usage(self, audio_ms: int, text: str) -> WireUsage:
        audio_in = math.ceil(audio_ms / _MS_PER_TOKEN)
        text_out = len(units(text))
        audio_out = math.ceil(self._voice.duration_ms / _MS_PER_TOKEN)
        return WireUsage(
            total_tokens=audio_in + text_out + audio_out,
            input_tokens=audio_in,
            output_tokens=text_out + audio_out,
            input_tokens_details={"text_tokens": 0, "audio_tokens": audio_in},
            output_tokens_details={"text_tokens": text_out, "audio_tokens": audio_out},
        )
