"""``steno completion bash|zsh|fish``: the shell script that completes ``steno``.

Completion is argcomplete's: the script calls ``steno`` back with its
environment protocol (``_ARGCOMPLETE``, ``COMP_LINE``, ``COMP_POINT``), and
:func:`engine.cli.main` hands the parser to ``argcomplete.autocomplete`` before
parsing, so verbs, options and choices complete straight from the argparse tree.
``register-python-argcomplete steno`` (argcomplete's own tool) prints the same.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Final

from engine.cli._common import EXIT_OK

if TYPE_CHECKING:
    import argparse

__all__ = ["SHELLS", "add_parser", "completion", "script"]

SHELLS: Final = ("bash", "zsh", "fish")


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    c = subparsers.add_parser("completion", help="print the shell completion script")
    c.add_argument("shell", choices=SHELLS, help="the shell the script is for")
    c.set_defaults(func=completion)


def script(shell: str) -> str:
    """argcomplete's completion script of ``steno`` for ``shell``."""
    from argcomplete.shell_integration import shellcode

    return shellcode(["steno"], shell=shell)


async def completion(args: argparse.Namespace) -> int:
    """Print the script for ``args.shell`` on stdout."""
    sys.stdout.write(script(args.shell))
    return EXIT_OK
