"""The result -> global-timeline mapping (``engine/actors/_transcript.py``): pure, no trio."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.actors._task import TaskResults
from engine.actors._transcript import MAX_KEYS, Transcript
from engine.events import Final, Partial, TranslatedAudio, Translation, Word
from engine.results import Heard, HeardWord, Translated, VoiceOut
from engine.timeline import TaskClock

RATE = 16000


def clock(offset: int = 0, sent: int = 10 * RATE) -> TaskClock:
    c = TaskClock(offset, RATE)
    c.advance(sent)
    return c


class TestHeard:
    def test_partial_is_the_sentence_in_progress(self) -> None:
        t, task = Transcript(RATE, utterance=False, transcribes=True), TaskResults()
        words = (HeardWord(100, 200, "hi"),)
        mapped = t.map(task, clock(16000), Heard(False, 100, None, "hi", words), 0, "t1")
        assert mapped.event == Partial(1, 17600, "hi", (Word(17600, 19200, "hi"),), rate=RATE)
        assert mapped.commit is None and task.pending_partial and t.finals == 0

    def test_final_settles_and_moves_the_commit_point(self) -> None:
        t, task = Transcript(RATE, utterance=False, transcribes=True), TaskResults()
        mapped = t.map(task, clock(), Heard(True, 0, 500, "one", key="7"), 0, "t1")
        assert isinstance(mapped.event, Final)
        assert (mapped.event.sentence_id, mapped.event.end, mapped.event.task_id) == (1, 8000, "t1")
        assert mapped.commit == 8000 and t.finals == task.finals == 1
        assert task.sentence_ids == {"7": 1} and not task.pending_partial
        nxt = t.map(task, clock(), Heard(False, 600, None, "two"), 8000, "t1")
        assert isinstance(nxt.event, Partial) and nxt.event.sentence_id == 2

    def test_a_final_before_the_commit_point_is_a_duplicate(self) -> None:
        t, task = Transcript(RATE, utterance=False, transcribes=True), TaskResults()
        t.map(task, clock(), Heard(True, 0, 500, "one"), 0, "t1")
        again = t.map(task, clock(), Heard(True, 0, 500, "one"), 8000, "t2")
        assert again.event is None and again.duplicate and t.finals == 1

    def test_the_first_final_is_never_a_duplicate(self) -> None:
        """A final that ends at 0 (an empty sentence at the start) still counts."""
        t = Transcript(RATE, utterance=False, transcribes=True)
        mapped = t.map(TaskResults(), clock(), Heard(True, 0, 0, ""), 0, "t1")
        assert isinstance(mapped.event, Final) and not mapped.duplicate

    def test_an_utterance_model_is_done_after_its_final(self) -> None:
        t, task = Transcript(RATE, utterance=True, transcribes=True), TaskResults()
        t.map(task, clock(), Heard(True, 0, 500, "one"), 0, "t1")
        assert task.utterance_done

    def test_task_time_maps_through_padding_and_offset(self) -> None:
        c = TaskClock(RATE, RATE)
        c.advance(RATE)  # 1 s of audio at global 1 s
        c.pad(RATE)  # 1 s keep-alive: not on the global timeline
        c.advance(RATE)
        t = Transcript(RATE, utterance=False, transcribes=True)
        mapped = t.map(TaskResults(), c, Heard(True, 2500, 2900, "after"), 0, "t1")
        assert isinstance(mapped.event, Final)
        assert (mapped.event.start, mapped.event.end) == (2 * RATE + 8000, 2 * RATE + 14400)

    def test_a_final_that_ends_at_a_skip_ends_before_the_hole(self) -> None:
        """The source skipped 1 s after the sentence: its end (and its words') is where
        the audio stopped, and the commit point does not jump the hole."""
        c = TaskClock(0, RATE)
        c.advance(RATE)
        c.skip_to(2 * RATE)
        c.advance(RATE)
        t = Transcript(RATE, utterance=False, transcribes=True)
        words = (HeardWord(500, 1000, "end"),)
        mapped = t.map(TaskResults(), c, Heard(True, 0, 1000, "the end", words), 0, "t1")
        assert isinstance(mapped.event, Final)
        assert (mapped.event.start, mapped.event.end, mapped.commit) == (0, RATE, RATE)
        assert mapped.event.words == (Word(8000, RATE, "end"),)

    def test_keys_are_bounded(self) -> None:
        t, task = Transcript(RATE, utterance=False, transcribes=True), TaskResults()
        for n in range(MAX_KEYS + 5):
            t.map(task, clock(), Heard(True, n * 10, n * 10 + 5, "x", key=str(n)), 0, "t1")
        assert len(task.sentence_ids) == MAX_KEYS and "0" not in task.sentence_ids


class TestTranslated:
    def test_joins_its_source_sentence_by_key(self) -> None:
        t, task = Transcript(RATE, utterance=False, transcribes=True), TaskResults()
        t.map(task, clock(), Heard(True, 0, 500, "one", key="a"), 0, "t1")
        t.map(task, clock(), Heard(False, 600, None, "two", key="b"), 8000, "t1")
        late = t.map(task, clock(), Translated("zh", True, 0, 500, "一", key="a"), 8000, "t1")
        assert late.event == Translation("zh", 1, 0, 8000, "一", True, rate=RATE)
        assert late.commit is None

    def test_keyless_final_follows_its_final(self) -> None:
        t, task = Transcript(RATE, utterance=False, transcribes=True), TaskResults()
        t.map(task, clock(), Heard(True, 0, 500, "one"), 0, "t1")
        tr = t.map(task, clock(), Translated("zh", True, 0, 500, "一"), 8000, "t1")
        assert isinstance(tr.event, Translation) and tr.event.sentence_id == 1

    def test_without_source_text_a_final_translation_settles(self) -> None:
        t, task = Transcript(RATE, utterance=False, transcribes=False), TaskResults()
        part = t.map(task, clock(), Translated("zh", False, 0, None, "一"), 0, "t1")
        assert task.pending_partial and isinstance(part.event, Translation)
        assert part.event.sentence_id == 1 and part.event.end is None
        done = t.map(task, clock(), Translated("zh", True, 0, 500, "一二", key="k"), 0, "t1")
        assert done.commit == 8000 and t.finals == 1 and not task.pending_partial
        dup = t.map(task, clock(), Translated("zh", True, 0, 500, "一二", key="j"), 8000, "t2")
        assert dup.event is None and dup.duplicate


def test_voice_passes_through() -> None:
    t = Transcript(RATE, utterance=False, transcribes=True)
    mapped = t.map(TaskResults(), clock(), VoiceOut("r1", b"\x00\x01", 24000), 0, "t1")
    assert mapped == (TranslatedAudio("r1", b"\x00\x01", 24000), None, False)


# A clock's history: real audio sent, keep-alive padding, a skip of the source.
clock_steps = st.lists(
    st.tuples(st.sampled_from(["advance", "pad", "skip"]), st.integers(0, 3 * RATE)), max_size=6
)
word_times = st.tuples(st.integers(-500, 20_000), st.integers(-500, 20_000))


class TestWordsOnTheTimeline:
    @given(
        offset=st.integers(0, 100 * RATE),
        rate=st.sampled_from([8000, 16000]),
        steps=clock_steps,
        times=st.lists(word_times, min_size=1, max_size=8),
    )
    def test_every_word_maps_as_the_clock_maps_it(
        self, offset: int, rate: int, steps: list[tuple[str, int]], times: list[tuple[int, int]]
    ) -> None:
        """A sentence and its words map by TaskClock.to_global / to_global_end, whatever the
        clock's history (one offset for all while it is one straight run, else one by one)."""
        c = TaskClock(offset, rate)
        for step, samples in steps:
            if step == "advance":
                c.advance(samples)
            elif step == "pad":
                c.pad(samples)
            else:
                c.skip_to(c.global_end + samples)
        words = tuple(HeardWord(b, e, f"w{i}", ",") for i, (b, e) in enumerate(times))
        (begin, end), *_ = times
        t = Transcript(rate, utterance=False, transcribes=True)
        mapped = t.map(TaskResults(), c, Heard(False, begin, None, "x", words), 0, "t1")
        assert isinstance(mapped.event, Partial)
        expected = tuple(
            Word(c.to_global(w.begin_ms), c.to_global_end(w.end_ms), w.text, ",") for w in words
        )
        assert (mapped.event.start, mapped.event.words) == (c.to_global(begin), expected)
        final = t.map(TaskResults(), c, Heard(True, begin, end, "x", words), -1, "t1").event
        assert isinstance(final, Final)
        start = c.to_global(begin)
        assert (final.start, final.end) == (start, max(start, c.to_global_end(end)))
        assert final.words == expected
