"""The end of each verb's ``--help``: a few examples and the exit codes.

One table for every verb (``scenario`` included, whose module runs trio itself),
applied by :func:`add_epilogs` once the parser is built, so ``steno VERB --help``
ends the same way everywhere and a test can check that none is missing.
"""

from __future__ import annotations

import argparse
from typing import Final, NamedTuple

__all__ = ["TAILS", "HelpTail", "add_epilogs", "epilog"]


class HelpTail(NamedTuple):
    """A verb's examples (shell lines) and exit codes (``(code, meaning)``)."""

    examples: tuple[str, ...]
    codes: tuple[tuple[int, str], ...]


_STREAMS: Final = (
    (0, "every stream ok"),
    (1, "a stream failed (bad input, rejected key, service error)"),
    (2, "bad usage or configuration (one line on stderr)"),
    (3, "audio was lost (reported), but the run finished"),
    (130, "interrupted (Ctrl-C, SIGTERM)"),
)
_SIMPLE: Final = (
    (0, "ok"),
    (1, "failed"),
    (2, "bad usage or configuration (one line on stderr)"),
    (130, "interrupted"),
)

TAILS: Final = {
    "transcribe": HelpTail(
        (
            "steno transcribe meeting.wav call.mp3 --out transcripts/ --format txt,srt",
            "steno transcribe *.wav --fast > all.txt    # the transcript alone on stdout",
            "steno transcribe *.wav --processes 4 --jobs 800    # 800 files at once, 4 processes",
        ),
        _STREAMS,
    ),
    "translate": HelpTail(
        (
            "steno translate talk.wav --to zh --out subs/",
            "steno translate talk.wav --to en,ja --fast",
            "steno translate talk.wav --to zh --model qwen3.5-livetranslate-flash-realtime "
            "--audio-out voice/",
        ),
        _STREAMS,
    ),
    "simulate": HelpTail(
        (
            "steno simulate --port 8765",
            "steno simulate --recognizer scripted --fault 'drop:at=3'",
        ),
        ((2, "bad usage or configuration"), (130, "stopped (Ctrl-C, SIGTERM): how it ends")),
    ),
    "batch": HelpTail(
        (
            "steno batch submit https://example.com/a.wav --wait --out results/",
            "steno batch status TASK_ID",
            "steno batch list --page-size 20",
        ),
        _SIMPLE,
    ),
    "prepare": HelpTail(
        (
            "steno prepare talk.mp4 -o upload/",
            "steno prepare *.wav -o upload/",
        ),
        ((0, "every file prepared"), (1, "a file failed"), (2, "bad usage")),
    ),
    "devices": HelpTail(
        ("steno devices", "steno devices | grep -i usb    # then: steno listen --device usb"),
        ((0, "listed"), (2, "bad usage")),
    ),
    "listen": HelpTail(
        (
            "steno listen",
            "steno listen --device USB --duration 60 --out live/",
            "steno listen --to en --play",
        ),
        _STREAMS,
    ),
    "daemon": HelpTail(
        (
            "steno daemon steno.toml",
            "steno daemon steno.toml --check --dump",
        ),
        (
            (0, "drained cleanly (SIGTERM, SIGINT), or the config is valid (--check)"),
            (1, "the drain deadline passed, or a second signal cut the drain short"),
            (2, "bad config (the key path and the fix, one line)"),
        ),
    ),
    "completion": HelpTail(
        (
            'eval "$(steno completion bash)"    # in ~/.bashrc (zsh: the same, in ~/.zshrc)',
            "steno completion fish | source     # in ~/.config/fish/config.fish",
        ),
        ((0, "printed"), (2, "bad usage")),
    ),
    "scenario": HelpTail(
        (
            "steno scenario check scenarios/smoke.toml",
            "steno scenario run scenarios/smoke.toml --out out/scenario",
        ),
        (
            (0, "ran, every threshold held"),
            (1, "the run failed"),
            (2, "bad scenario file or usage"),
            (99, "a threshold failed"),
            (130, "interrupted"),
        ),
    ),
}


def epilog(tail: HelpTail) -> str:
    """The text after a verb's options: ``examples:`` then ``exit codes:``."""
    lines = ["examples:", *(f"  {example}" for example in tail.examples), "", "exit codes:"]
    lines += [f"  {code:<4} {meaning}" for code, meaning in tail.codes]
    return "\n".join(lines)


def add_epilogs(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Give each verb in :data:`TAILS` its epilog, kept verbatim (raw description)."""
    for verb, parser in subparsers.choices.items():
        tail = TAILS.get(verb)
        if tail is not None:
            parser.epilog = epilog(tail)
            parser.formatter_class = argparse.RawDescriptionHelpFormatter
