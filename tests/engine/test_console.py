from __future__ import annotations

import io

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from engine.actors import console
from engine.actors.console import (
    ERASE_LINE,
    ConsoleView,
    display_width,
    format_ended,
    format_error,
    format_final,
    format_gap,
    format_line,
    format_metrics,
    format_reconnecting,
    format_status,
    format_transcript,
    format_translation,
    format_translation_status,
)
from engine.events import (
    AudioFrame,
    AudioGap,
    Event,
    Final,
    Partial,
    Reconnecting,
    SessionOpened,
    StreamEnded,
    StreamError,
    TaskMetrics,
    Translation,
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


def _view(tty: bool) -> ConsoleView:
    return ConsoleView(tty=tty, width=lambda: 40)


class TestView:
    def test_tty_partial_rewrites_status_line(self) -> None:
        """On a TTY each partial rewrites the status line in place."""
        view = _view(tty=True)
        assert view.render(Partial(0, 0, "he", stream="a")) == ERASE_LINE + "[a] he"
        assert view.render(Partial(0, 0, "hello", stream="a")) == ERASE_LINE + "[a] hello"

    def test_tty_final_erases_prints_and_redraws(self) -> None:
        """A final erases the status, prints its line, then redraws the other stream's partial."""
        view = _view(tty=True)
        view.render(Partial(0, 0, "bonjour", stream="b"))
        view.render(Partial(0, 0, "hel", stream="a"))
        out = view.render(Final(0, 0, 1, "hello", stream="a"))
        assert out == ERASE_LINE + "[a] hello\n" + "[b] bonjour"

    def test_tty_most_recent_stream_wins(self) -> None:
        """The status line shows the stream that spoke last."""
        view = _view(tty=True)
        view.render(Partial(0, 0, "one", stream="a"))
        assert view.render(Partial(0, 0, "two", stream="b")) == ERASE_LINE + "[b] two"
        assert view.render(Partial(0, 0, "three", stream="a")) == ERASE_LINE + "[a] three"

    def test_tty_newer_partial_survives_older_final(self) -> None:
        """A final for sentence 0 does not clear the partial of sentence 1."""
        view = _view(tty=True)
        view.render(Partial(1, 0, "next", stream="a"))
        out = view.render(Final(0, 0, 1, "done", stream="a"))
        assert out == ERASE_LINE + "[a] done\n[a] next"

    def test_tty_finish_erases_status(self) -> None:
        """The status line is erased at the end, leaving a clean terminal."""
        view = _view(tty=True)
        view.render(Partial(0, 0, "x", stream="a"))
        assert view.finish() == ERASE_LINE
        assert view.finish() == ""

    def test_not_tty_prints_lines_only(self) -> None:
        """Without a TTY partials print nothing and no control character is written."""
        view = _view(tty=False)
        events: list[Event] = [
            Partial(0, 0, "he", stream="a"),
            Final(0, 0, 1, "hello", stream="a"),
            Reconnecting(1, 0.5, "reset", stream="a"),
            StreamEnded("ok", finals=1, stream="a"),
        ]
        out = "".join(view.render(e) for e in events) + view.finish()
        assert out == (
            "[a] hello\n[a] reconnecting (attempt 1 in 0.5 s): reset\n"
            "[a] done: ok, 1 finals, 0 reconnects, audio lost 0 ms\n"
        )


class TestRun:
    async def test_tty(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The actor writes the view's output and erases the status line at the end."""
        monkeypatch.setattr(console, "terminal_width", lambda: 40)
        out = io.StringIO()
        send, inbox = trio.open_memory_channel[Event](4)
        async with send:
            await send.send(Partial(0, 0, "he", stream="a"))
            await send.send(Final(0, 0, 1, "hello", stream="a"))
            await send.send(Partial(1, 0, "x", stream="a"))
        with trio.fail_after(10):
            await console.run(inbox=inbox, out=out, tty=True)
        assert out.getvalue() == (
            ERASE_LINE + "[a] he" + ERASE_LINE + "[a] hello\n" + ERASE_LINE + "[a] x" + ERASE_LINE
        )

    async def test_not_tty_shared_by_streams(self) -> None:
        """Clones from several streams feed one console; it ends when all are closed."""
        out = io.StringIO()
        send, inbox = trio.open_memory_channel[Event](0)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: console.run(
                        inbox=inbox, out=out, tty=False, task_status=task_status
                    )
                )
                async with send:
                    for stream in "ab":
                        async with send.clone() as mine:
                            await mine.send(Partial(0, 0, "p", stream=stream))
                            await mine.send(Final(0, 0, 1, f"hi {stream}", stream=stream))
        assert out.getvalue() == "[a] hi a\n[b] hi b\n"
        with pytest.raises(trio.ClosedResourceError):
            inbox.receive_nowait()

    async def test_broken_output_keeps_draining(self) -> None:
        """A closed output stops printing but never blocks the streams."""
        out = io.StringIO()
        out.close()
        send, inbox = trio.open_memory_channel[Event](0)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: console.run(inbox=inbox, out=out, tty=False))
                async with send:
                    for i in range(3):
                        await send.send(Final(i, 0, 1, "x"))


