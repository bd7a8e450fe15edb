"""The CI skip policy (tests/skip_policy.py), run on a small suite of its own.

Planted bug it catches: the hook returning the report unchanged (or ``on_ci`` never
true) — CI would stay green with ffmpeg or PulseAudio tests silently skipped.
"""

from __future__ import annotations

import os
import pathlib

import pytest
from skip_policy import (
    ALLOWED_CI_SKIPS,
    REAL_TIME_MAX_LOAD_PER_CORE,
    real_time_trusted,
    unexpected_skip,
)

TESTS = pathlib.Path(__file__).resolve().parent

pytest_plugins = ["pytester"]

SUITE = """
import pytest

def test_runs():
    pass

@pytest.mark.skipif(True, reason="ffmpeg not installed")
def test_marker_skip():
    pass

def test_call_skip():
    pytest.skip("pulseaudio cannot be started")

@pytest.fixture
def tool():
    pytest.skip("PortAudio missing")

def test_fixture_skip(tool):
    pass

@pytest.mark.skipif(True, reason="POSIX signals")
def test_allowed():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xfail():
    raise ValueError
"""


def run_suite(pytester: pytest.Pytester, ci: str | None) -> pytest.RunResult:
    pytester.makepyfile(test_suite=SUITE)
    pytester._monkeypatch.setenv("PYTHONPATH", str(TESTS))
    if ci is None:
        pytester._monkeypatch.delenv("CI", raising=False)
    else:
        pytester._monkeypatch.setenv("CI", ci)
    return pytester.runpytest_subprocess("-p", "skip_policy", "-ra", "-p", "no:cacheprovider")


class TestSkipPolicy:
    @pytest.mark.timeout(120)
    def test_ci_fails_unexplained_skips(self, pytester: pytest.Pytester) -> None:
        """CI=true: marker, call and fixture skips fail with the reason; allowed ones stay skips."""
        result = run_suite(pytester, "true")
        # a setup-phase skip (marker, fixture) becomes an error, a call-phase one a failure
        result.assert_outcomes(passed=1, failed=1, errors=2, skipped=1, xfailed=1)
        result.stdout.fnmatch_lines(["*skipped on CI: ffmpeg not installed*"])
        result.stdout.fnmatch_lines(["*skipped on CI: pulseaudio cannot be started*"])
        result.stdout.fnmatch_lines(["*skipped on CI: PortAudio missing*"])
        result.stdout.fnmatch_lines(["SKIPPED * POSIX signals"])

    @pytest.mark.timeout(120)
    def test_off_ci_skips_are_printed(self, pytester: pytest.Pytester) -> None:
        """Without CI a skip stays a skip, and the summary names each one with its reason."""
        result = run_suite(pytester, None)
        result.assert_outcomes(passed=1, skipped=4, xfailed=1)
        result.stdout.fnmatch_lines(["SKIPPED * ffmpeg not installed"])

    def test_every_allowed_skip_says_why(self) -> None:
        """Each allowlisted reason carries a justification, and nothing else passes."""
        assert all(why.strip() for why in ALLOWED_CI_SKIPS.values())
        assert unexpected_skip("needs ffmpeg") is not None
        assert all(unexpected_skip(f"x {reason} y") is None for reason in ALLOWED_CI_SKIPS)


class TestRealTimeTrusted:
    def test_an_overloaded_machine_skips_with_the_load_and_ci_accepts_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Above the bound per core: a skip naming the bound and the load, allowed on CI."""
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        monkeypatch.setattr(os, "getloadavg", lambda: (REAL_TIME_MAX_LOAD_PER_CORE * 2 + 0.1, 0, 0))
        with pytest.raises(pytest.skip.Exception) as skipped:
            real_time_trusted("the first final in time")
        reason = str(skipped.value)
        assert reason.startswith("real-time bound not checked: the first final in time, ")
        assert "load average of 7.1 on 2 cores" in reason
        assert unexpected_skip(reason) is None

    def test_a_machine_within_the_bound_checks_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """At the bound per core the test goes on (no skip)."""
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        monkeypatch.setattr(os, "getloadavg", lambda: (REAL_TIME_MAX_LOAD_PER_CORE * 2, 0, 0))
        real_time_trusted("the first final in time")
