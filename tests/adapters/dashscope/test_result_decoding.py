"""Results decoded straight into the engine's types (#11) equal the old per-word decoding.

The inference core decodes a sentence's ``words`` straight into
:class:`~engine.results.HeardWord` (``WireWord`` is one); before, it decoded
``WireWord``s with the wire's names and ``results_of`` built a ``HeardWord`` per
word in Python. :class:`OldWord` … :func:`old_results_of` are that old path, kept
here as the reference: for arbitrary wire results (fields missing, extra fields,
stashes, translations, pre-end hints), both give the same results, and the same
engine events once mapped onto the stream's timeline.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dashscope import messages as m
from adapters.dashscope.inference import InferenceClient
from adapters.dashscope.inference_connection import results_of
from engine.actors._task import TaskResults
from engine.actors._transcript import Transcript
from engine.results import Heard, HeardWord, Result, Translated
from engine.timeline import TaskClock

TASK_ID = "task-1"

# ------------------------------------------------------- the old decoding


class OldWord(msgspec.Struct, frozen=True):
    begin_time: int
    end_time: int
    text: str
    punctuation: str = ""
    fixed: bool | None = None
    speaker_id: int | None = None


class OldStash(msgspec.Struct, frozen=True):
    text: str = ""


class OldSentence(msgspec.Struct, frozen=True):
    begin_time: int
    text: str
    end_time: int | None = None
    sentence_id: int = -1
    sentence_end: bool = False
    heartbeat: bool = False
    words: list[OldWord] = []
    stash: OldStash | None = None
    vad_pre_end: bool | None = None
    pre_end_failed: bool | None = None


class OldTranslation(OldSentence, frozen=True):
    lang: str = ""


class OldOutput(msgspec.Struct, frozen=True):
    sentence: OldSentence | None = None
    transcription: OldSentence | None = None
    translations: list[OldTranslation] | None = None


def _old_heard(s: OldSentence) -> Heard:
    words = tuple(HeardWord(w.begin_time, w.end_time, w.text, w.punctuation) for w in s.words)
    final = s.sentence_end and s.end_time is not None
    return Heard(
        final,
        s.begin_time,
        s.end_time if final else None,
        s.text,
        words,
        s.stash.text if s.stash is not None else "",
        key=str(s.sentence_id),
        pre_end=bool(s.vad_pre_end) and not s.pre_end_failed,
    )


def old_results_of(output: OldOutput) -> list[Result]:
    results: list[Result] = [_old_heard(s) for s in (output.sentence, output.transcription) if s]
    for tr in output.translations or ():
        final = tr.sentence_end and tr.end_time is not None
        results.append(
            Translated(
                tr.lang,
                final,
                tr.begin_time,
                tr.end_time if final else None,
                tr.text,
                tr.stash.text if tr.stash is not None else "",
                key=str(tr.sentence_id),
            )
        )
    return results


# ----------------------------------------------------------- wire results

ms = st.integers(min_value=0, max_value=600_000)
texts = st.text(max_size=6)
extra = st.dictionaries(st.sampled_from(["fixed", "speaker_id", "x_new", "confidence"]), st.none())


@st.composite
def wire_words(draw: st.DrawFn) -> dict[str, Any]:
    word: dict[str, Any] = {"begin_time": draw(ms), "end_time": draw(ms), "text": draw(texts)}
    if draw(st.booleans()):
        word["punctuation"] = draw(st.sampled_from(["", ",", "。", "?"]))
    if draw(st.booleans()):
        word["fixed"] = draw(st.booleans())
    return word | draw(extra)


@st.composite
def sentences(draw: st.DrawFn, *, translation: bool = False) -> dict[str, Any]:
    s: dict[str, Any] = {"begin_time": draw(ms), "text": draw(texts)}
    optional: dict[str, Any] = {
        "end_time": draw(st.none() | ms),
        "sentence_id": draw(st.integers(min_value=0, max_value=50)),
        "sentence_end": draw(st.booleans()),
        "words": draw(st.lists(wire_words(), max_size=6)),
        "stash": draw(
            st.none()
            | st.fixed_dictionaries(
                {}, optional={"text": texts, "sentence_id": st.integers(0, 9), "words": st.just([])}
            )
        ),
        "vad_pre_end": draw(st.none() | st.booleans()),
        "pre_end_failed": draw(st.none() | st.booleans()),
        "current_time": draw(ms),
        "some_new_field": draw(st.none() | st.integers()),
    }
    if translation:
        optional["lang"] = draw(st.sampled_from(["en", "ja", "de"]))
    keep = draw(st.sets(st.sampled_from(sorted(optional))))
    return s | {k: v for k, v in optional.items() if k in keep}


@st.composite
def outputs(draw: st.DrawFn) -> dict[str, Any]:
    output: dict[str, Any] = {}
    if draw(st.booleans()):
        output["sentence"] = draw(sentences())
    if draw(st.booleans()):
        output["transcription"] = draw(sentences())
    if draw(st.booleans()) or not output:
        output["translations"] = draw(st.lists(sentences(translation=True), max_size=3))
    return output


def frame(output: dict[str, Any]) -> str:
    message = {
        "header": {"task_id": TASK_ID, "event": "result-generated", "attributes": {}},
        "payload": {"output": output, "usage": None},
    }
    return msgspec.json.encode(message).decode()


def streaming_client() -> InferenceClient:
    client = InferenceClient()
    client.send(m.RunTask(TASK_ID, "paraformer-realtime-v2", {}))
    client.receive_data(frame({}).replace("result-generated", "task-started"))
    assert [type(e) for e in client.events()] == [m.TaskStarted]
    return client


def new_results(output: dict[str, Any]) -> list[Result]:
    client = streaming_client()
    client.receive_data(frame(output))
    (event,) = client.events()
    assert isinstance(event, m.ResultGenerated), event
    return results_of(event.output)


def comparable(result: Result) -> Any:
    """A result with its words as plain tuples (a WireWord is a HeardWord subclass)."""
    if isinstance(result, Heard):
        words = tuple((w.begin_ms, w.end_ms, w.text, w.punctuation) for w in result.words)
        return (msgspec.structs.replace(result, words=()), words)
    return result


def events_of(results: list[Result]) -> list[Any]:
    """The engine events the results become on a stream (a clock with padding and a skip)."""
    clock = TaskClock(16000, 16000)
    clock.advance(16000)
    clock.pad(8000)
    clock.advance(16000)
    clock.skip_to(clock.global_end + 4000)
    clock.advance(160000)
    transcript, task = Transcript(16000, utterance=False, transcribes=True), TaskResults()
    return [transcript.map(task, clock, r, 0, TASK_ID).event for r in results]


class TestDecodedStraight:
    @settings(max_examples=300, deadline=None)
    @given(output=outputs())
    def test_equal_to_the_old_decoding(self, output: dict[str, Any]) -> None:
        """Any wire result: the same results as the old decoding, and the same events."""
        old = old_results_of(msgspec.json.decode(msgspec.json.encode(output), type=OldOutput))
        new = new_results(output)
        assert [comparable(r) for r in new] == [comparable(r) for r in old]
        assert events_of(new) == events_of(old)

    def test_words_are_decoded_as_heard_words(self) -> None:
        """No word is rebuilt: the decoded words are the Heard's, in order."""
        words = [{"begin_time": 10, "end_time": 20, "text": "a", "fixed": True, "x": 1}]
        output = {"sentence": {"begin_time": 0, "text": "a", "words": words}}
        client = streaming_client()
        client.receive_data(frame(output))
        (event,) = client.events()
        assert isinstance(event, m.ResultGenerated) and event.output.sentence is not None
        (heard,) = results_of(event.output)
        assert isinstance(heard, Heard)
        assert heard.words is event.output.sentence.words
        (word,) = heard.words
        assert isinstance(word, HeardWord) and isinstance(word, m.WireWord)
        assert (word.begin_ms, word.end_ms, word.text, word.punctuation) == (10, 20, "a", "")
        assert word.fixed is True

    def test_a_mistyped_word_is_still_a_violation(self) -> None:
        """A word whose time is a string fails decoding, as before."""
        words = [{"begin_time": "10", "end_time": 20, "text": "a"}]
        client = streaming_client()
        client.receive_data(frame({"sentence": {"begin_time": 0, "text": "a", "words": words}}))
        (event,) = client.events()
        assert isinstance(event, m.ProtocolViolation)
        assert "begin_time" in event.reason