class TestDeviceLines:
    def test_device_lost_and_restored(self) -> None:
        """A capture device's loss and return are one line each."""
        from engine.actors.console import format_line
        from engine.events import DeviceLost, DeviceRestored

        lost = DeviceLost("pulse", 16000, "finished", stream="mic")
        back = DeviceRestored("pulse", 48000, 2.04, stream="mic")
        assert format_line(lost) == "[mic] device 'pulse' lost (finished); retrying"
        assert format_line(back) == "[mic] device 'pulse' back after 2.0 s"


def _tr(
    text: str, lang: str = "de", *, final: bool = True, sid: int = 0, stash: str = ""
) -> Translation:
    return Translation(lang, sid, 0, 1 if final else None, text, final, stash=stash, stream="a")


def _translating(tty: bool, width: int = 40) -> ConsoleView:
    return ConsoleView(tty=tty, width=lambda: width, translate=True)


class TestTranslationFormat:
    def test_transcript_and_translation_lines(self) -> None:
        """Settled text prints as the vendor samples do, with the stream prefix."""
        assert format_transcript(Final(0, 0, 1, "hello", stream="a")) == "[a] Transcript ==> hello"
        assert format_translation(_tr("hallo")) == "[a] Translate ==> [de] hallo"
        assert format_transcript(Final(0, 0, 1, "hi")) == "Transcript ==> hi"

    def test_format_line_modes(self) -> None:
        """Only translation mode prints final translations; previews and blanks never print."""
        final = Final(0, 0, 1, "hello", stream="a")
        assert format_line(final) == "[a] hello"
        assert format_line(final, translate=True) == "[a] Transcript ==> hello"
        assert format_line(_tr("hallo")) is None
        assert format_line(_tr("hallo"), translate=True) == "[a] Translate ==> [de] hallo"
        assert format_line(_tr("hal", final=False), translate=True) is None
        assert format_line(_tr(" "), translate=True) is None

    def test_translation_text_is_neutralised(self) -> None:
        """Language and text from the network cannot inject control sequences."""
        line = format_translation(_tr("a\x1b[2Jb\nc", lang="d\re"))
        assert line == "[a] Translate ==> [d e] a [2Jb c"


