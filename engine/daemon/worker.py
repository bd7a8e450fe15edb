"""One worker process of a ``workers = N`` daemon: ``python -m engine.daemon.worker``.

The parent (``engine.daemon.pool``) starts it with ``adapters.children.open_child``
(its own process group, SIGINT and SIGTERM blocked: the parent decides when it
drains) and talks to it over three pipes (``worker_wire``). The worker:

1. reads :class:`Start` (its streams, the endpoint, the key) within
   :data:`START_TIMEOUT_S`; logs go to stderr as JSON lines, each with ``worker``;
2. runs an ordinary :class:`~engine.daemon.manager.Daemon` over its streams,
   with no HTTP server and no signal handlers of its own;
3. sends a :class:`Report` every :data:`REPORT_EVERY_S`, and obeys the control
   pipe: :class:`Reload`, :class:`Drain` (finish every stream within the drain
   deadline), :class:`Cancel` (stop now);
4. at the end sends a last :class:`Report` and :class:`Stopped`, and exits 0 after a
   clean drain, 1 otherwise.

A parent that dies (end of file on the control pipe, or a broken report pipe)
cancels every stream at once: a worker never outlives its daemon. Task-start
budgets are the parent's to split: it sets ``STENO_RATE_SHARE`` in the
environment, which ``engine.ratelimit`` reads.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Final

import structlog
import trio

from engine import logging as steno_logging
from engine import runtime
from engine.config import Secret
from engine.daemon.manager import Daemon
from engine.daemon.runner import StreamEnv
from engine.daemon.worker_wire import (
    Cancel,
    Drain,
    FrameReader,
    Message,
    Reload,
    Report,
    Start,
    Stopped,
    WireError,
    encode,
)

__all__ = ["REPORT_EVERY_S", "START_TIMEOUT_S", "main"]

log = structlog.get_logger("steno.daemon.worker")

#: How often the worker reports its streams' state to the parent.
REPORT_EVERY_S: Final = 1.0
#: The parent sends Start at once; a worker left waiting longer exits.
START_TIMEOUT_S: Final = 30.0
#: A parent that reads nothing for this long is broken: the worker stops.
SEND_TIMEOUT_S: Final = 30.0


class _Reporter:
    """The report pipe: one frame at a time (a lock), each under a deadline."""

    def __init__(self, stream: trio.abc.SendStream) -> None:
        self._stream = stream
        self._lock = trio.Lock()

    async def send(self, message: Message) -> None:
        """Send one frame.

        Raises:
            trio.TooSlowError: the parent read nothing for :data:`SEND_TIMEOUT_S`.
            trio.BrokenResourceError: the parent is gone.
        """
        async with self._lock:
            with trio.fail_after(SEND_TIMEOUT_S):
                await self._stream.send_all(encode(message))


async def _obey(reader: FrameReader, daemon: Daemon) -> None:
    """Apply the parent's instructions; its end of file (it died) cancels everything."""
    while True:
        try:
            message = await reader.receive()
        except WireError as exc:
            log.error("daemon.worker.control_broken", error=str(exc))
            message = None
        match message:
            case Reload(config=config, url=url, api_key=key):
                env = StreamEnv(url=url, api_key=Secret(key), clock=time.time)
                daemon.reload(config, env)
            case Drain():
                daemon.request_drain()
            case Cancel():
                daemon.cancel()
            case None:
                log.warning("daemon.worker.parent_gone", action="cancel")
                daemon.cancel()
                return
            case _:
                log.error("daemon.worker.unexpected", message=type(message).__name__)


async def _report(reporter: _Reporter, daemon: Daemon) -> None:
    while True:
        await reporter.send(Report(daemon.snapshot()))
        await trio.sleep(REPORT_EVERY_S)


async def run_worker(control: trio.abc.ReceiveStream, reports: trio.abc.SendStream) -> int:
    """Be a worker over these two pipes (module doc); the exit code.

    Error handling: a parent that is gone or stuck cancels the streams; the exit
    code is then 1. A missing or wrong Start is exit 2.
    """
    reader = FrameReader(control)
    reporter = _Reporter(reports)
    with trio.move_on_after(START_TIMEOUT_S):
        try:
            start = await reader.receive()
        except WireError:
            start = None
    if not isinstance(start, Start):
        print("steno worker: no Start from the parent", file=sys.stderr)
        return 2
    steno_logging.configure(
        json=True,
        level=logging.getLevelNamesMapping()[start.config.daemon.log_level.upper()],
        stream=sys.stderr,
    )
    structlog.contextvars.bind_contextvars(worker=start.worker)
    env = StreamEnv(url=start.url, api_key=Secret(start.api_key), clock=time.time)
    daemon = Daemon(start.config, env)
    broken = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_obey, reader, daemon)

        async def report() -> None:
            nonlocal broken
            try:
                await _report(reporter, daemon)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
                broken = True
                log.warning("daemon.worker.parent_gone", action="cancel")
                daemon.cancel()

        nursery.start_soon(report)
        clean = await daemon.run()
        nursery.cancel_scope.cancel()
    if not broken:
        try:
            await reporter.send(Report(daemon.snapshot()))
            await reporter.send(Stopped(clean))
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            clean = False
    return 0 if clean and not broken else 1


async def _main(control_fd: int, reports_fd: int) -> int:
    control = trio.lowlevel.FdStream(control_fd)
    reports = trio.lowlevel.FdStream(reports_fd)
    async with control, reports:
        return await run_worker(control, reports)


def main() -> int:
    """The worker process: stdin is the control pipe, stdout the report pipe.

    Error handling: a bug that escapes the daemon (which already keeps a stream's
    crash to that stream) is one JSON log line with its traceback, exit code 70;
    the parent restarts the worker.
    """
    # The pipes move to descriptors of their own; fd 1 becomes stderr, so a stray
    # print (ours or a library's) is a relayed log line, never a broken frame.
    control_fd, reports_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    steno_logging.configure(json=True, stream=sys.stderr)  # until Start sets the level
    runtime.tune_for_streams()  # the collector's policy for many streams (engine/runtime.py)
    try:
        return trio.run(_main, control_fd, reports_fd)
    except Exception:
        log.exception("daemon.worker.crashed")
        return 70


if __name__ == "__main__":
    sys.exit(main())
