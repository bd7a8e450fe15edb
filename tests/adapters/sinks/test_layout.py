"""Subtitle line width and lines per cue: Whisper CLI semantics, split on word timings."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.sinks import CueLayout, SrtSink, VttSink, open_sinks
from adapters.sinks.layout import DEFAULT_LAYOUT, LONG_PAUSE_MS, Cue, layout_cues
from engine.events import Final, Word, samples_to_ms

RATE = 16_000
MS = RATE // 1000  # samples per ms


def sentence(
    words: list[str], *, step_ms: int = 400, start_ms: int = 1000, punct: str = "."
) -> Final:
    """A final whose words follow each other every ``step_ms``, each 300 ms long."""
    timed = tuple(
        Word((start_ms + i * step_ms) * MS, (start_ms + i * step_ms + 300) * MS, w)
        for i, w in enumerate(words)
    )
    text = " ".join(words) + punct
    return Final(0, start_ms * MS, timed[-1].end, text, timed)


LONG = "Good morning everyone and welcome to the quarterly meeting of the budget committee".split()  # noqa: SIM905


class TestLayout:
    def test_default_is_broadcast_42_by_2(self) -> None:
        assert CueLayout(42, 2) == DEFAULT_LAYOUT

    def test_lines_fill_greedily_and_cues_split_on_word_times(self) -> None:
        """Width 20, two lines: each line takes words while it stays within 20
        characters; the third line starts a new cue at its first word's start."""
        final = sentence(LONG)
        cues = layout_cues(final, CueLayout(20, 2))
        assert [c.lines for c in cues] == [
            ("Good morning", "everyone and welcome"),
            ("to the quarterly", "meeting of the"),
            ("budget committee.",),
        ]
        # word i starts at 1000 + 400 i ms and ends 300 ms later
        assert [(c.start_ms, c.end_ms) for c in cues] == [
            (1000, 2900),  # the sentence's start .. "welcome" (word 4) ends
            (3000, 5300),  # "to" (word 5) starts .. "the" (word 10) ends
            (5400, 6100),  # "budget" starts .. the sentence's end
        ]

    def test_width_alone_wraps_one_cue(self) -> None:
        """Without max_lines (Whisper: no --max_line_count) the sentence stays one cue."""
        final = sentence(LONG)
        (cue,) = layout_cues(final, CueLayout(30, None))
        assert cue.lines == (
            "Good morning everyone and",
            "welcome to the quarterly",
            "meeting of the budget",
            "committee.",
        )
        assert (cue.start_ms, cue.end_ms) == (1000, 6100)

    @pytest.mark.parametrize("layout", [CueLayout(None, None), CueLayout(None, 1)])
    def test_without_width_the_text_is_kept_as_it_is(self, layout: CueLayout) -> None:
        final = msgspec.structs.replace(sentence(LONG), text="first line\nsecond line")
        assert layout_cues(final, layout) == [Cue(1000, 6100, ("first line", "second line"))]

    def test_a_word_longer_than_the_width_gets_its_own_line(self) -> None:
        final = sentence(["a", "supercalifragilistic", "b"])
        (cue,) = layout_cues(final, CueLayout(8, 3))
        assert cue.lines == ("a", "supercalifragilistic", "b.")

    def test_a_long_pause_starts_a_new_cue(self) -> None:
        """A word starting more than 3 s after the previous one's start begins a cue,
        though its line has room (Whisper's long pause; only with both limits)."""
        final = sentence(["so", "then"], step_ms=LONG_PAUSE_MS + 1)
        cues = layout_cues(final, CueLayout(42, 2))
        assert [c.lines for c in cues] == [("so",), ("then.",)]
        assert cues[0].end_ms == 1300
        assert cues[1].start_ms == 1000 + LONG_PAUSE_MS + 1
        (one,) = layout_cues(final, CueLayout(42, None))
        assert one.lines == ("so then.",)

    def test_text_is_cut_at_words_so_punctuation_and_scripts_survive(self) -> None:
        """The cue text is the final's own text (no spaces added between CJK words,
        punctuation and casing kept), cut where each word begins."""
        words = ["今天", "天气", "晴朗", "温暖", "明天", "有雨"]
        timed = tuple(Word(i * 8000, i * 8000 + 6000, w) for i, w in enumerate(words))
        final = Final(0, 0, 48_000, "今天天气晴朗温暖，明天有雨。", timed)
        cues = layout_cues(final, CueLayout(5, 1))
        assert [c.lines for c in cues] == [("今天天气",), ("晴朗温暖，",), ("明天有雨。",)]
        assert [(c.start_ms, c.end_ms) for c in cues] == [(0, 875), (1000, 1875), (2000, 3000)]

    def test_case_and_punctuation_of_words_do_not_matter(self) -> None:
        timed = (Word(0, 8000, "hello"), Word(8000, 16000, "world", "!"))
        final = Final(0, 0, 16000, "Hello, World!", timed)
        assert [c.lines for c in layout_cues(final, CueLayout(6, 1))] == [("Hello,",), ("World!",)]

    @pytest.mark.parametrize(
        "words",
        [
            (),  # no word timings at all
            (Word(0, 8000, "nothing"), Word(8000, 16000, "matches")),  # not in the text
            (Word(8000, 16000, "alpha"), Word(0, 8000, "beta")),  # times out of order
            (Word(0, 8000, "alpha"), Word(8000, 99_999, "beta")),  # past the sentence
        ],
        ids=["none", "unmatched", "unordered", "outside"],
    )
    def test_without_usable_words_times_follow_characters(self, words: tuple[Word, ...]) -> None:
        """The text is cut at spaces and times interpolated by character position."""
        final = Final(0, 0, 32_000, "alpha beta gamma delta", words)  # 2 s, 22 characters
        cues = layout_cues(final, CueLayout(10, 1))
        assert [c.lines for c in cues] == [("alpha beta",), ("gamma",), ("delta",)]
        assert [(c.start_ms, c.end_ms) for c in cues] == [(0, 909), (1000, 1454), (1545, 2000)]

    def test_blank_text_has_no_cue(self) -> None:
        assert layout_cues(Final(0, 0, 100, " \n "), DEFAULT_LAYOUT) == []

    @pytest.mark.parametrize("field", ["max_line_width", "max_lines"])
    def test_limits_are_positive(self, field: str) -> None:
        with pytest.raises(ValueError, match=f"{field} must be at least 1"):
            CueLayout(**{field: 0})


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=14)