class TestTranslationStatus:
    def test_fits(self) -> None:
        """Source preview then each language's preview, text and stash."""
        line = format_translation_status(
            Partial(0, 0, "hello ", stash="wor", stream="a"),
            [_tr("hallo ", final=False, stash="We"), _tr("salut", "fr", final=False)],
            80,
        )
        assert line == "[a] hello wor | de: hallo We | fr: salut"

    def test_translation_preview_alone(self) -> None:
        """After the source settled, the translation preview still shows."""
        assert format_translation_status(None, [_tr("hallo", final=False)], 80) == "[a] de: hallo"

    def test_long_source_cannot_push_translations_off(self) -> None:
        """Room is shared fairly; each cut part keeps its newest words behind an ellipsis."""
        line = format_translation_status(
            Partial(0, 0, "0123456789" * 4, stream="a"), [_tr("abc", final=False)], 30
        )
        assert line == "[a] …" + ("0123456789" * 4)[-14:] + " | de: abc"
        assert display_width(line) == 29

    def test_both_long(self) -> None:
        """Two long parts split the room evenly."""
        line = format_translation_status(
            Partial(0, 0, "a" * 50, stream="a"), [_tr("b" * 50, final=False)], 31
        )
        assert line == "[a] …" + "a" * 8 + " | de: …" + "b" * 9
        assert display_width(line) == 30

    def test_wide_characters(self) -> None:
        """CJK previews are cut by columns, never past the width."""
        line = format_translation_status(
            Partial(0, 0, "hello world again", stream="a"),
            [_tr("你好世界欢迎光临", "zh", final=False)],
            30,
        )
        assert display_width(line) <= 29
        assert line.startswith("[a] …") and " | zh: …" in line and line.endswith("光临")

    def test_tiny_terminal(self) -> None:
        """Too narrow for every part: the line is simply cut, still one line."""
        line = format_translation_status(
            Partial(0, 0, "hello", stream="a"), [_tr("hallo", final=False)], 12
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
        shown = [_tr(text, lang, final=False) for lang, text in previews]
        if partial is None and not shown:
            return
        line = format_translation_status(partial, shown, width)
        assert display_width(line) <= max(width - 1, 1)
        assert "\n" not in line and "\r" not in line

    def test_needs_something_to_show(self) -> None:
        """An empty status line is a bug."""
        with pytest.raises(ValueError, match="partial or a translation"):
            format_translation_status(None, [], 80)


class TestTranslationView:
    def test_tty_status_shows_source_and_translation(self) -> None:
        """Partials and translation previews share the stream's status line."""
        view = _translating(tty=True)
        assert view.render(Partial(1, 0, "hello", stream="a")) == ERASE_LINE + "[a] hello"
        out = view.render(_tr("hallo", final=False, sid=1))
        assert out == ERASE_LINE + "[a] hello | de: hallo"

    def test_tty_final_prints_transcript_and_keeps_preview(self) -> None:
        """A final prints 'Transcript ==>' and the translation preview stays on the status line."""
        view = _translating(tty=True)
        view.render(Partial(1, 0, "hello", stream="a"))
        view.render(_tr("hal", final=False, sid=1))
        out = view.render(Final(1, 0, 1, "hello", stream="a"))
        assert out == ERASE_LINE + "[a] Transcript ==> hello\n" + "[a] de: hal"
        out = view.render(_tr("hallo", sid=1))
        assert out == ERASE_LINE + "[a] Translate ==> [de] hallo\n"
        assert view.finish() == ""

    def test_tty_translation_before_final(self) -> None:
        """A final translation may come first; the source preview stays until its final."""
        view = _translating(tty=True)
        view.render(Partial(1, 0, "hello", stream="a"))
        view.render(_tr("hal", final=False, sid=1))
        out = view.render(_tr("hallo", sid=1))
        assert out == ERASE_LINE + "[a] Translate ==> [de] hallo\n" + "[a] hello"

    def test_older_final_translation_keeps_newer_preview(self) -> None:
        """The final translation of sentence 1 does not clear sentence 2's preview."""
        view = _translating(tty=True)
        view.render(_tr("zwei", final=False, sid=2))
        out = view.render(_tr("eins", sid=1))
        assert out == ERASE_LINE + "[a] Translate ==> [de] eins\n" + "[a] de: zwei"

    def test_language_order_is_stable(self) -> None:
        """Languages keep the places they were first seen in, sentence after sentence."""
        view = _translating(tty=True, width=80)
        view.render(_tr("eins", final=False, sid=1))
        view.render(_tr("un", "fr", final=False, sid=1))
        view.render(_tr("eins", sid=1))
        out = view.render(_tr("deux", "fr", final=False, sid=2))
        assert out == ERASE_LINE + "[a] fr: deux"
        out = view.render(_tr("zwei", final=False, sid=2))
        assert out == ERASE_LINE + "[a] de: zwei | fr: deux"

    def test_empty_preview_clears_its_part(self) -> None:
        """A blank preview removes its language from the status line."""
        view = _translating(tty=True)
        view.render(Partial(1, 0, "hello", stream="a"))
        view.render(_tr("hal", final=False, sid=1))
        assert view.render(_tr("", final=False, sid=1)) == ERASE_LINE + "[a] hello"

    def test_not_tty_prints_settled_lines_only(self) -> None:
        """Without a TTY previews print nothing; transcripts and translations print as lines."""
        view = _translating(tty=False)
        events: list[Event] = [
            Partial(1, 0, "he", stream="a"),
            _tr("ha", final=False, sid=1),
            _tr("hallo", sid=1),
            Final(1, 0, 1, "hello", stream="a"),
            _tr("salut", "fr", sid=1),
            StreamEnded("ok", finals=1, stream="a"),
        ]
        out = "".join(view.render(e) for e in events) + view.finish()
        assert out == (
            "[a] Translate ==> [de] hallo\n"
            "[a] Transcript ==> hello\n"
            "[a] Translate ==> [fr] salut\n"
            "[a] done: ok, 1 finals, 0 reconnects, audio lost 0 ms\n"
        )

    def test_transcription_mode_ignores_translations(self) -> None:
        """Without translate, translations neither print nor touch the status line."""
        view = _view(tty=True)
        view.render(Partial(1, 0, "hello", stream="a"))
        assert view.render(_tr("hal", final=False, sid=1)) == ""
        assert view.render(_tr("hallo", sid=1)) == ""
        assert view.render(Final(1, 0, 1, "hello", stream="a")) == ERASE_LINE + "[a] hello\n"

    def test_stream_end_clears_its_status(self) -> None:
        """A finished stream's previews leave the status line."""
        view = _translating(tty=True)
        view.render(_tr("hal", final=False, sid=1))
        out = view.render(StreamEnded("ok", stream="a"))
        assert out == ERASE_LINE + "[a] done: ok, 0 finals, 0 reconnects, audio lost 0 ms\n"
        assert view.finish() == ""


class TestTranslationRun:
    async def test_translate_mode(self) -> None:
        """run(translate=True) prints transcripts and translations."""
        out = io.StringIO()
        send, inbox = trio.open_memory_channel[Event](4)
        async with send:
            await send.send(Final(1, 0, 1, "hello", stream="a"))
            await send.send(_tr("hallo", sid=1))
        with trio.fail_after(10):
            await console.run(inbox=inbox, out=out, tty=False, translate=True)
        assert out.getvalue() == "[a] Transcript ==> hello\n[a] Translate ==> [de] hallo\n"
