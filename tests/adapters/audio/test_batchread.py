"""The read batcher: one worker-thread hop for every read queued meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Callable

import trio
import trio.testing

from adapters.audio._batchread import ReadBatcher, current_read_batcher, current_write_batcher


async def in_place(call: Callable[[], None]) -> None:
    """A batch run in the loop: under the autojump clock, time cannot leap during it."""
    await trio.lowlevel.checkpoint()
    call()


class TestReadBatcher:
    async def test_reads_queued_together_share_a_hop(self) -> None:
        """Many callers queued before the server runs: one batch, every result to its caller."""
        batcher = ReadBatcher()
        results: dict[int, tuple[int, bool]] = {}
        main = threading.get_ident()

        async def read(i: int) -> None:
            results[i] = await batcher.run_sync(lambda: (i * i, threading.get_ident() != main))

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(read, i)
        assert results == {i: (i * i, True) for i in range(50)}
        assert batcher.jobs == 50
        assert batcher.batches <= 2  # the first may go alone; the rest queue behind it

    async def test_a_lone_read_goes_at_once(self) -> None:
        """An idle batcher does not wait for company."""
        batcher = ReadBatcher()
        for k in range(3):
            assert await batcher.run_sync(lambda k=k: k) == k
        assert (batcher.batches, batcher.jobs) == (3, 3)

    async def test_reads_with_slack_wait_for_company(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Reads that may wait 50 ms, arriving 10 ms apart: the first goes alone (nothing
        came before it), the next ones wait for company and share two hops, each
        read within its 50 ms (plus the hop)."""
        batcher = ReadBatcher(runner=in_place)
        done: dict[int, float] = {}

        async def read(i: int) -> None:
            await trio.sleep(i * 0.01)
            await batcher.run_sync(lambda: i, gather_s=0.05)
            done[i] = trio.current_time() - i * 0.01

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(read, i)
        assert batcher.batches == 3
        assert done[0] < 0.01
        assert all(0.0 <= done[i] <= 0.05 + 0.01 for i in range(8))

    async def test_a_lone_read_with_slack_is_not_held_back(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Reads a second apart (one paced file) each go at once."""
        batcher = ReadBatcher(runner=in_place)
        for k in range(3):
            t0 = trio.current_time()
            assert await batcher.run_sync(lambda k=k: k, gather_s=0.05) == k
            assert trio.current_time() - t0 < 0.01
            await trio.sleep(1.0)
        assert batcher.batches == 3

    async def test_a_read_without_slack_starts_the_batch_now(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A read that cannot wait takes the waiting ones along at once."""
        batcher = ReadBatcher(runner=in_place)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            await batcher.run_sync(lambda: 0)  # a call just before: the next one waits
            nursery.start_soon(lambda: batcher.run_sync(lambda: 1, gather_s=10.0))
            await trio.testing.wait_all_tasks_blocked()
            assert await batcher.run_sync(lambda: 2) == 2
        assert trio.current_time() - t0 < 1.0
        assert (batcher.batches, batcher.jobs) == (2, 3)

    async def test_exceptions_reach_their_caller_only(self) -> None:
        """A read that raises raises in its caller; the others in the batch succeed."""
        batcher = ReadBatcher()
        outcome: dict[str, object] = {}

        def boom() -> int:
            raise OSError("disk on fire")

        async def call(name: str, fn: object) -> None:
            try:
                outcome[name] = await batcher.run_sync(fn)  # type: ignore[arg-type]
            except OSError as exc:
                outcome[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "bad", boom)
            nursery.start_soon(call, "good", lambda: 7)
        assert outcome["good"] == 7
        assert isinstance(outcome["bad"], OSError)

    async def test_cancellation_like_to_thread(self) -> None:
        """Cancelled before queueing: nothing runs. Once queued, the read finishes and
        its caller sees the cancellation at its next checkpoint."""
        batcher = ReadBatcher()
        ran: list[int] = []
        with trio.CancelScope() as scope:
            scope.cancel()
            await batcher.run_sync(lambda: ran.append(1))
        assert ran == []
        release = threading.Event()

        def slow() -> int:
            release.wait(10)
            ran.append(2)
            return 2

        async with trio.open_nursery() as nursery:
            got: list[int] = []

            async def reader(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as own:
                    task_status.started(own)
                    got.append(await batcher.run_sync(slow))
                    await trio.lowlevel.checkpoint()
                    got.append(-1)  # pragma: no cover - cancelled above

            own = await nursery.start(reader)
            own.cancel()
            release.set()
        assert ran == [2]
        assert got == [2]

    async def test_one_batcher_per_run(self) -> None:
        """current_read_batcher is one object per trio run; the writes have their own."""
        assert current_read_batcher() is current_read_batcher()
        assert current_write_batcher() is current_write_batcher()
        assert current_write_batcher() is not current_read_batcher()

    def test_runs_do_not_share(self) -> None:
        """Each run gets its own batcher; its server task ends with the run."""
        seen: list[ReadBatcher] = []

        async def main() -> None:
            seen.append(current_read_batcher())
            assert await seen[-1].run_sync(lambda: 1) == 1

        trio.run(main)
        trio.run(main)
        assert seen[0] is not seen[1]
