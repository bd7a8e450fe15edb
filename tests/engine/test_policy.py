"""Restart policy maths, failure classification and rate limiting (pure, plus MockClock)."""

from __future__ import annotations

import random

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import (
    AuthError,
    ConfigError,
    ConnectFailed,
    Disconnected,
    FinishTimeout,
    InputError,
    RemoteProtocolError,
    StenoTimeout,
    TaskFailed,
)
from engine.policy import (
    CLI,
    DAEMON,
    RATE_LIMITS,
    Backoff,
    ErrorCategory,
    RateLimit,
    RestartPolicy,
    TokenBucket,
    backoff_bound,
    classify,
    next_delay,
)
from engine.ratelimit import StartLimiter

policies = st.builds(
    RestartPolicy,
    max_attempts=st.none() | st.integers(0, 50),
    backoff_base_s=st.floats(0.01, 5.0),
    backoff_cap_s=st.floats(5.0, 300.0),
    jitter=st.booleans(),
    healthy_after_s=st.floats(0.0, 600.0),
)


class TestBackoff:
    @given(policy=policies, attempt=st.integers(1, 10_000), seed=st.integers(0, 2**32))
    def test_delay_is_within_the_capped_bound(
        self, policy: RestartPolicy, attempt: int, seed: int
    ) -> None:
        """Every delay is in [0, min(cap, base * 2**(attempt-1))], or None past max_attempts."""
        delay = next_delay(policy, attempt, random.Random(seed))
        if policy.max_attempts is not None and attempt > policy.max_attempts:
            assert delay is None
            return
        assert delay is not None
        bound = min(policy.backoff_cap_s, policy.backoff_base_s * 2.0 ** min(attempt - 1, 64))
        assert 0.0 <= delay <= bound <= policy.backoff_cap_s
        if not policy.jitter:
            assert delay == bound

    @given(policy=policies, attempt=st.integers(1, 200))
    def test_bound_never_decreases(self, policy: RestartPolicy, attempt: int) -> None:
        """The backoff bound is monotone in the attempt number and reaches the cap."""
        assert backoff_bound(policy, attempt) <= backoff_bound(policy, attempt + 1)
        assert backoff_bound(policy, 200) == policy.backoff_cap_s

    @given(seed=st.integers(0, 2**32))
    def test_same_seed_same_delays(self, seed: int) -> None:
        """Jitter replays from its seed."""
        a = [next_delay(CLI, n, random.Random(seed)) for n in range(1, 6)]
        b = [next_delay(CLI, n, random.Random(seed)) for n in range(1, 6)]
        assert a == b

    @given(
        policy=policies,
        seed=st.integers(0, 2**32),
        runs=st.lists(st.none() | st.floats(0.0, 1e4), min_size=1, max_size=12),
    )
    def test_a_seed_makes_the_generator_on_the_first_failure(
        self, policy: RestartPolicy, seed: int, runs: list[float | None]
    ) -> None:
        """Backoff(policy, seed) holds no generator until a failure, then delays as Random(seed)."""
        lazy, eager = Backoff(policy, seed), Backoff(policy, random.Random(seed))
        lazy.reset()
        assert lazy._rng == seed
        assert [lazy.failed(r) for r in runs] == [eager.failed(r) for r in runs]
        assert isinstance(lazy._rng, random.Random)

    def test_profiles(self) -> None:
        """daemon never gives up; cli gives up after its count."""
        rng = random.Random(0)
        assert next_delay(DAEMON, 10**6, rng) is not None
        assert CLI.max_attempts is not None
        assert next_delay(CLI, CLI.max_attempts + 1, rng) is None

    @pytest.mark.parametrize(
        "raw",
        [
            {"max_attempts": -1},
            {"backoff_base_s": 0},
            {"backoff_base_s": 10, "backoff_cap_s": 1},
            {"healthy_after_s": -1},
            {"max_atempts": 3},
        ],
    )
    def test_bad_policy_is_refused_at_decode(self, raw: dict[str, object]) -> None:
        """A policy from a config file fails with the field's path."""
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(raw, RestartPolicy)


