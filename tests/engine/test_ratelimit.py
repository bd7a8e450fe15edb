"""``engine.ratelimit``: a process's share of the task-start budget (``STENO_RATE_SHARE``)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from engine.errors import ConfigError
from engine.policy import RATE_LIMITS, RateLimit
from engine.ratelimit import (
    RATE_SHARE_VAR,
    StartLimiter,
    max_shares,
    parse_start_rate,
    rate_share,
    share_limits,
    uniform_limits,
)


class TestRateShare:
    @pytest.mark.parametrize(
        ("text", "share"),
        [(None, 1.0), ("", 1.0), ("1", 1.0), ("0.5", 0.5), ("1/4", 0.25), (" 0.1 ", 0.1)],
    )
    def test_fractions(self, text: str | None, share: float) -> None:
        """Unset means the whole budget; a decimal or a ratio in (0, 1] is the share."""
        env = {} if text is None else {RATE_SHARE_VAR: text}
        assert rate_share(env) == pytest.approx(share)

    @pytest.mark.parametrize("text", ["0", "-0.5", "1.5", "abc", "1/0", "nan", "inf", "2/1"])
    def test_bad_value_is_one_line_naming_the_variable(self, text: str) -> None:
        """Anything else is a configuration error of one line with the fix."""
        with pytest.raises(ConfigError) as info:
            rate_share({RATE_SHARE_VAR: text})
        message = str(info.value)
        assert "\n" not in message
        assert RATE_SHARE_VAR in message and "fix:" in message

    def test_the_limiter_reads_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A limiter made without a share takes the process's (the seam a parent sets)."""
        monkeypatch.setenv(RATE_SHARE_VAR, "1/2")
        limiter = StartLimiter()
        assert limiter.share == 0.5
        assert limiter.limit("paraformer") == RateLimit(10.0, burst=10)
        monkeypatch.setenv(RATE_SHARE_VAR, "x")
        with pytest.raises(ConfigError):
            StartLimiter()


class TestShareLimits:
    def test_rate_exact_burst_rounded_down(self) -> None:
        """A third of paraformer's 20/s, burst 20: 6.67/s, burst 6 (never above a third)."""
        third = share_limits(RATE_LIMITS, 1 / 3)["paraformer"]
        assert third.rate == pytest.approx(20 / 3)
        assert third.burst == 6
        assert third.per_s == 1.0
        livetranslate = share_limits(RATE_LIMITS, 0.5)["livetranslate"]
        assert (livetranslate.rate, livetranslate.per_s, livetranslate.burst) == (5.0, 60.0, 5)

    def test_a_process_always_gets_one_start_of_burst(self) -> None:
        """Below 1/burst the burst stays one start; ``max_shares`` says where that begins."""
        assert share_limits(RATE_LIMITS, 0.01)["gummy"].burst == 1
        assert max_shares("gummy") == 10
        assert max_shares("paraformer") == 20
        assert max_shares("paraformer", 0.1) == 2
        assert max_shares("paraformer", 0.01) == 1
        assert max_shares("no-such-family") > 1000

    @pytest.mark.parametrize("n", [2, 3, 7, 20])
    async def test_n_shares_never_exceed_the_budget(
        self, n: int, autojump_clock: trio.testing.MockClock
    ) -> None:
        """N limiters at 1/N each, every one asked for 60 starts at once: together they
        never start more than one limiter with the whole budget may in any window."""
        limiters = [StartLimiter(share=1 / n) for _ in range(n)]
        starts: list[float] = []

        async def start(limiter: StartLimiter) -> None:
            await limiter.acquire("paraformer")
            starts.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for limiter in limiters:
                for _ in range(60):
                    nursery.start_soon(start, limiter)
        starts.sort()
        whole = RATE_LIMITS["paraformer"]  # 20/s, burst 20
        for i, t in enumerate(starts):
            for window in (0.0, 0.5, 1.0, 2.5):
                inside = sum(1 for u in starts[i:] if u <= t + window + 1e-9)
                assert inside <= whole.capacity + whole.rate * window + 1e-6, (n, t, window)
        # And the shares are used, not wasted: 60 N starts take about as long as one
        # limiter with the whole budget would need.
        assert starts[-1] == pytest.approx((60 * n - 20) / 20, rel=0.15)


class TestParseStartRate:
    @pytest.mark.parametrize(
        ("text", "limit"),
        [
            ("20", RateLimit(20)),
            ("20/s", RateLimit(20)),
            (" 0.5 ", RateLimit(0.5)),
            ("10/min", RateLimit(10, per_s=60.0)),
            ("Unlimited", None),
        ],
    )
    def test_rates(self, text: str, limit: RateLimit | None) -> None:
        """A rate per second or per minute, or no limit at all."""
        assert parse_start_rate(text) == limit

    @pytest.mark.parametrize("text", ["0", "-1", "", "x", "20/h", "nan", "inf", "1/0"])
    def test_bad_rate_is_one_line_with_the_fix(self, text: str) -> None:
        """Anything else is one line naming the option and what to write."""
        with pytest.raises(ConfigError) as info:
            parse_start_rate(text, flag="--start-rate")
        assert "\n" not in str(info.value)
        assert "--start-rate" in str(info.value) and "fix:" in str(info.value)

    def test_uniform_limits(self) -> None:
        """One budget for every family; None leaves every family unlimited."""
        assert uniform_limits(RateLimit(5)) == dict.fromkeys(RATE_LIMITS, RateLimit(5))
        assert uniform_limits(None) == {}

    async def test_an_unlimited_limiter_never_waits(self, autojump_clock: object) -> None:
        """With no budgets, a thousand starts take no time."""
        limiter = StartLimiter(uniform_limits(None), share=1.0)
        t0 = trio.current_time()
        for _ in range(1000):
            await limiter.acquire("paraformer")
        assert trio.current_time() == t0 and limiter.waited_s == 0.0
