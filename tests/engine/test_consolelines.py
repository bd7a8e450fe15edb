"""The console's one-line renderings of events."""

from __future__ import annotations

import pytest
from console_helpers import translation as tr
from hypothesis import given
from hypothesis import strategies as st

from engine.actors._consolelines import (
    format_ended,
    format_error,
    format_final,
    format_gap,
    format_line,
    format_metrics,
    format_reconnecting,
    format_transcript,
    format_translation,
)
from engine.events import (
    AudioFrame,
    AudioGap,
    DeviceLost,
    DeviceRestored,
    Final,
    Partial,
    Reconnecting,
    SessionOpened,
    StreamEnded,
    StreamError,
    TaskMetrics,
)


class TestFormat:
    def test_final(self) -> None:
        """A final is '[stream] text'."""
        assert format_final(Final(0, 0, 1, "hello world", stream="a")) == "[a] hello world"

    def test_final_without_stream_has_no_prefix(self) -> None:
        """A single anonymous stream prints bare text."""
        assert format_final(Final(0, 0, 1, "hi")) == "hi"

    def test_reconnecting(self) -> None:
        """Reconnects name the attempt, the delay and the cause."""
        event = Reconnecting(2, 1.5, "connection reset", stream="a")
        assert (
            format_reconnecting(event) == "[a] reconnecting (attempt 2 in 1.5 s): connection reset"
        )

    def test_error(self) -> None:
        """Errors print their message."""
        event = StreamError("auth", "API key rejected; set DASHSCOPE_API_KEY", stream="a")
        assert format_error(event) == "[a] error: API key rejected; set DASHSCOPE_API_KEY"

    @pytest.mark.parametrize(
        ("start", "end", "rate", "span"),
        [
            (196_800, 225_600, 16_000, "12.300–14.100"),
            (98_400, 112_800, 8_000, "12.300–14.100"),
            (0, 7, 8_000, "0.000–0.000"),
            (16_000 * 3_723 + 16, 16_000 * 3_724, 16_000, "3723.001–3724.000"),
        ],
    )
    def test_gap(self, start: int, end: int, rate: int, span: str) -> None:
        """Gaps print exact seconds with ms, from samples at the gap's rate."""
        event = AudioGap(start, end, "replay-overflow", rate=rate, stream="a")
        assert format_gap(event) == f"[a] lost audio {span} s (replay-overflow)"

    def test_metrics(self) -> None:
        """Task metrics print one line with ms delays."""
        event = TaskMetrics("t", "req-1", 123.4, 456.0, 10_240, 3, stream="a")
        assert format_metrics(event) == (
            "[a] request_id=req-1 first_package_delay=123 ms last_package_delay=456 ms"
            " finals=3 audio=10.2 s"
        )

    def test_metrics_not_measured(self) -> None:
        """Missing delays and request ids print as n/a."""
        event = TaskMetrics("t", "", None, None, 0, 0, stream="a")
        assert format_metrics(event) == (
            "[a] request_id=n/a first_package_delay=n/a last_package_delay=n/a finals=0 audio=0.0 s"
        )

    def test_ended(self) -> None:
        """The end of a stream prints its status, finals and lost audio."""
        event = StreamEnded("partial", finals=3, audio_lost_ms=1800, stream="a")
        assert (
            format_ended(event) == "[a] done: partial, 3 finals, 0 reconnects, audio lost 1800 ms"
        )

    def test_silent_events(self) -> None:
        """Partials, audio, session events and empty finals print no line."""
        for event in [
            Partial(0, 0, "x"),
            AudioFrame(0, b"", 16_000),
            SessionOpened("t", 0),
            Final(0, 0, 1, " "),
        ]:
            assert format_line(event) is None

    def test_control_characters_are_neutralised(self) -> None:
        """Text from the network cannot move the cursor or break the line."""
        line = format_final(Final(0, 0, 1, "a\x1b[2Jb\nc", stream="s\r"))
        assert line == "[s] a [2Jb c"


class TestDeviceLines:
    def test_device_lost_and_restored(self) -> None:
        """A capture device's loss and return are one line each."""
        lost = DeviceLost("pulse", 16000, "finished", stream="mic")
        back = DeviceRestored("pulse", 48000, 2.04, stream="mic")
        assert format_line(lost) == "[mic] device 'pulse' lost (finished); retrying"
        assert format_line(back) == "[mic] device 'pulse' back after 2.0 s"


class TestTranslationFormat:
    def test_transcript_and_translation_lines(self) -> None:
        """Settled text prints as the vendor samples do, with the stream prefix."""
        assert format_transcript(Final(0, 0, 1, "hello", stream="a")) == "[a] Transcript ==> hello"
        assert format_translation(tr("hallo")) == "[a] Translate ==> [de] hallo"
        assert format_transcript(Final(0, 0, 1, "hi")) == "Transcript ==> hi"

    def test_format_line_modes(self) -> None:
        """Only translation mode prints final translations; previews and blanks never print."""
        final = Final(0, 0, 1, "hello", stream="a")
        assert format_line(final) == "[a] hello"
        assert format_line(final, translate=True) == "[a] Transcript ==> hello"
        assert format_line(tr("hallo")) is None
        assert format_line(tr("hallo"), translate=True) == "[a] Translate ==> [de] hallo"
        assert format_line(tr("hal", final=False), translate=True) is None
        assert format_line(tr(" "), translate=True) is None

    def test_translation_text_is_neutralised(self) -> None:
        """Language and text from the network cannot inject control sequences."""
        line = format_translation(tr("a\x1b[2Jb\nc", lang="d\re"))
        assert line == "[a] Translate ==> [d e] a [2Jb c"


class TestClean:
    """``clean``: one translate table, the same as a category test per character."""

    def test_the_table_is_unicodes_cc_zl_zp(self) -> None:
        """Every code point Python's unicodedata puts in Cc, Zl or Zp, and no other."""
        import sys
        import unicodedata

        from engine.actors import _consolelines

        wanted = {"Cc", "Zl", "Zp"}
        expected = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in wanted]
        assert [ord(ch) for ch in _consolelines._UNPRINTABLE] == expected

    @given(st.text())
    def test_as_the_per_character_rule(self, text: str) -> None:
        """Any text: control characters and separators become spaces, then stripped."""
        import unicodedata

        from engine.actors._consolelines import clean

        slow = "".join(
            " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text
        ).strip()
        assert clean(text) == slow
