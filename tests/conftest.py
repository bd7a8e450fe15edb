"""Shared test fixtures: structlog reset, trio deadlines, and the demo audio."""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ParamSpec

import pytest
import structlog
import trio

P = ParamSpec("P")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO_AUDIO = ROOT / "scenarios" / "audio"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Every test starts and ends with structlog's defaults (no cached loggers)."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def deadline(
    seconds: float,
) -> Callable[[Callable[P, Awaitable[Any]]], Callable[P, Awaitable[Any]]]:
    """Fail an async test that runs longer than ``seconds`` on the trio clock.

    Under ``autojump_clock`` this is virtual time, so a hang is caught at once.
    """

    def decorate(fn: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with trio.fail_after(seconds):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate


@pytest.fixture(name="demo_audio")
def _demo_audio() -> pathlib.Path:
    return DEMO_AUDIO
