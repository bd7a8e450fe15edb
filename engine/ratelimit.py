"""Task-start rate limiting shared by every stream of a process (DESIGN §3).

A process that is one of several sharing a budget (a ``steno transcribe
--processes N`` worker, a daemon worker) is told its part by its parent in the
environment: ``STENO_RATE_SHARE=<fraction in (0, 1]>`` (``0.25`` or ``1/4``)
scales every family's rate and burst (:func:`share_limits`), so N workers with
1/N each never multiply the service's budget.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Final

import msgspec
import structlog
import trio

from engine.errors import ConfigError
from engine.policy import RATE_LIMITS, RateLimit, TokenBucket

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "LIMITS_PATH",
    "RATE_SHARE_VAR",
    "UNLIMITED",
    "DeclaredLimits",
    "StartLimiter",
    "max_shares",
    "parse_start_rate",
    "process_limiter",
    "rate_share",
    "share_limits",
    "uniform_limits",
]

log = structlog.get_logger("steno.ratelimit")

#: The environment variable that gives a process its share of every task-start budget.
RATE_SHARE_VAR: Final = "STENO_RATE_SHARE"


#: Where a simulator declares the task-start budgets it enforces (HTTP ``GET`` on its port,
#: no key; the real service has no such path): :class:`DeclaredLimits` as JSON.
LIMITS_PATH: Final = "/api/v1/steno/limits"


class DeclaredLimits(msgspec.Struct, frozen=True):
    """A server's own task-start budgets per model family (empty: it enforces none)."""

    task_starts: dict[str, RateLimit]


#: ``--start-rate`` for no client-side task-start limit (a local simulator that enforces none).
UNLIMITED: Final = "unlimited"

_PER: Final = {"": 1.0, "s": 1.0, "min": 60.0}


def parse_start_rate(text: str, *, flag: str = "--start-rate") -> RateLimit | None:
    """A task-start budget as written by a user: ``20``, ``20/s``, ``10/min``, or
    ``unlimited`` (None: no limit). The burst is the rate's whole starts (at least one).

    Raises:
        ConfigError: anything else, in one line naming ``flag`` and the fix.
    """
    spec = text.strip().lower()
    if spec == UNLIMITED:
        return None
    count, _, per = spec.partition("/")
    try:
        rate = float(count)
    except ValueError:
        rate = math.nan
    if per.strip() not in _PER or not (math.isfinite(rate) and rate > 0):
        raise ConfigError(
            f"bad {flag} {text[:40]!r}: not a positive rate; "
            f"fix: e.g. {flag} 20 (per second), 10/min, or {UNLIMITED}"
        )
    return RateLimit(rate, per_s=_PER[per.strip()])


def uniform_limits(limit: RateLimit | None) -> dict[str, RateLimit]:
    """``limit`` for every model family (:data:`~engine.policy.RATE_LIMITS`'); None: no limits."""
    return {} if limit is None else dict.fromkeys(RATE_LIMITS, limit)


def rate_share(environ: Mapping[str, str] | None = None) -> float:
    """This process's share of the task-start budget: ``STENO_RATE_SHARE``, else 1.

    The value is a fraction in (0, 1]: a decimal (``0.25``) or a ratio (``1/4``).

    Raises:
        ConfigError: any other value (one line naming the variable and the fix).
    """
    env = os.environ if environ is None else environ
    text = env.get(RATE_SHARE_VAR)
    if text is None or not text.strip():
        return 1.0
    share = _parse_fraction(text.strip())
    if share is None or not (0.0 < share <= 1.0):
        raise ConfigError(
            f"bad {RATE_SHARE_VAR} {text[:40]!r}: not a fraction in (0, 1]; "
            f"fix: e.g. {RATE_SHARE_VAR}=0.5 or 1/4, or unset it"
        )
    return share


def _parse_fraction(text: str) -> float | None:
    try:
        if "/" in text:
            top, bottom = text.split("/", 1)
            value = float(top) / float(bottom)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) else None


def share_limits(limits: Mapping[str, RateLimit], share: float) -> dict[str, RateLimit]:
    """``limits`` scaled to ``share`` of each: the rate exactly, the burst rounded down.

    A burst below one start is raised to one (a process must be able to start a
    task at all), so the shares' bursts add up to at most the whole burst as long
    as no share is below ``1 / burst``; :func:`max_shares` is how many that allows.
    """
    if share == 1.0:
        return dict(limits)
    return {
        family: RateLimit(
            limit.rate * share,
            per_s=limit.per_s,
            burst=max(1, math.floor(limit.capacity * share + 1e-9)),
        )
        for family, limit in limits.items()
    }


def max_shares(
    family: str, share: float = 1.0, limits: Mapping[str, RateLimit] = RATE_LIMITS
) -> int:
    """How many processes may split ``share`` of ``family``'s budget with a whole
    start of burst each (no limit for a family without one: a large number)."""
    limit = limits.get(family)
    if limit is None:
        return 1 << 30
    return max(1, math.floor(limit.capacity * share + 1e-9))


class StartLimiter:
    """One token bucket per model family; ``acquire`` waits for a task-start token.

    Create one per engine (not per stream) and hand it to every session, so a burst
    of reconnects or files never trips the service's throttling.

    Args:
        limits: each family's budget (the service's, DASHSCOPE.md §8, by default).
        share: the part of ``limits`` this process may use; by default
            ``STENO_RATE_SHARE`` (:func:`rate_share`), else all of it.

    Raises:
        ConfigError: ``STENO_RATE_SHARE`` is set to something that is not a fraction
            in (0, 1] (only when ``share`` is left out).
    """

    def __init__(
        self, limits: Mapping[str, RateLimit] = RATE_LIMITS, *, share: float | None = None
    ) -> None:
        self.share = rate_share() if share is None else share
        self._limits = share_limits(limits, self.share)
        self._buckets: dict[str, TokenBucket] = {}
        self._locks: dict[str, trio.Lock] = {}
        self.waited_s = 0.0  # total time streams spent waiting, for metrics

    def limit(self, family: str) -> RateLimit | None:
        """The budget this limiter applies to ``family`` (after its share), if any."""
        return self._limits.get(family)

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
