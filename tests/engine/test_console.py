from __future__ import annotations

import io

import pytest
import trio

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
