from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.sinks import FORMATS, JsonlSink, Sink, SrtSink, TextSink, VttSink, open_sinks
from adapters.sinks.base import AppendOnlyFile, text_lines
from adapters.sinks.subtitles import (
    cue_span_ms,
    format_srt_cue,
    format_timestamp,
    format_vtt_cue,
)
from engine.errors import ConfigError
from engine.events import (
    AudioFrame,
    AudioGap,
    Event,
    Final,
    Partial,
    Reconnecting,
    SessionOpened,
    SpeechStarted,
    StreamEnded,
    StreamError,
    TaskMetrics,
    TranslatedAudio,
    Translation,
    Word,
    decode_jsonl_line,
)

FINALS = [
    Final(0, 16_000, 40_000, "Hello world.", stream="a"),
    Final(1, 48_000, 80_000, "Second <line> & more", stream="a"),
    Final(2, 57_600_000, 57_640_000, "After an hour.", stream="a"),
]

SRT = (
    "1\n00:00:01,000 --> 00:00:02,500\nHello world.\n\n"
    "2\n00:00:03,000 --> 00:00:05,000\nSecond <line> & more\n\n"
    "3\n01:00:00,000 --> 01:00:02,500\nAfter an hour.\n\n"
)

VTT = (
    "WEBVTT\n\n"
    "1\n00:00:01.000 --> 00:00:02.500\nHello world.\n\n"
    "2\n00:00:03.000 --> 00:00:05.000\nSecond &lt;line&gt; &amp; more\n\n"
    "3\n01:00:00.000 --> 01:00:02.500\nAfter an hour.\n\n"
)

TXT = "Hello world.\nSecond <line> & more\nAfter an hour.\n"


def _write_all(sink: Sink, events: Sequence[Event]) -> None:
    for event in events:
        sink.write(event)
    sink.close()


class TestTimestamps:
    @pytest.mark.parametrize(
        ("ms", "srt", "vtt"),
        [
            (0, "00:00:00,000", "00:00:00.000"),
            (999, "00:00:00,999", "00:00:00.999"),
            (59_999, "00:00:59,999", "00:00:59.999"),
            (3_599_999, "00:59:59,999", "00:59:59.999"),
            (3_600_000, "01:00:00,000", "01:00:00.000"),
            (3_723_004, "01:02:03,004", "01:02:03.004"),
            (100 * 3_600_000 + 1, "100:00:00,001", "100:00:00.001"),
        ],
    )
    def test_format(self, ms: int, srt: str, vtt: str) -> None:
        """Milliseconds format as HH:MM:SS,mmm / HH:MM:SS.mmm; hours grow past 99."""
        assert format_timestamp(ms, decimal=",") == srt
        assert format_timestamp(ms, decimal=".") == vtt

    def test_negative_is_rejected(self) -> None:
        """A negative time is a bug upstream, not a cue."""
        with pytest.raises(ValueError, match="negative"):
            format_timestamp(-1, decimal=",")

    def test_8khz_span(self) -> None:
        """Samples convert at the final's own rate, rounding down to whole ms."""
        final = Final(0, 12_345, 8_000 * 3_601 + 7, "x", rate=8_000)
        assert cue_span_ms(final) == (1_543, 3_601_000)

    def test_zero_length_cue_lasts_one_ms(self) -> None:
        """A sentence that ends where it starts still gets a valid cue."""
        assert cue_span_ms(Final(0, 16_000, 16_000, "x")) == (1_000, 1_001)


class TestCueFormat:
    def test_srt_multiple_lines(self) -> None:
        """Cue text is a list of lines, one per output line."""
        cue = format_srt_cue(7, 0, 1_000, ["hello", "bonjour"])
        assert cue == "7\n00:00:00,000 --> 00:00:01,000\nhello\nbonjour\n\n"

    def test_vtt_escapes_markup_and_arrow(self) -> None:
        """VTT cue text escapes &, < and > so '-->' cannot end the cue."""
        cue = format_vtt_cue(1, 0, 1_000, ["a --> b <i>"])
        assert cue == "1\n00:00:00.000 --> 00:00:01.000\na --&gt; b &lt;i&gt;\n\n"

    def test_text_lines_drop_blank_and_control(self) -> None:
        """Blank lines would end a cue and control characters would corrupt it."""
        assert text_lines(" one\r\n\n two\x1b[2K \u2028three ") == ["one", "two [2K", "three"]


