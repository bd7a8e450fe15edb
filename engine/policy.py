"""Restart policy as data, and the pure maths behind it (no trio, no clock reads).

* :class:`RestartPolicy` — attempt limit (or unbounded), backoff base and cap,
  full jitter, and the healthy-run length that resets the attempt counter.
  Two profiles: :data:`DAEMON` never gives up on transient errors;
  :data:`CLI` gives up after a configurable count.
* :func:`next_delay` — capped exponential backoff with full jitter.
* :class:`Backoff` — the attempt counter every retry loop keeps (the session's,
  the daemon's stream restarts, its source reconnects): a failure after a
  healthy run starts the count over.
* :func:`classify` — every failure is permanent (stop the stream with one clear
  error) or transient (retry), by a table.
* :class:`TokenBucket` — task starts per model family, shared by every stream
  of a process; time is passed in, so it is tested without a clock.
"""

from __future__ import annotations

import enum
import random
from typing import Final

import msgspec

from engine.errors import (
    AuthError,
    ConfigError,
    ConnectFailed,
    Disconnected,
    InputError,
    RemoteProtocolError,
    StenoError,
    StenoTimeout,
    TaskFailed,
)

__all__ = [
    "CLI",
    "DAEMON",
    "RATE_LIMITS",
    "Backoff",
    "ErrorCategory",
    "RateLimit",
    "RestartPolicy",
    "TokenBucket",
    "classify",
    "next_delay",
]


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When and how fast to retry a stream's session after a transient failure.

    Attributes:
        max_attempts: consecutive failed attempts before giving up; None = never give up.
        backoff_base_s: the first delay's upper bound.
        backoff_cap_s: no delay exceeds this.
        jitter: full jitter (uniform in [0, bound]) when true; the bound itself when false.
        healthy_after_s: a task that ran this long resets the attempt counter.
    """

    max_attempts: int | None = 5
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    jitter: bool = True
    healthy_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0 or None (unbounded)")
        if not 0 < self.backoff_base_s <= self.backoff_cap_s:
            raise ValueError("need 0 < backoff_base_s <= backoff_cap_s")
        if self.healthy_after_s < 0:
            raise ValueError("healthy_after_s must be >= 0")


DAEMON: Final = RestartPolicy(max_attempts=None, backoff_base_s=0.5, backoff_cap_s=30.0)
CLI: Final = RestartPolicy(max_attempts=5, backoff_base_s=0.5, backoff_cap_s=10.0)


def backoff_bound(policy: RestartPolicy, attempt: int) -> float:
    """The upper bound of the delay before retry number ``attempt`` (1-based)."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    # 2**(attempt-1) overflows float for absurd attempt counts; cap the exponent.
    return min(policy.backoff_cap_s, policy.backoff_base_s * 2.0 ** min(attempt - 1, 64))


def next_delay(policy: RestartPolicy, attempt: int, rng: random.Random) -> float | None:
    """The delay before retry ``attempt`` (1-based), or None when the policy gives up."""
    if policy.max_attempts is not None and attempt > policy.max_attempts:
        return None
    bound = backoff_bound(policy, attempt)
    return rng.uniform(0.0, bound) if policy.jitter else bound


class Backoff:
    """One retry loop's attempt count and delays under ``policy`` (pure: durations come in).

    Args:
        policy: the limits and backoff curve.
        rng: the jitter's source (seeded, so a run replays), or its seed: then the
            generator (2.5 KB of state) is made at the first failure, so a loop that
            never fails never holds one; the delays are the same either way.
    """

    __slots__ = ("_rng", "attempt", "policy")

    def __init__(self, policy: RestartPolicy, rng: random.Random | int) -> None:
        self.policy = policy
        self.attempt = 0  # consecutive failed attempts so far
        self._rng = rng

    def failed(self, ran_s: float | None) -> float | None:
        """An attempt failed after running ``ran_s`` s (None: it never got going).

        Returns the delay before the next attempt, or None when the policy gives up.
        A run of at least ``healthy_after_s`` resets the count first.
        """
        if ran_s is not None and ran_s >= self.policy.healthy_after_s:
            self.attempt = 0
        self.attempt += 1
        if isinstance(self._rng, int):
            self._rng = random.Random(self._rng)
        return next_delay(self.policy, self.attempt, self._rng)

    def failed_forever(self, ran_s: float | None) -> float:
        """Like :meth:`failed`, for a loop that never gives up: past the limit, the cap."""
        delay = self.failed(ran_s)
        return self.policy.backoff_cap_s if delay is None else delay

    def reset(self) -> None:
        """A run went well: the next failure is the first again."""
        self.attempt = 0