class TestClassify:
    @pytest.mark.parametrize(
        ("exc", "category"),
        [
            (AuthError("x", status=401), ErrorCategory.AUTH),
            (ConnectFailed("x", status=403), ErrorCategory.CONFIG),
            (ConnectFailed("x", status=429), ErrorCategory.THROTTLED),
            (ConnectFailed("x", status=503), ErrorCategory.SERVER),
            (ConnectFailed("refused"), ErrorCategory.NETWORK),
            (Disconnected("closed"), ErrorCategory.NETWORK),
            (TaskFailed("InvalidApiKey", "x"), ErrorCategory.AUTH),
            (TaskFailed("InvalidParameter", "x"), ErrorCategory.CONFIG),
            (TaskFailed("Model.NotExist", "x"), ErrorCategory.CONFIG),
            (TaskFailed("Arrearage", "x"), ErrorCategory.QUOTA),
            (TaskFailed("Throttling.RateQuota", "x"), ErrorCategory.THROTTLED),
            (
                TaskFailed("X", "Requests rate limit exceeded, please try again later."),
                ErrorCategory.THROTTLED,
            ),
            (
                TaskFailed("CLIENT_ERROR", "request timeout after 23 seconds."),
                ErrorCategory.TIMEOUT,
            ),
            (TaskFailed("InternalError", "x"), ErrorCategory.SERVER),
            (TaskFailed("SomethingNew", "x"), ErrorCategory.SERVER),
            (FinishTimeout("x"), ErrorCategory.TIMEOUT),
            (StenoTimeout("x"), ErrorCategory.TIMEOUT),
            (RemoteProtocolError("x"), ErrorCategory.PROTOCOL),
            (ConfigError("x"), ErrorCategory.CONFIG),
            (InputError("x"), ErrorCategory.INPUT),
        ],
    )
    def test_table(self, exc: Exception, category: ErrorCategory) -> None:
        """Each failure has one category; only auth, config, input and quota are permanent."""
        assert classify(exc) is category
        assert category.is_permanent == (
            category
            in {ErrorCategory.AUTH, ErrorCategory.CONFIG, ErrorCategory.INPUT, ErrorCategory.QUOTA}
        )


class TestTokenBucket:
    @given(
        rate=st.floats(0.1, 50.0),
        burst=st.integers(1, 40),
        takes=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=200),
    )
    def test_never_exceeds_rate_plus_burst(
        self, rate: float, burst: int, takes: list[float]
    ) -> None:
        """Over any run, tokens granted <= burst + rate * elapsed."""
        bucket = TokenBucket(RateLimit(rate, burst=burst), now=0.0)
        now, granted = 0.0, 0
        for step in takes:
            now += step
            if bucket.try_take(now) == 0.0:
                granted += 1
        assert granted <= burst + rate * now + 1e-9

    def test_wait_is_the_time_to_the_next_token(self) -> None:
        """An empty bucket says how long until the next token."""
        bucket = TokenBucket(RateLimit(10, burst=1), now=0.0)
        assert bucket.try_take(0.0) == 0.0
        assert bucket.try_take(0.0) == pytest.approx(0.1)
        assert bucket.try_take(0.1) == 0.0