class TestTextAndSubtitles:
    @pytest.mark.parametrize(
        ("cls", "suffix", "expected"),
        [(TextSink, "txt", TXT), (SrtSink, "srt", SRT), (VttSink, "vtt", VTT)],
    )
    def test_exact_output(
        self, tmp_path: Path, cls: type[TextSink | SrtSink | VttSink], suffix: str, expected: str
    ) -> None:
        """Known finals give exactly the expected file; other events are ignored."""
        path = tmp_path / f"out.{suffix}"
        events: list[Event] = [
            Partial(0, 16_000, "Hel", stream="a"),
            FINALS[0],
            AudioFrame(0, b"\0\0", 16_000, stream="a"),
            FINALS[1],
            Final(9, 60_000, 60_000, "  \n ", stream="a"),
            FINALS[2],
        ]
        _write_all(cls(path), events)
        assert path.read_text(encoding="utf-8") == expected

    @pytest.mark.parametrize(
        ("cls", "suffix", "expected"),
        [(TextSink, "txt", TXT), (SrtSink, "srt", SRT), (VttSink, "vtt", VTT)],
    )
    def test_valid_prefix_after_each_write(
        self, tmp_path: Path, cls: type[TextSink | SrtSink | VttSink], suffix: str, expected: str
    ) -> None:
        """After every write the file is a prefix of the final file ending at a record."""
        path = tmp_path / f"out.{suffix}"
        sink = cls(path)
        sizes = []
        for final in FINALS:
            sink.write(final)
            current = path.read_text(encoding="utf-8")
            assert expected.startswith(current)
            assert current.endswith("\n\n" if suffix != "txt" else "\n")
            sizes.append(len(current))
        sink.close()
        assert sizes == sorted(set(sizes))

    def test_multiline_text_is_one_txt_line(self, tmp_path: Path) -> None:
        """A final with a newline still takes exactly one line of the .txt."""
        path = tmp_path / "a.txt"
        _write_all(TextSink(path), [Final(0, 0, 1, "one\ntwo")])
        assert path.read_text(encoding="utf-8") == "one two\n"

    def test_reopen_truncates_and_creates_dirs(self, tmp_path: Path) -> None:
        """Opening creates missing directories and starts the file fresh."""
        path = tmp_path / "deep" / "er" / "a.srt"
        _write_all(SrtSink(path), FINALS)
        _write_all(SrtSink(path), FINALS[:1])
        assert path.read_text(encoding="utf-8") == SRT.split("2\n")[0]

    def test_close_is_idempotent_and_write_after_close_fails(self, tmp_path: Path) -> None:
        """close() twice is fine; writing afterwards is a bug and raises."""
        sink = VttSink(tmp_path / "a.vtt")
        sink.close()
        sink.close()
        with pytest.raises(ValueError, match="closed"):
            sink.write(FINALS[0])

    def test_failed_write_keeps_numbering_contiguous(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A cue that failed to reach the disk does not use up its number."""
        path = tmp_path / "a.srt"
        sink = SrtSink(path)
        sink.write(FINALS[0])
        real_write = os.write

        def full(fd: int, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(OSError, match="No space"):
            sink.write(FINALS[1])
        monkeypatch.setattr(os, "write", real_write)
        sink.write(FINALS[1])
        sink.close()
        assert path.read_text(encoding="utf-8") == SRT.rsplit("3\n", 1)[0]


class TestAppendOnlyFile:
    def test_short_write_is_completed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A short write is continued so the record lands whole."""
        real_write = os.write
        f = AppendOnlyFile(tmp_path / "a")
        monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
        f.append(b"0123456789")
        f.close()
        assert (tmp_path / "a").read_bytes() == b"0123456789"

    def test_failure_mid_record_rolls_back(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When the rest of a record cannot be written, the partial record is removed."""
        real_write = os.write
        f = AppendOnlyFile(tmp_path / "a")
        f.append(b"first\n")
        calls = []

        def half_then_full(fd: int, data: bytes) -> int:
            calls.append(len(data))
            if len(calls) == 1:
                return real_write(fd, bytes(data[:4]))
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", half_then_full)
        with pytest.raises(OSError, match="No space"):
            f.append(b"second\n")
        monkeypatch.setattr(os, "write", real_write)
        f.append(b"third\n")
        f.close()
        assert (tmp_path / "a").read_bytes() == b"first\nthird\n"


_text = st.text(max_size=20)
_int = st.integers(min_value=0, max_value=2**40)
_float = st.floats(allow_nan=False, allow_infinity=False)
_stream = st.text(max_size=8)
_envelope = {"stream": _stream, "t": _float}
_rate = st.sampled_from([8_000, 16_000])


@st.composite
def _finals(draw: st.DrawFn) -> Final:
    start = draw(_int)
    end = start + draw(st.integers(min_value=0, max_value=10**6))
    words = draw(st.lists(st.builds(Word, _int, _int, _text, _text), max_size=3))
    return Final(
        draw(_int),
        start,
        end,
        draw(_text),
        words=tuple(words),
        rate=draw(_rate),
        task_id=draw(_text),
        stream=draw(_stream),
        t=draw(_float),
    )


_events = st.one_of(
    _finals(),
    st.builds(Partial, _int, _int, _text, stash=_text, rate=_rate, **_envelope),
    st.builds(Translation, _text, _int, _int, st.none() | _int, _text, st.booleans(), **_envelope),
    st.builds(SpeechStarted, _int, **_envelope),
    st.builds(SessionOpened, _text, _int, attempt=_int, **_envelope),
    st.builds(Reconnecting, _int, _float, _text, **_envelope),
    st.builds(StreamError, _text, _text, permanent=st.booleans(), **_envelope),
    st.builds(
        TaskMetrics, _text, _text, st.none() | _float, st.none() | _float, _int, _int, **_envelope
    ),
    st.builds(StreamEnded, _text, finals=_int, audio_lost_ms=_int, **_envelope),
    _int.flatmap(lambda s: st.builds(AudioGap, st.just(s), st.just(s + 1), _text)),
    st.builds(AudioFrame, _int, st.binary(max_size=8), _rate, **_envelope),
    st.builds(TranslatedAudio, _text, st.binary(max_size=8), **_envelope),
)


class TestJsonl:
    @settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(events=st.lists(_events, max_size=40))
    def test_round_trip(self, tmp_path: Path, events: list[Event]) -> None:
        """Every non-audio event decodes back equal, in order; audio is left out."""
        path = tmp_path / "events.jsonl"
        _write_all(JsonlSink(path, max_buffered=5), events)
        lines = path.read_bytes().splitlines(keepends=True)
        decoded = [decode_jsonl_line(line) for line in lines]
        assert decoded == [e for e in events if not isinstance(e, AudioFrame | TranslatedAudio)]

    def test_flushes_at_final_and_buffers_partials(self, tmp_path: Path) -> None:
        """Partials wait in memory until a final; the final flushes them in order."""
        path = tmp_path / "events.jsonl"
        sink = JsonlSink(path)
        sink.write(Partial(0, 0, "he"))
        sink.write(Partial(0, 0, "hello"))
        assert path.read_bytes() == b""
        sink.write(FINALS[0])
        assert [decode_jsonl_line(x) for x in path.read_bytes().splitlines()] == [
            Partial(0, 0, "he"),
            Partial(0, 0, "hello"),
            FINALS[0],
        ]
        sink.write(Partial(1, 0, "x"))
        sink.close()
        assert decode_jsonl_line(path.read_bytes().splitlines()[-1]) == Partial(1, 0, "x")

    def test_buffer_is_bounded(self, tmp_path: Path) -> None:
        """At most max_buffered lines wait in memory; the file grows in whole lines."""
        path = tmp_path / "events.jsonl"
        sink = JsonlSink(path, max_buffered=3)
        for i in range(7):
            sink.write(Partial(i, 0, "p"))
        assert len(path.read_bytes().splitlines()) == 6
        assert path.read_bytes().endswith(b"\n")
        sink.close()
        assert len(path.read_bytes().splitlines()) == 7

    def test_lifecycle_events_flush(self, tmp_path: Path) -> None:
        """A gap or an error reaches the file at once, not at the next final."""
        path = tmp_path / "events.jsonl"
        sink = JsonlSink(path)
        sink.write(AudioGap(0, 16_000, "connection-lost"))
        assert decode_jsonl_line(path.read_bytes()) == AudioGap(0, 16_000, "connection-lost")
        sink.close()


class TestOpenSinks:
    def test_opens_each_format_once(self, tmp_path: Path) -> None:
        """Each format opens stem.<format> in out_dir, in order, duplicates once."""
        sinks = open_sinks(tmp_path / "out", "talk", ["srt", "TXT", "srt", "jsonl", "vtt"])
        try:
            assert [type(s) for s in sinks] == [SrtSink, TextSink, JsonlSink, VttSink]
            assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
                "talk.jsonl",
                "talk.srt",
                "talk.txt",
                "talk.vtt",
            ]
        finally:
            for sink in sinks:
                sink.close()

    def test_unknown_format(self, tmp_path: Path) -> None:
        """An unknown format is a one-line ConfigError listing the valid ones; no file is made."""
        with pytest.raises(ConfigError) as info:
            open_sinks(tmp_path / "out", "talk", ["srt", "docx"])
        message = str(info.value)
        assert "\n" not in message
        assert "'docx'" in message
        assert all(name in message for name in FORMATS)
        assert not (tmp_path / "out").exists()

    def test_unwritable_directory(self, tmp_path: Path) -> None:
        """A file that cannot be created is a ConfigError naming it."""
        (tmp_path / "out").write_text("not a directory")
        with pytest.raises(ConfigError, match="cannot create output file"):
            open_sinks(tmp_path / "out", "talk", ["txt"])


class TestTextLines:
    """``text_lines``: one translate table, the same as a category test per character."""

    def test_the_table_is_unicodes_cc(self) -> None:
        """Every code point Python's unicodedata puts in Cc, and no other."""
        import sys
        import unicodedata

        from adapters.sinks import base

        cc = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cc"]
        assert [ord(ch) for ch in base._CONTROLS] == cc

    @given(st.text())
    def test_as_the_per_character_rule(self, text: str) -> None:
        """Any text: per line, control characters become spaces; blank lines go."""
        import unicodedata

        lines = (
            "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in line).strip()
            for line in text.splitlines()
        )
        assert text_lines(text) == [line for line in lines if line]


class TestTouchesFile:
    """``touches_file`` says False only for batches whose writes stay in memory: the
    renderer writes those without a thread hop, so a wrong False would block the loop."""

    @pytest.mark.parametrize("fmt", ["srt", "vtt", "txt", "jsonl"])
    def test_partials_stay_in_memory_finals_reach_the_file(self, tmp_path: Path, fmt: str) -> None:
        (sink,) = open_sinks(tmp_path, "s", [fmt])
        path = tmp_path / f"s.{fmt}"
        partials = [Partial(0, i, "he") for i in range(5)]
        assert not sink.touches_file(partials)
        size = path.stat().st_size
        for event in partials:
            sink.write(event)
        assert path.stat().st_size == size  # nothing was written: the answer was true
        final = Final(0, 0, 16_000, "hello")
        assert sink.touches_file([*partials, final])
        sink.close()

    def test_jsonl_says_so_at_its_buffer_bound(self, tmp_path: Path) -> None:
        """Partials are written once max_buffered lines wait: the batch that fills it touches."""
        sink = JsonlSink(tmp_path / "s.jsonl", max_buffered=4)
        partials = [Partial(0, i, "he") for i in range(4)]
        assert not sink.touches_file(partials[:3])
        assert sink.touches_file(partials)
        for event in partials[:3]:
            sink.write(event)
        assert not (tmp_path / "s.jsonl").read_bytes()
        assert sink.touches_file(partials[3:])
        sink.write(partials[3])
        assert len((tmp_path / "s.jsonl").read_bytes().splitlines()) == 4
        sink.close()
