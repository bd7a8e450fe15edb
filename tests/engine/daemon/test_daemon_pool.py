"""The worker pool's supervision, with misbehaving stand-in workers.

# real-time: the stand-ins are real (tiny) processes, so the pipes, the kill and
# the reaping are real, and so is the clock: under a MockClock every wait for a
# process would end at once (the clock jumps while the kernel works). The pool's
# deadlines are shrunk instead (``Limits``), and every test runs under fail_after.
"""

from __future__ import annotations

import io
import sys

import msgspec
import pytest
import trio
from structlog.testing import capture_logs

from engine.config import Secret
from engine.daemon.pool import Limits, Pool
from engine.daemon.runner import StreamEnv
from tests.engine.daemon.daemon_helpers import config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

TOML = """
[daemon]
workers = 2
drain-deadline-s = 0.5
[[stream]]
id = "a"
source = { kind = "url", url = "rtsp://cam/a" }
[[stream]]
id = "b"
source = { kind = "url", url = "rtsp://cam/b" }
"""

SILENT = (sys.executable, "-c", "import sys; sys.stdin.buffer.read()")  # reads, never reports
CRASHING = (sys.executable, "-c", "import sys; sys.exit(3)")


LIMITS = Limits(
    first_report_s=1.0, stale_s=1.0, control_s=1.0, eof_s=2.0, drain_margin_s=0.5, cancel_s=0.5
)


def pool_of(command: tuple[str, ...], limits: Limits = LIMITS) -> Pool:
    env = StreamEnv(url="ws://sim.invalid/ws", api_key=Secret("sk-pool"), clock=lambda: 0.0, seed=3)
    return Pool(config(TOML), env, 2, command=command, out=io.BytesIO(), limits=limits)


async def restarted(pool: Pool, times: int) -> None:
    while min(slot.restarts for slot in pool.slots) < times:  # noqa: ASYNC110
        await trio.sleep(0.05)  # real-time: other processes come and go


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (SILENT, "stopped reporting (1."),
        (CRASHING, "exited with code 3"),
    ],
)
async def test_a_broken_worker_is_restarted_and_its_streams_say_why(
    command: tuple[str, ...], reason: str
) -> None:
    """Silent past its deadline, or dead: its streams are restarting with the reason, and
    the worker is started again (the daemon's backoff), again and again."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            pool: Pool = await nursery.start(pool_of(command).run)
            await restarted(pool, 2)
            snap = pool.snapshot()
            states = {s.stream: s.state for s in snap.streams}
            assert states == {"a": "restarting", "b": "restarting"}
            for s in snap.streams:
                assert s.error is not None and reason in s.error, s.error
                assert s.restarts >= 2
            pool.request_drain()
    assert pool.clean is False
    assert all(slot.pid() is None for slot in pool.slots)


async def test_a_worker_that_ignores_the_drain_is_cancelled_then_killed() -> None:
    """Drain deadline + margin, then Cancel, then SIGKILL after cancel-s: every wait ends."""
    patient = msgspec.structs.replace(LIMITS, first_report_s=60.0)  # no watchdog kill
    pool = pool_of(SILENT, patient)
    with trio.fail_after(60), capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            while None in [slot.pid() for slot in pool.slots]:  # noqa: ASYNC110
                await trio.sleep(0.05)  # real-time: both stand-ins started
            start = trio.current_time()
            pool.request_drain()
    took = trio.current_time() - start
    assert pool.clean is False
    assert all(slot.pid() is None for slot in pool.slots)  # killed and reaped
    assert took >= 0.5 + LIMITS.drain_margin_s  # the drain deadline was honoured first
    events = [(e["event"], e.get("reason")) for e in logs]
    assert events.count(("daemon.worker.killed", "cancel deadline")) == 2
