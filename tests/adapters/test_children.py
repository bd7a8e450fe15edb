"""Children start in their own process group with SIGINT and SIGTERM blocked.

# real-time: real (short) child processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import trio

from adapters.children import open_child, run_child, shielded_command

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")

BLOCKED = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
# The child reports its own mask, process group and parent's group, then waits for
# its stdin to end (its parent going away).
PROBE = (
    "import os, sys;"
    "blk = [l for l in open('/proc/self/status') if l.startswith('SigBlk:')][0].split()[1];"
    "print(blk, os.getpgrp(), flush=True);"
    "sys.stdin.read()"
)


async def test_open_child_blocks_interrupt_and_terminate_in_its_own_group() -> None:
    """The program runs (same pid as the spawn) with both signals blocked, in a group
    of its own; SIGTERM and SIGINT stay pending; end of stdin ends it."""
    with trio.fail_after(30):
        proc = await open_child([sys.executable, "-c", PROBE], stdin=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdin is not None
        try:
            line = b""
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1024)
                assert chunk, line
                line += chunk
            mask, group = line.split()
            assert int(mask, 16) & BLOCKED == BLOCKED
            assert int(group) == proc.pid != os.getpgrp()
            os.kill(proc.pid, signal.SIGTERM)
            os.kill(proc.pid, signal.SIGINT)
            await proc.stdin.aclose()  # the parent goes away
            assert await proc.wait() == 0  # not -15 or -2: the signals stayed pending
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_run_child_feeds_input_and_captures_output() -> None:
    with trio.fail_after(30):
        done = await run_child(
            [sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])"], input=b"abc"
        )
    assert (done.returncode, done.stdout) == (0, b"cba\n")


def test_a_missing_program_fails_in_the_parent() -> None:
    with pytest.raises(FileNotFoundError, match="no-such-program-here"):
        shielded_command(["no-such-program-here", "-v"])


async def test_a_cancelled_run_child_is_killed_at_once() -> None:
    """Cancelling kills the child with SIGKILL (its SIGTERM would stay pending)."""
    with trio.fail_after(30):
        start = trio.current_time()
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]  # real-time: a child
        with trio.move_on_after(0.5):
            await run_child(sleeper)
        assert trio.current_time() - start < 4.0  # trio's default would wait 5 s more
