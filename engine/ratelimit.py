"""Task-start rate limiting shared by every stream of a process (DESIGN §3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from engine.policy import RATE_LIMITS, RateLimit, TokenBucket

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["StartLimiter", "process_limiter"]

log = structlog.get_logger("steno.ratelimit")


class StartLimiter:
    """One token bucket per model family; ``acquire`` waits for a task-start token.

    Create one per engine (not per stream) and hand it to every session, so a burst
    of reconnects or files never trips the service's throttling.
    """

    def __init__(self, limits: Mapping[str, RateLimit] = RATE_LIMITS) -> None:
        self._limits = dict(limits)
        self._buckets: dict[str, TokenBucket] = {}
        self._locks: dict[str, trio.Lock] = {}
        self.waited_s = 0.0  # total time streams spent waiting, for metrics

    async def acquire(self, family: str) -> None:
        """Wait (on the trio clock) until a task of ``family`` may start.

        Families without a limit pass at once. Cancellation: safe; no token is taken
        by a cancelled wait.
        """
        limit = self._limits.get(family)
        if limit is None:
            return
        bucket = self._buckets.get(family)
        if bucket is None:
            bucket = self._buckets[family] = TokenBucket(limit, trio.current_time())
        # Waiters queue in FIFO order (trio.Lock is fair): no thundering herd.
        lock = self._locks.setdefault(family, trio.Lock())
        async with lock:
            while True:
                wait = bucket.try_take(trio.current_time())
                if wait <= 0.0:
                    return
                self.waited_s += wait
                log.debug("ratelimit.wait", family=family, wait_s=round(wait, 3))
                await trio.sleep(wait)


_PROCESS: trio.lowlevel.RunVar[StartLimiter] = trio.lowlevel.RunVar("steno_start_limiter")


def process_limiter() -> StartLimiter:
    """The limiter of the running trio loop, for every stream opened without one.

    A stream that is handed no limiter still shares the process's buckets (one
    per trio run, so a test's virtual clock never meets another run's tokens).
    """
    try:
        return _PROCESS.get()
    except LookupError:
        limiter = StartLimiter()
        _PROCESS.set(limiter)
        return limiter
