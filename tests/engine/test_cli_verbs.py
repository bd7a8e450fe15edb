"""``steno``'s verbs load lazily: the top-level help imports no verb, a verb only its own."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from engine.cli import VERBS, build_parser, parse


def _verbs(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def _imports(code: str) -> set[str]:
    """The modules a fresh interpreter has imported after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(*sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(out.split())


class TestVerbTable:
    def test_the_table_matches_the_modules(self) -> None:
        """Each verb's listed help is the one its module gives, in the same order."""
        full = [(a.dest, a.help) for a in _verbs(build_parser())._choices_actions]
        assert full == [(v.name, v.help) for v in VERBS]

    def test_the_listing_is_the_same_without_the_modules(self) -> None:
        """``steno --help`` reads the same whether the verbs are loaded or only listed."""
        assert build_parser(()).format_help() == build_parser().format_help()


class TestParse:
    def test_a_verb_parses_as_with_the_whole_tree(self) -> None:
        """Global options, the verb and its options: the same namespace as the full parser's."""
        argv = ["-v", "--log-format", "json", "transcribe", "--jobs", "3", "a.wav", "b.wav"]
        got = vars(parse(argv))
        want = vars(build_parser().parse_args(argv))
        assert got.keys() == want.keys()
        assert {k: v for k, v in got.items() if k != "func"} == {
            k: v for k, v in want.items() if k != "func"
        }
        assert got["func"] is want["func"]

    @pytest.mark.parametrize(
        "argv", [[], ["nonsense"], ["transcribe"], ["transcribe", "a.wav", "--jobs", "x"]]
    )
    def test_errors_are_the_whole_trees(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A missing or unknown verb, a verb's missing or bad argument: the same usage error."""
        with pytest.raises(SystemExit) as lazy:
            parse(argv)
        lazy_err = capsys.readouterr().err
        with pytest.raises(SystemExit) as full:
            build_parser().parse_args(argv)
        assert (lazy.value.code, lazy_err) == (full.value.code, capsys.readouterr().err)

    def test_a_verbs_help_is_its_own(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``steno transcribe --help`` prints the verb's whole help (options, examples)."""
        with pytest.raises(SystemExit):
            parse(["transcribe", "--help"])
        text = capsys.readouterr().out
        assert "--jobs" in text
        assert "exit codes:" in text


class TestImports:
    def test_the_top_level_help_imports_no_verb(self) -> None:
        """Listing the verbs loads none of their modules, nor the engine's stream stack."""
        loaded = _imports("from engine.cli import build_parser\nbuild_parser(()).format_help()")
        assert not {v.module for v in VERBS} & loaded
        assert not {"engine.stream", "numpy", "engine.daemon"} & loaded

    def test_transcribe_imports_neither_the_daemon_nor_other_verbs(self) -> None:
        """``steno transcribe`` loads its own module, not the daemon's, batch's or listen's."""
        loaded = _imports("from engine.cli import parse\nparse(['transcribe', 'a.wav'])")
        assert "engine.cli.transcribe" in loaded
        others = {v.module for v in VERBS if v.name != "transcribe"}
        assert not (others | {"engine.daemon", "engine.shard"}) & loaded