class TestStartLimiter:
    async def test_shared_bucket_spaces_task_starts(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """45 streams starting at once: 20 at t=0, then one every 50 ms (paraformer: 20/s)."""
        limiter = StartLimiter()
        starts: list[float] = []

        async def start() -> None:
            await limiter.acquire("paraformer")
            starts.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for _ in range(45):
                nursery.start_soon(start)
        starts.sort()
        assert starts[:20] == [0.0] * 20
        assert starts[-1] == pytest.approx(25 * 0.05, abs=1e-6)
        for i in range(len(starts)):
            window = [t for t in starts if starts[i] <= t < starts[i] + 1.0]
            assert len(window) <= 20 + 20

    async def test_livetranslate_is_per_minute(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """livetranslate: 10 session starts a minute."""
        limiter = StartLimiter()
        t0 = trio.current_time()
        for _ in range(11):
            await limiter.acquire("livetranslate")
        assert trio.current_time() - t0 == pytest.approx(6.0)

    async def test_unknown_family_is_not_limited(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A family without a limit passes at once."""
        limiter = StartLimiter()
        for _ in range(100):
            await limiter.acquire("batch")
        assert trio.current_time() == 0.0


class TestDocumentedNumbers:
    """Numbers the README and DASHSCOPE.md promise, pinned as literals.

    Mutants these kill (tools/mutation/SURVIVORS.md): the daemon's cap 30.0 → 29.0,
    the defaults 30.0 → 29/31, fun-asr's 20 task starts/s → 19, livetranslate's
    wait ``* per_s / rate`` → ``/ per_s / rate``, the whisker take leaving
    ``max(-1.0, …)`` tokens, and 400 → CONFIG turned into ``400 != status``.
    Comparing with the constant under test (``CLI.max_attempts is not None``)
    pins nothing.
    """

    def test_restart_profiles(self) -> None:
        """README: the CLI gives up after 5 attempts; a daemon never does, capped at 30 s."""
        assert (CLI.max_attempts, DAEMON.max_attempts) == (5, None)
        assert (DAEMON.backoff_base_s, DAEMON.backoff_cap_s) == (0.5, 30.0)
        assert backoff_bound(DAEMON, 100) == 30.0
        default = RestartPolicy()
        assert (default.backoff_cap_s, default.healthy_after_s) == (30.0, 30.0)

    def test_task_start_limits(self) -> None:
        """DASHSCOPE.md §8: 20 task starts/s for paraformer and fun-asr, 10 for gummy,
        10 sessions a minute for livetranslate."""
        documented = {
            "paraformer": RateLimit(20),
            "fun-asr": RateLimit(20),
            "gummy": RateLimit(10),
            "livetranslate": RateLimit(10, per_s=60.0),
        }
        assert documented == RATE_LIMITS

    def test_livetranslate_waits_six_seconds_for_the_next_session(self) -> None:
        """10 per minute, burst 10: the 11th start waits 60 / 10 = 6 s."""
        bucket = TokenBucket(RATE_LIMITS["livetranslate"], now=0.0)
        assert [bucket.try_take(0.0) for _ in range(10)] == [0.0] * 10
        assert bucket.try_take(0.0) == pytest.approx(6.0)
        assert bucket.try_take(3.0) == pytest.approx(3.0)

    def test_a_whisker_below_a_token_takes_it_and_leaves_none(self) -> None:
        """A take at 1 - 1e-10 tokens succeeds and leaves exactly 0 (not -1e-10): the
        next wait is a whole token's time, exactly."""
        limit = RateLimit(20)
        bucket = TokenBucket(limit, now=0.0)
        for _ in range(20):
            assert bucket.try_take(0.0) == 0.0
        almost = (1.0 - 1e-10) / 20
        assert bucket.try_take(almost) == 0.0
        assert bucket.try_take(almost) == 1.0 / 20

    @pytest.mark.parametrize(
        ("status", "category"),
        [
            (399, ErrorCategory.SERVER),
            (400, ErrorCategory.CONFIG),
            (499, ErrorCategory.CONFIG),
            (500, ErrorCategory.SERVER),
        ],
    )
    def test_upgrade_status_edges(self, status: int, category: ErrorCategory) -> None:
        """4xx at the upgrade is a config error, 400 and 499 included; below is not."""
        assert classify(ConnectFailed("refused", status=status)) is category

    def test_restart_defaults(self) -> None:
        """A daemon stream's ``restart`` table falls back to these (5 attempts, 0.5 s base,
        30 s cap, full jitter, 30 s healthy run).

        Mutants it kills: every default changed (5 → 4, 0.5 → ±1.5, jitter → False).
        """
        default = RestartPolicy()
        assert (default.max_attempts, default.backoff_base_s, default.jitter) == (5, 0.5, True)

    def test_policies_and_limits_are_frozen(self) -> None:
        """Shared profiles cannot be changed by one stream under the others.

        Mutants it kills: ``frozen=True`` → ``False`` on RestartPolicy and RateLimit.
        """
        with pytest.raises(AttributeError):
            DAEMON.backoff_cap_s = 1.0  # type: ignore[misc]
        with pytest.raises(AttributeError):
            RATE_LIMITS["gummy"].rate = 1.0  # type: ignore[misc]

    def test_a_negative_base_is_refused(self) -> None:
        """Mutant it kills: ``0 < backoff_base_s`` → ``0 != backoff_base_s``."""
        with pytest.raises(ValueError, match="backoff_base_s"):
            RestartPolicy(backoff_base_s=-1.0)

    def test_a_clock_going_back_costs_no_tokens(self) -> None:
        """``now`` earlier than the last call refills nothing and takes nothing away.

        Mutant it kills: ``max(0.0, now - self._last)`` → ``max(-1.0, …)``.
        """
        bucket = TokenBucket(RateLimit(20), now=10.0)
        for _ in range(20):
            assert bucket.try_take(10.0) == 0.0
        assert bucket.try_take(9.5) == 1.0 / 20

    def test_edges_of_the_structs_and_maths(self) -> None:
        """Keyword-only policies, strict limits, attempts count from 1, a bucket holds at
        least one token.

        Mutants it kills: ``kw_only=True`` → ``False``, RateLimit's
        ``forbid_unknown_fields=True`` → ``False``, ``attempt < 1`` → ``< 0``, and
        ``max(1, int(self.rate))`` → ``max(2, …)`` / ``max(0, …)``.
        """
        with pytest.raises(TypeError):
            RestartPolicy(5)  # type: ignore[misc]
        with pytest.raises(msgspec.ValidationError, match="unknown field"):
            msgspec.convert({"rate": 1, "brust": 2}, RateLimit)
        with pytest.raises(ValueError, match="attempts count from 1"):
            backoff_bound(DAEMON, 0)
        assert (RateLimit(0.5).capacity, RateLimit(1).capacity) == (1.0, 1.0)
