"""The embedded simulator: one bootstrap for every face that runs without a key.

``steno transcribe``/``translate``/``listen`` and the batch commands (no
``DASHSCOPE_API_KEY``, no ``--url``), the daemon (``[daemon] simulator``) and the
embedding API (``StreamConfig(simulator=...)``) all start it here: a recognizer,
a TCP simulator on a free loopback port, and both closed on exit in that order.
Each caller says in its own words (a stderr line, a log event) that it is not
the real service.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from adapters.sim.recognizers import RecognizerKind
    from adapters.sim.server import SimulatorHandle

__all__ = ["describe_recognizer", "embedded_simulator_or_none", "open_embedded_simulator"]


@contextlib.asynccontextmanager
async def open_embedded_simulator(
    recognizer: RecognizerKind, *, faults: str | None = None
) -> AsyncIterator[SimulatorHandle]:
    """Run a simulator on 127.0.0.1 (a free port) for the body of the ``async with``.

    Args:
        recognizer: ``sphinx`` (offline English text) or ``scripted`` (tone-coded words).
        faults: a fault plan such as ``drop:at=3;first=1`` for every connection.

    Raises:
        ConfigError: an unknown recognizer or a bad fault plan (before anything starts).

    Resource handling: leaving the block stops the server (dropping its connections),
    then closes the recognizer (its worker processes), even when cancelled.
    """
    # Imported here: the simulator (and pocketsphinx) costs start-up time that a
    # run against the real service should not pay.
    from adapters.sim.config import SimConfig
    from adapters.sim.faults import parse_fault_spec
    from adapters.sim.recognizers import make_recognizer
    from adapters.sim.server import open_simulator

    plan = parse_fault_spec(faults) if faults else None
    engine = make_recognizer(recognizer)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.aclose)
        yield await stack.enter_async_context(open_simulator(SimConfig(), engine, faults=plan))


def embedded_simulator_or_none(
    recognizer: RecognizerKind | None,
) -> contextlib.AbstractAsyncContextManager[SimulatorHandle | None]:
    """:func:`open_embedded_simulator`, or a block that gives None when there is no recognizer."""
    return contextlib.nullcontext() if recognizer is None else open_embedded_simulator(recognizer)


def describe_recognizer(recognizer: str) -> str:
    """What the notice line says about the recognizer's text."""
    return "pocketsphinx, offline, low accuracy" if recognizer == "sphinx" else "scripted"
