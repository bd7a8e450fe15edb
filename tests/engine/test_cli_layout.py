"""``--max-line-width`` / ``--max-lines`` and the daemon's ``max-line-width`` / ``max-lines``
reach the SRT/VTT sinks (planted bug: the option is parsed but never passed on)."""

from __future__ import annotations

import argparse
import pathlib

import msgspec
import pytest

from adapters.sinks.layout import DEFAULT_LAYOUT, CueLayout
from engine.cli._common import add_layout_arguments, parse_layout
from engine.cli.files import check_output_dir
from engine.clock import system_clock
from engine.daemon.config import OutputSpec
from engine.daemon.rolling import open_rolling_sinks
from engine.errors import ConfigError
from engine.events import Final, Word
from engine.pipeline import open_outputs


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_layout_arguments(parser)
    return parser.parse_args(argv)


class TestOptions:
    def test_the_default_is_the_broadcast_layout(self) -> None:
        """No option: 42 characters by 2 lines."""
        args = _parse()
        assert parse_layout(args.max_line_width, args.max_lines) == DEFAULT_LAYOUT

    def test_zero_means_no_limit(self) -> None:
        """0 turns a limit off."""
        args = _parse("--max-line-width", "0", "--max-lines", "0")
        assert parse_layout(args.max_line_width, args.max_lines) == CueLayout(None, None)

    def test_a_negative_value_is_a_usage_error(self) -> None:
        """A negative width is one line naming the fix."""
        with pytest.raises(ConfigError, match="fix"):
            parse_layout(-1, 2)


def test_the_file_outputs_get_the_layout(tmp_path: pathlib.Path) -> None:
    """open_outputs hands the layout to both cue sinks."""
    layout = CueLayout(max_line_width=20, max_lines=1)
    sinks = open_outputs(str(tmp_path), "a", ("srt", "vtt", "txt"), None, None, layout)
    try:
        cues = [s for s in sinks if hasattr(s, "layout")]
        assert len(cues) == 2
        assert all(s.layout == layout for s in cues)
    finally:
        for s in sinks:
            s.close()


class TestDaemon:
    def test_the_config_keys_decode_and_refuse_negatives(self) -> None:
        """outputs.max-line-width / max-lines are kebab-case keys, 0 or more."""
        spec = msgspec.convert({"max-line-width": 30, "max-lines": 1}, OutputSpec)
        assert (spec.max_line_width, spec.max_lines) == (30, 1)
        with pytest.raises(msgspec.ValidationError, match="max-line-width"):
            msgspec.convert({"max-lines": -1}, OutputSpec)

    def test_rolling_cue_sinks_lay_out_with_the_layout(self, tmp_path: pathlib.Path) -> None:
        """A rolling SRT file opened with a layout writes lines of at most that width."""
        text = "one two three four five six seven eight nine ten"
        words = tuple(Word(i * 1600, (i + 1) * 1600, w) for i, w in enumerate(text.split()))
        final = Final(0, 0, 16000, text, words, stream="s")
        for layout, widest in ((CueLayout(max_line_width=20, max_lines=1), 20), (None, len(text))):
            directory = tmp_path / str(widest)
            extra = {} if layout is None else {"layout": layout}
            sinks = open_rolling_sinks(
                directory,
                "s",
                ("srt",),
                clock=system_clock,
                rotate="never",
                max_bytes=None,
                timezone="utc",
                **extra,
            )
            for sink in sinks:
                sink.write(final)
                sink.close()
            (srt,) = directory.glob("*.srt")
            lines = [ln for ln in srt.read_text().splitlines() if ln and not ln[0].isdigit()]
            assert max(map(len, lines)) <= widest
            assert " ".join(lines) == text


class TestOutputDirectory:
    """An unwritable ``--out`` is a configuration error found before anything connects
    (planted bug: the check is skipped, the stream fails later and the run exits 1)."""

    def test_a_directory_that_cannot_be_made_is_one_line(self, tmp_path: pathlib.Path) -> None:
        """A path under a regular file cannot be a directory: ConfigError naming the flag."""
        blocker = tmp_path / "file"
        blocker.write_text("x")
        with pytest.raises(ConfigError, match=r"--audio-out"):
            check_output_dir(str(blocker / "out"), "--audio-out")

    def test_a_writable_directory_is_created_and_left_clean(self, tmp_path: pathlib.Path) -> None:
        """The check creates the directory and leaves no probe file behind."""
        check_output_dir(str(tmp_path / "a" / "b"))
        assert list((tmp_path / "a" / "b").iterdir()) == []
