"""Child processes leave shutdown to their parent.

A service manager stops a process tree in one of three ways: a signal to the main
process only (``docker stop``, systemd ``KillMode=mixed``), a signal to its process
group (Ctrl-C in a terminal, ``timeout``, ``kill -- -PGID``), or a signal to every
process of its control group (systemd's default ``KillMode=control-group``). In the
last two, a child that dies at once takes work with it that its parent is still
draining: a pocketsphinx worker holding the last sentence, an ffmpeg feeding a file.

So every child we start follows two rules:

1. **The parent decides when a child stops.** A child starts in a process group of
   its own (``process_group=0``: ``setpgid`` between fork and exec), so group signals
   reach the parent only; and it starts with SIGINT and SIGTERM *blocked*, so a
   signal sent to it directly (a control group's) stays pending, never delivered.
   A blocked signal, unlike an ignored one, survives a program that installs its own
   handlers, as ffmpeg does. Python's ``subprocess`` cannot set the mask of the new
   process, so a tiny exec shim (:data:`_SHIM`, the interpreter in isolated mode)
   blocks them and then ``execv``'s the real program, which keeps the mask and the
   pid. The parent ends its children at its own shutdown (end of input, then
   SIGKILL after a grace period: ``Process.kill``, never ``terminate``).
2. **A child never outlives its parent.** Each reads or writes a pipe to the parent
   and exits on its end of file (a worker's stdin) or on a broken pipe (ffmpeg's
   stdout; SIGPIPE is not blocked), so a parent killed outright (SIGKILL, OOM) leaves
   no orphans working.

To stop a child by hand, use SIGKILL: SIGTERM stays pending.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["open_child", "run_child", "shielded_command"]

_SHIM: Final = (
    "import os, signal, sys;"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM});"
    "os.execv(sys.argv[1], sys.argv[2:])"
)


def shielded_command(command: Sequence[str]) -> list[str]:
    """``command`` behind the exec shim: it runs with SIGINT and SIGTERM blocked.

    The program is looked up on PATH here, so a missing one raises in the parent,
    as a plain spawn would.

    Raises:
        FileNotFoundError: the program is not found or not executable.
    """
    program = shutil.which(command[0])
    if program is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command[0])
    return [sys.executable, "-I", "-S", "-c", _SHIM, program, *command]


async def open_child(
    command: Sequence[str],
    *,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> trio.Process:
    """``trio.lowlevel.open_process`` under the two rules of the module doc.

    Raises:
        OSError: the program cannot be started (missing, not executable).
    """
    return await trio.lowlevel.open_process(
        shielded_command(command),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=env,
        process_group=0,
    )


async def run_child(
    command: Sequence[str], *, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a short-lived child to its end, capturing stdout and stderr; never checks.

    ``input`` is fed to its stdin (then closed); without it stdin is ``/dev/null``.

    Cancellation: the child gets SIGKILL at once (trio's default SIGTERM would stay
    pending, and its SIGKILL come only 5 s later).

    Raises:
        OSError: the program cannot be started.
    """
    return await trio.run_process(
        shielded_command(command),
        stdin=subprocess.DEVNULL if input is None else input,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        deliver_cancel=_kill,
        process_group=0,
    )


async def _kill(process: trio.Process) -> None:
    process.kill()
    await trio.lowlevel.checkpoint()
