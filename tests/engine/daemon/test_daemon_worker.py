"""A worker's side of the pipes, in-process on memory streams and the virtual clock."""

from __future__ import annotations

import trio
import trio.testing

from engine.daemon.worker import REPORT_EVERY_S, run_worker
from engine.daemon.worker_wire import Drain, FrameReader, Report, Start, Stopped, encode
from tests.engine.daemon.daemon_helpers import config

NO_STREAMS = config('[daemon]\nworkers = 2\nlog-level = "error"\n')


class Worker:
    """``run_worker`` on two memory pipes, as the parent sees it."""

    def __init__(self) -> None:
        self.control, control_recv = trio.testing.memory_stream_pair()
        reports_send, reports_recv = trio.testing.memory_stream_pair()
        self._ends = (control_recv, reports_send)
        self.reports = FrameReader(reports_recv)
        self.code: int | None = None

    async def run(self) -> None:
        self.code = await run_worker(*self._ends)

    async def start(self) -> None:
        start = Start(worker=1, workers=2, config=NO_STREAMS, url="ws://x", api_key="sk-w")
        await self.control.send_all(encode(start))


async def test_reports_every_second_and_drains_on_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Start, a Report a second, Drain: a last Report, Stopped(clean), exit 0."""
    worker = Worker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await worker.start()
        times = []
        for _ in range(3):
            message = await worker.reports.receive()
            assert isinstance(message, Report) and message.snapshot.streams == ()
            times.append(trio.current_time())
        assert times[2] - times[0] == 2 * REPORT_EVERY_S
        await worker.control.send_all(encode(Drain()))
        messages = []
        while (message := await worker.reports.receive()) is not None:
            messages.append(message)
            if isinstance(message, Stopped):
                break
        assert isinstance(messages[-2], Report) and messages[-2].snapshot.draining
        assert messages[-1] == Stopped(clean=True)
    assert worker.code == 0


async def test_a_parent_gone_cancels_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """End of file on the control pipe (the parent died): stop now, exit 1."""
    worker = Worker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await worker.start()
        assert isinstance(await worker.reports.receive(), Report)
        await worker.control.aclose()
    assert worker.code == 1


async def test_no_start_is_exit_2(autojump_clock: trio.testing.MockClock) -> None:
    """A parent that never says Start (or says something else first): exit 2."""
    worker = Worker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await worker.control.send_all(encode(Drain()))
    assert worker.code == 2
