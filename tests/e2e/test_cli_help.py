"""``steno --help`` for people: every option explained, each verb's help ending with
examples and exit codes, and shell completion through argcomplete's protocol."""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess

import pytest
from e2e_helpers import cli_env, run_steno, steno_command

from engine.cli import build_parser
from engine.cli._help import TAILS
from engine.cli.completion import SHELLS


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("steno",)
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser in the tree (``steno``, each verb, each verb's commands)."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _parsers(sub, (*path, name))
    return found


def test_every_option_has_help() -> None:
    missing = [
        f"{' '.join(path)} {'/'.join(action.option_strings)}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if action.option_strings and not action.help
    ]
    assert missing == []


def test_every_verb_ends_with_examples_and_exit_codes() -> None:
    verbs = {path[1]: parser for path, parser in _parsers(build_parser()) if len(path) == 2}
    assert set(verbs) == set(TAILS)
    for verb, parser in verbs.items():
        text = parser.format_help()
        examples, _, codes = text.partition("examples:\n")[2].partition("\nexit codes:\n")
        lines = [line for line in examples.splitlines() if line.strip()]
        assert 2 <= len(lines) <= 3, (verb, text)
        assert all(
            line.startswith(f"  steno {verb}") or "steno completion" in line for line in lines
        )
        assert codes.split()[0] == "0" or verb == "simulate", text
        assert text.rstrip().endswith(codes.rstrip()), text  # the very end of the help


def test_help_is_printed_verbatim_with_the_version() -> None:
    run = run_steno("transcribe", "--help", env=cli_env(), timeout=60)
    assert run.returncode == 0, run.describe()
    assert "  steno transcribe *.wav --fast > all.txt" in run.stdout
    assert "  130  interrupted (Ctrl-C, SIGTERM)" in run.stdout
    version = run_steno("--version", env=cli_env(), timeout=60)
    assert version.stdout.startswith("steno "), version.describe()


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_prints_the_script(shell: str) -> None:
    run = run_steno("completion", shell, env=cli_env(), timeout=60)
    assert run.returncode == 0, run.describe()
    assert "steno" in run.stdout and "_ARGCOMPLETE" in run.stdout, run.describe()


def _complete(line: str, tmp_path: pathlib.Path) -> list[str]:
    """What the shell script asks ``steno`` for: argcomplete's environment protocol."""
    answer = tmp_path / "completions"
    env = cli_env() | {
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": os.fspath(answer),
    }
    done = subprocess.run(
        steno_command(),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,  # real-time: a real process (imports)
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # A lone completion ends with a space (the shell moves on to the next word).
    return [word.rstrip(" ") for word in answer.read_text(encoding="utf-8").split("\n")]


def test_completion_of_a_verb_name(tmp_path: pathlib.Path) -> None:
    assert sorted(_complete("steno tra", tmp_path)) == ["transcribe", "translate"]


def test_completion_of_an_option_and_a_choice(tmp_path: pathlib.Path) -> None:
    assert "--finish-timeout" in _complete("steno transcribe --fin", tmp_path)
    assert _complete("steno completion f", tmp_path) == ["fish"]