@given(
    words=st.lists(st.tuples(_WORD, st.integers(0, 4000), st.integers(1, 900)), min_size=1),
    width=st.integers(1, 60),
    max_lines=st.one_of(st.none(), st.integers(1, 4)),
)
def test_layout_properties(
    words: list[tuple[str, int, int]], width: int, max_lines: int | None
) -> None:
    """For any words, gaps and limits: no text is lost or added; a line exceeds the
    width only when it is one word; a cue has at most max_lines lines; lines are
    filled greedily; cues are in order, never overlap, and cover the sentence."""
    timed, t = [], 500
    for text, gap_ms, length_ms in words:
        t += gap_ms
        timed.append(Word(t * MS, (t + length_ms) * MS, text))
        t += length_ms
    final = Final(0, 500 * MS, t * MS, " ".join(w.text for w in timed) + ".", tuple(timed))
    cues = layout_cues(final, CueLayout(width, max_lines))
    lines = [line for cue in cues for line in cue.lines]

    assert " ".join(lines) == final.text
    for line in lines:
        assert len(line) <= width or " " not in line
    if max_lines is not None:
        assert all(1 <= len(cue.lines) <= max_lines for cue in cues)
    else:
        assert len(cues) == 1
    for before, after in itertools.pairwise(lines):
        assert len(f"{before} {after.split()[0]}") > width or _pause_between(timed, before)
    assert cues[0].start_ms == 500
    assert cues[-1].end_ms == samples_to_ms(final.end, RATE)
    for cue in cues:
        assert cue.start_ms < cue.end_ms
    for before, after in itertools.pairwise(cues):
        assert before.end_ms <= after.start_ms


def _pause_between(timed: list[Word], line: str) -> bool:
    """Whether the word after ``line``'s last word starts a long pause later (the
    pause, not the width, broke the line). Word texts may repeat, so any match counts."""
    last = line.split()[-1].rstrip(".")
    return any(
        a.text == last and (b.start - a.start) // MS > LONG_PAUSE_MS
        for a, b in itertools.pairwise(timed)
    )


class TestSinks:
    @pytest.mark.parametrize(("cls", "decimal"), [(SrtSink, ","), (VttSink, ".")])
    def test_a_long_sentence_becomes_numbered_cues(
        self, tmp_path: Path, cls: type[SrtSink | VttSink], decimal: str
    ) -> None:
        """Numbers run on across sentences; each sentence's cues are one record."""
        path = tmp_path / "out.sub"
        sink = cls(path, layout=CueLayout(20, 2))
        sink.write(sentence(LONG))
        first = path.read_text()
        sink.write(msgspec.structs.replace(sentence(["thanks"], start_ms=9000), sentence_id=1))
        sink.close()
        text = path.read_text()
        assert text.startswith(first)
        body = text.removeprefix("WEBVTT\n\n").split("\n\n")
        assert [block.split("\n", 1)[0] for block in body if block] == ["1", "2", "3", "4"]
        assert (
            f"2\n00:00:03{decimal}000 --> 00:00:05{decimal}300\nto the quarterly\nmeeting of the\n"
            in text
        )
        assert body[3].endswith("thanks.")

    def test_the_default_wraps_at_42(self, tmp_path: Path) -> None:
        path = tmp_path / "out.srt"
        sink = SrtSink(path)
        sink.write(sentence(LONG))
        sink.close()
        assert path.read_text() == (
            "1\n00:00:01,000 --> 00:00:06,100\n"
            "Good morning everyone and welcome to the\n"
            "quarterly meeting of the budget committee.\n\n"
        )

    def test_bilingual_cues_keep_one_line_per_language(self, tmp_path: Path) -> None:
        """Translations carry no word timings: a bilingual cue is not split."""
        from engine.events import Translation

        path = tmp_path / "out.srt"
        sink = SrtSink(path, languages=["de"], layout=CueLayout(10, 1))
        sink.write(sentence(LONG))
        sink.write(Translation("de", 0, 16_000, None, "Guten Morgen allerseits", True))
        sink.close()
        (cue,) = path.read_text().strip().split("\n\n")
        assert cue.split("\n")[2:] == [" ".join(LONG) + ".", "Guten Morgen allerseits"]

    def test_open_sinks_passes_the_layout(self, tmp_path: Path) -> None:
        sinks = open_sinks(tmp_path, "s", ["srt", "vtt", "txt"], layout=CueLayout(20, 1))
        for sink in sinks:
            sink.write(sentence(LONG))
            sink.close()
        srt = (tmp_path / "s.srt").read_text()
        assert srt.count(" --> ") == 5
        assert (tmp_path / "s.vtt").read_text().count(" --> ") == 5
        assert (tmp_path / "s.txt").read_text() == " ".join(LONG) + ".\n"  # txt: unchanged