class ErrorCategory(enum.Enum):
    AUTH = "auth"
    CONFIG = "config"
    INPUT = "input"
    QUOTA = "quota"
    THROTTLED = "throttled"
    SERVER = "server"
    NETWORK = "network"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"

    @property
    def is_permanent(self) -> bool:
        return self in _PERMANENT


_PERMANENT: Final = frozenset(
    {ErrorCategory.AUTH, ErrorCategory.CONFIG, ErrorCategory.INPUT, ErrorCategory.QUOTA}
)

# task-failed codes (DASHSCOPE.md §7.1) -> category; anything else is SERVER (transient).
TASK_CODES: Final[dict[str, ErrorCategory]] = {
    "InvalidApiKey": ErrorCategory.AUTH,
    "AccessDenied": ErrorCategory.AUTH,
    "AccessDenied.Unpurchased": ErrorCategory.AUTH,
    "InvalidParameter": ErrorCategory.CONFIG,
    "Model.NotExist": ErrorCategory.CONFIG,
    "UNSUPPORTED_FORMAT": ErrorCategory.CONFIG,
    "NO_VALID_AUDIO_ERROR": ErrorCategory.CONFIG,
    "Arrearage": ErrorCategory.QUOTA,
    "DataInspectionFailed": ErrorCategory.CONFIG,
    "Throttling": ErrorCategory.THROTTLED,
    "Throttling.RateQuota": ErrorCategory.THROTTLED,
    "Throttling.AllocationQuota": ErrorCategory.THROTTLED,
    "CLIENT_ERROR": ErrorCategory.TIMEOUT,  # the 23 s idle timer: a retry with audio fixes it
    "InternalError": ErrorCategory.SERVER,
    "ServiceUnavailable": ErrorCategory.SERVER,
    "GatewayTimeout": ErrorCategory.SERVER,
}


def classify(exc: BaseException) -> ErrorCategory:
    """The category of a failure; unknown errors are transient SERVER errors."""
    match exc:
        case AuthError():
            return ErrorCategory.AUTH
        case ConnectFailed(status=status) if status is not None:
            if status == 429:
                return ErrorCategory.THROTTLED
            if 400 <= status < 500:
                return ErrorCategory.CONFIG
            return ErrorCategory.SERVER
        case ConnectFailed() | Disconnected():
            return ErrorCategory.NETWORK
        case TaskFailed(code=code, message=message):
            if code in TASK_CODES:
                return TASK_CODES[code]
            if "rate limit" in message.lower() or code.startswith("Throttling"):
                return ErrorCategory.THROTTLED
            return ErrorCategory.SERVER
        case StenoTimeout():
            return ErrorCategory.TIMEOUT
        case RemoteProtocolError():
            return ErrorCategory.PROTOCOL
        case ConfigError():
            return ErrorCategory.CONFIG
        case InputError():
            return ErrorCategory.INPUT
        case StenoError():
            return ErrorCategory.SERVER
    return ErrorCategory.SERVER


class RateLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``rate`` task starts per ``per_s`` seconds, with bursts up to ``burst``."""

    rate: float
    per_s: float = 1.0
    burst: int | None = None

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else max(1, int(self.rate)))


# DASHSCOPE.md §8: task starts per model family.
RATE_LIMITS: Final[dict[str, RateLimit]] = {
    "paraformer": RateLimit(20),
    "fun-asr": RateLimit(20),
    "gummy": RateLimit(10),
    "livetranslate": RateLimit(10, per_s=60.0),
}


class TokenBucket:
    """A token bucket; callers pass ``now`` (seconds on any monotonic clock)."""

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self._tokens = limit.capacity
        self._last = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._last)
        self._tokens = min(
            self.limit.capacity, self._tokens + elapsed * self.limit.rate / self.limit.per_s
        )
        self._last = max(self._last, now)

    def try_take(self, now: float) -> float:
        """Take a token if one is there (returns 0.0); else the seconds until one will be."""
        self._refill(now)
        # A whisker below a whole token counts as one: float rounding must not
        # produce waits shorter than the clock can represent.
        if self._tokens >= 1.0 - 1e-9:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) * self.limit.per_s / self.limit.rate
