"""Rolling output files: period boundaries on the trio clock, size caps, never a half record."""

from __future__ import annotations

import calendar
import pathlib

import trio
import trio.testing
from daemon_helpers import _inline_threads  # noqa: F401 - the inline_threads fixture

from engine.actors import renderer
from engine.daemon.rolling import RollingSink, open_rolling_sinks, period_stem
from engine.events import Event, Final, Partial, StreamEnded, decode_jsonl_line

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
