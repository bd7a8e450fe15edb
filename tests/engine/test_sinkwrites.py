"""The write batcher: every stream's sink writes, a few worker-thread hops a second."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from engine.actors._sinkwrites import LINGER_S, WriteBatcher, current_write_batcher


class TestBatching:
    async def test_writes_queued_together_share_a_hop(self) -> None:
        """Many callers queued before the server runs: one hop, every result to its caller."""
        batcher = WriteBatcher()
        results: dict[int, tuple[int, bool]] = {}
        main = threading.get_ident()

        async def write(i: int) -> None:
            results[i] = await batcher.run_sync(lambda: (i * i, threading.get_ident() != main))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(write, i)
        assert results == {i: (i * i, True) for i in range(50)}
        assert batcher.jobs == 50
        assert batcher.hops <= 2  # the first may go alone; the rest queue behind it

    async def test_a_lone_write_goes_at_once(self, autojump_clock: trio.testing.MockClock) -> None:
        """An idle batcher does not wait for company: no linger before the first hop."""
        batcher = WriteBatcher(linger_s=5.0)
        t0 = trio.current_time()
        assert await batcher.run_sync(lambda: 1) == 1
        assert trio.current_time() - t0 < 5.0

    async def test_hops_are_at_least_linger_apart(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Under load, writes queued while the batcher rests share its next hop."""
        batcher = WriteBatcher(linger_s=1.0)
        done: list[float] = []

        async def writer(k: int) -> None:
            await trio.sleep(0.1 * k)  # one write every 100 ms, for 2 s
            await batcher.run_sync(lambda: None)
            done.append(trio.current_time())

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for k in range(20):
                    nursery.start_soon(writer, k)
        assert batcher.jobs == 20
        assert batcher.hops <= 4  # at 0 s, ~1 s, ~2 s (and one more at most)

    def test_linger_must_not_be_negative(self) -> None:
        """A negative (or NaN) linger is refused."""
        for bad in (-0.1, float("nan")):
            with pytest.raises(ValueError, match="linger_s"):
                WriteBatcher(linger_s=bad)

    def test_default_linger(self) -> None:
        """The run's batcher rests LINGER_S between hops."""

        async def main() -> float:
            return current_write_batcher().linger_s

        assert trio.run(main) == LINGER_S


class TestErrors:
    async def test_exceptions_reach_their_caller_only(self) -> None:
        """A write that raises raises in its caller; the others in the hop succeed."""
        batcher = WriteBatcher()
        got: dict[str, object] = {}

        def full() -> int:
            raise OSError(28, "No space left on device")

        async def call(name: str, fn: object) -> None:
            try:
                got[name] = await batcher.run_sync(fn)  # type: ignore[arg-type]
            except OSError as exc:
                got[name] = exc

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, "bad", full)
                nursery.start_soon(call, "good", lambda: 7)
        assert got["good"] == 7
        assert isinstance(got["bad"], OSError)

    async def test_no_thread_fails_every_waiter(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """If no worker thread can start, each waiter gets the error; the batcher goes on."""
        batcher = WriteBatcher(linger_s=0.0)
        real = trio.to_thread.run_sync
        calls = 0

        async def broken(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("can't start new thread")
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(trio.to_thread, "run_sync", broken)
        with trio.fail_after(10):
            with pytest.raises(RuntimeError, match="new thread"):
                await batcher.run_sync(lambda: 1)
            assert await batcher.run_sync(lambda: 2) == 2


class TestCancellation:
    async def test_like_to_thread(self) -> None:
        """Cancelled before queueing: nothing runs. Once queued, the write finishes and
        its caller sees the cancellation at its next checkpoint."""
        batcher = WriteBatcher()
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

        got: list[int] = []

        async def writer(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as own:
                task_status.started(own)
                got.append(await batcher.run_sync(slow))
                await trio.lowlevel.checkpoint()
                got.append(-1)  # pragma: no cover - cancelled above

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                own = await nursery.start(writer)
                own.cancel()
                await trio.testing.wait_all_tasks_blocked()
                release.set()
        assert ran == [2]
        assert got == [2]


class TestPerRun:
    async def test_one_batcher_per_run(self) -> None:
        """current_write_batcher is one object per trio run."""
        assert current_write_batcher() is current_write_batcher()

    def test_runs_do_not_share(self) -> None:
        """Each run gets its own batcher; its server task ends with the run."""
        seen: list[WriteBatcher] = []

        async def main() -> None:
            seen.append(current_write_batcher())
            assert await seen[-1].run_sync(lambda: 1) == 1

        trio.run(main)
        trio.run(main)
        assert seen[0] is not seen[1]
