"""The console's status line, cut to the terminal's width."""

from __future__ import annotations

import pytest
from console_helpers import translation as tr
from hypothesis import given
from hypothesis import strategies as st

from engine.actors._statusline import (
    display_width,
    format_progress,
    format_status,
    format_translation_status,
)
from engine.events import Partial


class TestStatus:
    def test_fits(self) -> None:
        """A short partial prints whole, text and stash."""
        assert (
            format_status(Partial(0, 0, "hello ", stash="wor", stream="a"), 80) == "[a] hello wor"
        )

    def test_truncates_keeping_the_latest_words(self) -> None:
        """A long partial keeps its end behind an ellipsis, within width - 1 columns."""
        line = format_status(Partial(0, 0, "0123456789" * 3, stream="a"), 16)
        assert line == "[a] …0123456789"
        assert display_width(line) == 15

    def test_wide_characters_count_double(self) -> None:
        """CJK characters take two columns each."""
        line = format_status(Partial(0, 0, "你好世界欢迎光临", stream="a"), 12)
        assert line == "[a] …迎光临"
        assert display_width(line) == 11

    def test_tiny_terminal(self) -> None:
        """A terminal narrower than the prefix still gets a single short line."""
        assert format_status(Partial(0, 0, "hello", stream="abcdef"), 4) == "[ab"


class TestTranslationStatus:
    def test_fits(self) -> None:
        """Source preview then each language's preview, text and stash."""
        line = format_translation_status(
            Partial(0, 0, "hello ", stash="wor", stream="a"),
            [tr("hallo ", final=False, stash="We"), tr("salut", "fr", final=False)],
            80,
        )
        assert line == "[a] hello wor | de: hallo We | fr: salut"

    def test_translation_preview_alone(self) -> None:
        """After the source settled, the translation preview still shows."""
        assert format_translation_status(None, [tr("hallo", final=False)], 80) == "[a] de: hallo"

    def test_long_source_cannot_push_translations_off(self) -> None:
        """Room is shared fairly; each cut part keeps its newest words behind an ellipsis."""
        line = format_translation_status(
            Partial(0, 0, "0123456789" * 4, stream="a"), [tr("abc", final=False)], 30
        )
        assert line == "[a] …" + ("0123456789" * 4)[-14:] + " | de: abc"
        assert display_width(line) == 29

    def test_both_long(self) -> None:
        """Two long parts split the room evenly."""
        line = format_translation_status(
            Partial(0, 0, "a" * 50, stream="a"), [tr("b" * 50, final=False)], 31
        )
        assert line == "[a] …" + "a" * 8 + " | de: …" + "b" * 9
        assert display_width(line) == 30

    def test_wide_characters(self) -> None:
        """CJK previews are cut by columns, never past the width."""
        line = format_translation_status(
            Partial(0, 0, "hello world again", stream="a"),
            [tr("你好世界欢迎光临", "zh", final=False)],
            30,
        )
        assert display_width(line) <= 29
        assert line.startswith("[a] …") and " | zh: …" in line and line.endswith("光临")

    def test_tiny_terminal(self) -> None:
        """Too narrow for every part: the line is simply cut, still one line."""
        line = format_translation_status(
            Partial(0, 0, "hello", stream="a"), [tr("hallo", final=False)], 12
        )
        assert line == "[a] hello |"

    @given(
        source=st.none() | st.text(max_size=60),
        previews=st.lists(st.tuples(st.sampled_from(["de", "fr", "zh"]), st.text(max_size=60))),
        width=st.integers(min_value=1, max_value=120),
    )
    def test_never_wider_than_the_terminal(
        self, source: str | None, previews: list[tuple[str, str]], width: int
    ) -> None:
        """Whatever the texts, the status line fits in width - 1 columns and has no newline."""
        partial = None if source is None else Partial(0, 0, source, stream="s")
        shown = [tr(text, lang, final=False) for lang, text in previews]
        if partial is None and not shown:
            return
        line = format_translation_status(partial, shown, width)
        assert display_width(line) <= max(width - 1, 1)
        assert "\n" not in line and "\r" not in line

    def test_needs_something_to_show(self) -> None:
        """An empty status line is a bug."""
        with pytest.raises(ValueError, match="partial or a translation"):
            format_translation_status(None, [], 80)


class TestProgress:
    @pytest.mark.parametrize(
        ("heard", "duration", "elapsed", "text"),
        [
            (0.0, 60.0, 5.0, "0% ETA --:--"),
            (15.0, 60.0, 5.0, "25% ETA 0:15"),  # 3x real time: 45 s left take 15 s
            (30.0, 60.0, 30.0, "50% ETA 0:30"),
            (60.0, 60.0, 60.0, "99% ETA 0:00"),  # 100% is the done: line
            (1.0, 7200.0, 1.0, "0% ETA 1:59:59"),
            (5.0, 0.0, 1.0, "0% ETA 0:00"),
        ],
    )
    def test_percent_and_eta(
        self, heard: float, duration: float, elapsed: float, text: str
    ) -> None:
        assert format_progress(heard, duration, elapsed) == text

    def test_status_line_keeps_the_progress_and_cuts_the_text(self) -> None:
        partial = Partial(0, 0, "one two three four five six", stream="a")
        line = format_status(partial, 30, progress="25% ETA 0:15")
        assert line.startswith("[a] 25% ETA 0:15 · …")
        assert display_width(line) == 29 and line.endswith("six")
        assert format_status(None, 30, progress="25% ETA 0:15", stream="a") == "[a] 25% ETA 0:15"
