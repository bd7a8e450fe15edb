"""Child processes leave shutdown to their parent.

A service manager stops a process tree in one of three ways: a signal to the main
process only (``docker stop``, systemd ``KillMode=mixed``), a signal to its process
group (Ctrl-C in a terminal, ``timeout``, ``kill -- -PGID``), or a signal to every
process of its control group (systemd's default ``KillMode=control-group``). In the
last two, a child that dies at once takes work with it that its parent is still
draining: a pocketsphinx worker holding the last sentence, an ffmpeg feeding a file.

So every child we start follows two rules:

1. **The parent decides when a child stops.** Children start in a process group of
   their own (``process_group=0``: ``setpgid`` between fork and exec), so group
   signals reach the parent only; the sphinx worker also ignores SIGINT and SIGTERM
   from its first statement (``_sphinx_worker.BOOT``), which covers control-group
   signals too. The parent ends its children
   at its own shutdown (closing their stdin, then killing them after a grace period).
2. **A child never outlives its parent.** Each reads or writes a pipe to the parent
   and exits on its end of file (a worker's stdin) or on a broken pipe (ffmpeg's
   stdout), so a parent killed outright (SIGKILL, OOM) leaves no orphans working.

ffmpeg installs its own SIGINT and SIGTERM handlers, so rule 1 holds for it only
through its process group: under ``KillMode=control-group`` it still stops at once
(the deploy recipes use ``KillMode=mixed``).
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["open_child", "run_child"]


async def open_child(
    command: Sequence[str],
    *,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> trio.Process:
    """``trio.lowlevel.open_process`` in a process group of its own (see the module doc).

    Raises:
        OSError: the program cannot be started (missing, not executable).
    """
    return await trio.lowlevel.open_process(
        list(command), stdin=stdin, stdout=stdout, stderr=stderr, env=env, process_group=0
    )


async def run_child(
    command: Sequence[str], *, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a short-lived child to its end, capturing stdout and stderr; never checks.

    ``input`` is fed to its stdin (then closed); without it stdin is ``/dev/null``.

    Cancellation: the child is killed (``trio.run_process``'s default).

    Raises:
        OSError: the program cannot be started.
    """
    return await trio.run_process(
        list(command),
        stdin=subprocess.DEVNULL if input is None else input,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        process_group=0,
    )
