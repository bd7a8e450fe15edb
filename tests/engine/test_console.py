from __future__ import annotations

import io

import pytest
import trio
from console_helpers import translation as tr

from engine.actors import console
from engine.actors.console import ERASE_LINE, ConsoleView
from engine.events import (
    Event,
    Final,
    Partial,
    Reconnecting,
    StreamEnded,
    StreamStarted,
    Word,
)


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


class TestTwoOutputs:
    """The transcript on ``out`` (stdout), everything else on ``err`` (stderr)."""

    EVENTS: tuple[Event, ...] = (
        Partial(0, 0, "he", stream="a"),
        Reconnecting(1, 0.5, "network: reset", stream="a"),
        Final(0, 0, 1, "hello", stream="a"),
        StreamEnded("ok", finals=1, reconnects=1, stream="a"),
    )

    async def _run(self, *, tty: bool, translate: bool = False) -> tuple[str, str]:
        out, err = io.StringIO(), io.StringIO()
        send, inbox = trio.open_memory_channel[Event](len(self.EVENTS) + 1)
        async with send:
            for event in self.EVENTS:
                await send.send(event)
            if translate:
                await send.send(tr("hallo", sid=0))
        with trio.fail_after(10):
            await console.run(inbox=inbox, out=out, err=err, tty=tty, translate=translate)
        return out.getvalue(), err.getvalue()

    async def test_not_tty(self) -> None:
        out, err = await self._run(tty=False)
        assert out == "[a] hello\n"
        assert err == (
            "[a] reconnecting (attempt 1 in 0.5 s): network: reset\n"
            "[a] done: ok, 1 finals, 1 reconnects, audio lost 0 ms\n"
        )

    async def test_tty_status_line_lives_on_err(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The status line steps aside on ``err`` before a transcript line goes to ``out``."""
        monkeypatch.setattr(console, "terminal_width", lambda: 40)
        out, err = await self._run(tty=True)
        assert out == "[a] hello\n"
        assert "\x1b" not in out and "\r" not in out
        assert err.startswith(ERASE_LINE + "[a] he" + ERASE_LINE + "[a] reconnecting")
        assert err.endswith("[a] done: ok, 1 finals, 1 reconnects, audio lost 0 ms\n")

    async def test_translations_are_transcript(self) -> None:
        out, _ = await self._run(tty=False, translate=True)
        assert out == "[a] Transcript ==> hello\n[a] Translate ==> [de] hallo\n"

    def test_one_terminal_sees_both_in_order(self) -> None:
        """``render`` joins the pieces of ``writes`` in order: what a shared terminal shows."""
        joined, split = _view(tty=True), _view(tty=True)
        for event in self.EVENTS:
            pieces = split.writes(event)
            assert all(piece.text for piece in pieces)
            assert joined.render(event) == "".join(piece.text for piece in pieces)
        assert [p.transcript for p in _view(tty=True).writes(self.EVENTS[2])] == [False, True]


class TestProgress:
    """A per-file progress with an ETA on a terminal only (``tty`` is the seam)."""

    EVENTS: tuple[Event, ...] = (
        StreamStarted("a.wav", "m", 16000, "ws://x", stream="a", t=100.0),
        Partial(0, 16000, "hel", words=(Word(16000, 32000, "hel"),), stream="a", t=101.0),
        Final(0, 16000, 48000, "hello", stream="a", t=103.0),
        StreamEnded("ok", finals=1, stream="a", t=110.0),
    )

    async def _run(self, *, tty: bool, durations: dict[str, float]) -> tuple[str, str]:
        out, err = io.StringIO(), io.StringIO()
        send, inbox = trio.open_memory_channel[Event](len(self.EVENTS))
        async with send:
            for event in self.EVENTS:
                await send.send(event)
        with trio.fail_after(10):
            await console.run(inbox=inbox, out=out, err=err, tty=tty, durations=durations)
        return out.getvalue(), err.getvalue()

    async def test_terminal_shows_percent_and_eta(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(console, "terminal_width", lambda: 80)
        out, err = await self._run(tty=True, durations={"a": 12.0})
        assert out == "[a] hello\n"
        shown = [part for part in err.split(ERASE_LINE) if part]
        assert shown[:3] == [
            "[a] 0% ETA --:--",  # started: nothing heard yet
            "[a] 16% ETA 0:05 · hel",  # 2 s of 12 heard in 1 s
            "[a] 25% ETA 0:09",  # 3 s of 12 in 3 s (the final itself went to out)
        ]
        assert err.endswith("[a] done: ok, 1 finals, 0 reconnects, audio lost 0 ms\n")
        assert "%" not in err.rsplit(ERASE_LINE, 1)[-1]  # the progress ends with the stream

    async def test_quiet_off_a_terminal(self) -> None:
        with_progress = await self._run(tty=False, durations={"a": 12.0})
        assert with_progress == await self._run(tty=False, durations={})
        assert "%" not in with_progress[1] and "\r" not in with_progress[1]

    async def test_unknown_length_has_no_progress(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(console, "terminal_width", lambda: 80)
        _, err = await self._run(tty=True, durations={})
        assert "%" not in err


def _translating(tty: bool, width: int = 40) -> ConsoleView:
    return ConsoleView(tty=tty, width=lambda: width, translate=True)


class TestTranslationView:
    def test_tty_status_shows_source_and_translation(self) -> None:
        """Partials and translation previews share the stream's status line."""
        view = _translating(tty=True)
        assert view.render(Partial(1, 0, "hello", stream="a")) == ERASE_LINE + "[a] hello"
        out = view.render(tr("hallo", final=False, sid=1))
        assert out == ERASE_LINE + "[a] hello | de: hallo"

    def test_tty_final_prints_transcript_and_keeps_preview(self) -> None:
        """A final prints 'Transcript ==>' and the translation preview stays on the status line."""
        view = _translating(tty=True)
        view.render(Partial(1, 0, "hello", stream="a"))
        view.render(tr("hal", final=False, sid=1))
        out = view.render(Final(1, 0, 1, "hello", stream="a"))
        assert out == ERASE_LINE + "[a] Transcript ==> hello\n" + "[a] de: hal"
        out = view.render(tr("hallo", sid=1))
        assert out == ERASE_LINE + "[a] Translate ==> [de] hallo\n"
        assert view.finish() == ""

    def test_tty_translation_before_final(self) -> None:
        """A final translation may come first; the source preview stays until its final."""
        view = _translating(tty=True)
        view.render(Partial(1, 0, "hello", stream="a"))
        view.render(tr("hal", final=False, sid=1))
        out = view.render(tr("hallo", sid=1))
        assert out == ERASE_LINE + "[a] Translate ==> [de] hallo\n" + "[a] hello"

    def test_older_final_translation_keeps_newer_preview(self) -> None:
        """The final translation of sentence 1 does not clear sentence 2's preview."""
        view = _translating(tty=True)
        view.render(tr("zwei", final=False, sid=2))
        out = view.render(tr("eins", sid=1))
        assert out == ERASE_LINE + "[a] Translate ==> [de] eins\n" + "[a] de: zwei"

    def test_language_order_is_stable(self) -> None:
        """Languages keep the places they were first seen in, sentence after sentence."""
        view = _translating(tty=True, width=80)
        view.render(tr("eins", final=False, sid=1))
        view.render(tr("un", "fr", final=False, sid=1))
        view.render(tr("eins", sid=1))
        out = view.render(tr("deux", "fr", final=False, sid=2))
        assert out == ERASE_LINE + "[a] fr: deux"
        out = view.render(tr("zwei", final=False, sid=2))
        assert out == ERASE_LINE + "[a] de: zwei | fr: deux"

    def test_empty_preview_clears_its_part(self) -> None:
        """A blank preview removes its language from the status line."""
        view = _translating(tty=True)
        view.render(Partial(1, 0, "hello", stream="a"))
        view.render(tr("hal", final=False, sid=1))
        assert view.render(tr("", final=False, sid=1)) == ERASE_LINE + "[a] hello"

    def test_not_tty_prints_settled_lines_only(self) -> None:
        """Without a TTY previews print nothing; transcripts and translations print as lines."""
        view = _translating(tty=False)
        events: list[Event] = [
            Partial(1, 0, "he", stream="a"),
            tr("ha", final=False, sid=1),
            tr("hallo", sid=1),
            Final(1, 0, 1, "hello", stream="a"),
            tr("salut", "fr", sid=1),
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
        assert view.render(tr("hal", final=False, sid=1)) == ""
        assert view.render(tr("hallo", sid=1)) == ""
        assert view.render(Final(1, 0, 1, "hello", stream="a")) == ERASE_LINE + "[a] hello\n"

    def test_stream_end_clears_its_status(self) -> None:
        """A finished stream's previews leave the status line."""
        view = _translating(tty=True)
        view.render(tr("hal", final=False, sid=1))
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
            await send.send(tr("hallo", sid=1))
        with trio.fail_after(10):
            await console.run(inbox=inbox, out=out, tty=False, translate=True)
        assert out.getvalue() == "[a] Transcript ==> hello\n[a] Translate ==> [de] hallo\n"


class TestShown:
    """``console.shown``: what a sender may leave out, the output unchanged."""

    EVENTS: tuple[Event, ...] = (
        StreamStarted("a.wav", "paraformer-realtime-v2", 16000, stream="a"),
        Partial(0, 0, "he", stream="a"),
        tr("hal", final=False, sid=0),
        Partial(0, 0, "hello", stream="b"),
        Final(0, 0, 16000, "hello", stream="a"),
        tr("hallo", sid=0),
        Reconnecting(1, 0.5, "network", stream="b"),
        Partial(1, 16000, "again", stream="a"),
        tr("wieder", final=False, sid=1),
        Final(0, 0, 16000, "bonjour", stream="b"),
        StreamEnded("ok", finals=1, stream="a"),
        StreamEnded("ok", finals=1, stream="b"),
    )

    @pytest.mark.parametrize("translate", [False, True])
    def test_off_a_terminal_the_left_out_events_print_nothing(self, translate: bool) -> None:
        """Off a terminal, every event or only the shown ones: the same writes, in order."""
        every, shown = (ConsoleView(tty=False, width=lambda: 40, translate=translate) for _ in "ab")
        want = [w for e in self.EVENTS for w in every.writes(e)]
        kept = [e for e in self.EVENTS if console.shown(e, tty=False, translate=translate)]
        assert [w for e in kept for w in shown.writes(e)] == want
        assert len(kept) < len(self.EVENTS)  # partials (and previews) are left out

    def test_on_a_terminal_everything_is_shown(self) -> None:
        """The status line draws partials and previews: nothing is left out."""
        assert all(console.shown(e, tty=True, translate=True) for e in self.EVENTS)

    def test_final_translations_only_in_translation_mode(self) -> None:
        """Off a terminal a final translation prints only in translation mode."""
        assert console.shown(tr("hallo"), tty=False, translate=True)
        assert not console.shown(tr("hallo"), tty=False, translate=False)
        assert not console.shown(tr("hal", final=False), tty=False, translate=True)
