"""Rolling output files: period boundaries on the trio clock, size caps, never a half record."""

from __future__ import annotations

import calendar
import pathlib

import trio
import trio.testing
from daemon_helpers import _inline_threads  # noqa: F401 - the inline_threads fixture

from engine.actors import renderer
from engine.daemon.rolling import SWITCH_GRACE_S, RollingSink, open_rolling_sinks, period_stem
from engine.events import (
    Event,
    Final,
    Partial,
    StreamEnded,
    TranslatedAudio,
    Translation,
    decode_jsonl_line,
)

RATE = 16000
# 2024-01-01T04:59:50Z at trio time 0: the hour turns ten seconds in.
START = float(calendar.timegm((2024, 1, 1, 4, 59, 50, 0, 0, 0)))


def final(n: int, text: str = "") -> Final:
    return Final(n, n * RATE, n * RATE + RATE // 2, text or f"sentence number {n}", rate=RATE)


class TestNames:
    def test_period_stems(self) -> None:
        assert period_stem("lobby", START, "hour") == "lobby-20240101-04"
        assert period_stem("lobby", START + 10, "hour") == "lobby-20240101-05"
        assert period_stem("lobby", START, "day") == "lobby-20240101"
        assert period_stem("lobby", START, "never") == "lobby"


class TestRollingSink:
    async def test_the_hour_boundary_through_the_renderer(
        self,
        autojump_clock: trio.testing.MockClock,
        tmp_path: pathlib.Path,
        inline_threads: None,
    ) -> None:
        """Records before 05:00 go to the -04 files, later ones to -05; each file is whole."""
        sinks = open_rolling_sinks(
            tmp_path,
            "s",
            ["jsonl", "srt", "vtt", "txt"],
            clock=lambda: START + trio.current_time(),
            rotate="hour",
            max_bytes=None,
            timezone="utc",
        )
        send, recv = trio.open_memory_channel[Event](8)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: renderer.run(inbox=recv, sinks=sinks))
            async with send:
                for n in range(1, 4):
                    await send.send(final(n))
                    await send.send(Partial(n + 1, 0, "partial"))
                    await trio.sleep(4.0)  # 0, 4, 8 s: before the hour
                await trio.sleep(3.0)  # 12 s
                for n in range(4, 6):
                    await send.send(final(n))
                await send.send(StreamEnded("ok"))
        _check_hour_files(tmp_path)

    def test_the_size_cap_splits_between_records(self, tmp_path: pathlib.Path) -> None:
        """At max_bytes the next record opens part .1, .2, …; every part decodes fully."""
        sink = RollingSink(
            tmp_path, "s", "jsonl", clock=lambda: START, rotate="hour", max_bytes=4096
        )
        events = [final(n, "word " * 20) for n in range(60)]
        for event in events:
            sink.write(event)
        sink.close()
        parts = sorted(tmp_path.iterdir(), key=lambda p: (len(p.name), p.name))
        assert parts[0].name == "s-20240101-04.jsonl"
        assert [p.name for p in parts[1:3]] == ["s-20240101-04.1.jsonl", "s-20240101-04.2.jsonl"]
        decoded = [decode_jsonl_line(x) for p in parts for x in p.read_bytes().splitlines()]
        assert decoded == events
        assert all(p.stat().st_size < 4096 + 400 for p in parts)

    def test_an_existing_file_is_never_reused(self, tmp_path: pathlib.Path) -> None:
        """A restart within the hour writes the next part instead of truncating the file."""
        (tmp_path / "s-20240101-04.txt").write_text("from before the restart\n")
        sink = RollingSink(tmp_path, "s", "txt", clock=lambda: START, rotate="hour")
        sink.write(final(1))
        sink.close()
        assert (tmp_path / "s-20240101-04.txt").read_text() == "from before the restart\n"
        assert (tmp_path / "s-20240101-04.1.txt").read_text() == "sentence number 1\n"

    def test_files_open_only_for_records_they_render(self, tmp_path: pathlib.Path) -> None:
        """An hour of partials and silence makes no empty TXT/SRT files."""
        sink = RollingSink(tmp_path, "s", "srt", clock=lambda: START, rotate="hour")
        sink.write(Partial(1, 0, "hello"))
        sink.write(final(1, "   "))
        sink.close()
        assert list(tmp_path.iterdir()) == []
        assert sink.files_opened == 0


def translation(n: int, lang: str = "zh", *, final: bool = True) -> Translation:
    return Translation(
        lang, n, n * RATE, n * RATE + RATE // 2, f"{lang} {n}", final=final, rate=RATE
    )


class Clock:
    """A settable wall clock (the sinks are driven synchronously here)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TestTranslationOutputs:
    def test_names_and_what_each_file_gets(self, tmp_path: pathlib.Path) -> None:
        """Bilingual SRT, a TXT per language beside the source's, the voice as WAV."""
        sinks = open_rolling_sinks(
            tmp_path,
            "s",
            ["txt", "srt"],
            clock=lambda: START,
            rotate="hour",
            max_bytes=4096,
            timezone="utc",
            languages=["zh", "de"],
            voice=True,
        )
        for event in (
            final(1),
            translation(1, "zh", final=False),
            translation(1, "zh"),
            translation(1, "de"),
            TranslatedAudio("r1", b"\x01\x00" * 2400),
        ):
            for sink in sinks:
                sink.write(event)
        for sink in sinks:
            sink.close()
        stem = tmp_path / "s-20240101-04"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            f"s-20240101-04.{ext}" for ext in ("txt", "zh.txt", "de.txt", "srt", "voice.wav")
        )
        assert stem.with_suffix(".txt").read_text() == "sentence number 1\n"
        assert (tmp_path / "s-20240101-04.zh.txt").read_text() == "zh 1\n"
        assert (tmp_path / "s-20240101-04.de.txt").read_text() == "de 1\n"
        assert stem.with_suffix(".srt").read_text() == (
            "1\n00:00:01,000 --> 00:00:01,500\nsentence number 1\nzh 1\nde 1\n\n"
        )
        assert (tmp_path / "s-20240101-04.voice.wav").stat().st_size == 44 + 4800

    def test_a_held_cue_finishes_in_its_period(self, tmp_path: pathlib.Path) -> None:
        """A sentence of 04:59 whose translation comes at 05:00 is one cue in the -04 file;
        the next sentence starts the -05 file."""
        clock = Clock(START + 5)  # 04:59:55
        sink = RollingSink(tmp_path, "s", "srt", clock=clock, languages=["zh"])
        sink.write(final(1))
        clock.now = START + 12  # 05:00:02: the period has changed, the cue is still held
        sink.write(translation(1))
        assert sink.files_opened == 1
        sink.write(final(2))
        sink.write(translation(2))
        sink.close()
        old = (tmp_path / "s-20240101-04.srt").read_text()
        new = (tmp_path / "s-20240101-05.srt").read_text()
        assert old == "1\n00:00:01,000 --> 00:00:01,500\nsentence number 1\nzh 1\n\n"
        assert new == "1\n00:00:02,000 --> 00:00:02,500\nsentence number 2\nzh 2\n\n"

    def test_a_hold_that_never_empties_switches_after_the_grace(
        self, tmp_path: pathlib.Path
    ) -> None:
        """Translations that never come cannot keep a period's file open for ever."""
        clock = Clock(START + 5)
        sink = RollingSink(tmp_path, "s", "srt", clock=clock, languages=["zh"])
        sink.write(final(1))
        clock.now = START + 12
        sink.write(final(2))  # sentence 1 still waits for its translation
        clock.now = START + 12 + SWITCH_GRACE_S  # the grace runs from the first late record
        sink.write(final(3))
        sink.close()
        old = (tmp_path / "s-20240101-04.srt").read_text()
        assert old.count("-->") == 2 and "zh" not in old  # written as they were
        assert (
            (tmp_path / "s-20240101-05.srt")
            .read_text()
            .startswith("1\n00:00:03,000 --> 00:00:03,500\nsentence number 3\n")
        )

    def test_translation_only_cues_take_the_translations(self, tmp_path: pathlib.Path) -> None:
        """transcript=False: no source finals; each cue is the translation, at its times."""
        sinks = open_rolling_sinks(
            tmp_path,
            "s",
            ["srt", "txt"],
            clock=lambda: START,
            rotate="never",
            max_bytes=None,
            timezone="utc",
            languages=["de"],
            transcript=False,
        )
        for sink in sinks:
            sink.write(translation(4, "de"))
            sink.close()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s.de.txt", "s.srt"]
        assert (tmp_path / "s.srt").read_text() == "1\n00:00:04,000 --> 00:00:04,500\nde 4\n\n"


def _check_hour_files(tmp_path: pathlib.Path) -> None:
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        f"s-20240101-{h}.{ext}" for ext in ("jsonl", "srt", "txt", "vtt") for h in ("04", "05")
    )
    assert (tmp_path / "s-20240101-04.txt").read_text().splitlines() == [
        f"sentence number {n}" for n in (1, 2, 3)
    ]
    srt = (tmp_path / "s-20240101-05.srt").read_text()
    assert srt.startswith("1\n00:00:04,000 --> 00:00:04,500\nsentence number 4\n\n2\n")
    assert (tmp_path / "s-20240101-05.vtt").read_text().startswith("WEBVTT\n\n1\n")
    late = [
        decode_jsonl_line(x) for x in (tmp_path / "s-20240101-05.jsonl").read_bytes().splitlines()
    ]
    assert [type(e).__name__ for e in late] == ["Final", "Final", "StreamEnded"]
