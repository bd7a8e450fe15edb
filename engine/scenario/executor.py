"""Driving an executor's schedule on the trio clock (so MockClock tests it in virtual time).

:func:`run_executor` waits for the scenario's ``start-time``, then starts iterations
(one stream each) as :mod:`engine.scenario.schedule` says, each by awaiting
``body(iteration)`` in its own task. It counts ``sessions_started`` per iteration,
``sessions_dropped`` per arrival that found every session busy and
``sessions_interrupted`` per iteration cancelled at its stop deadline; the body
records everything else.

Stopping: when the executor's time is up it starts nothing new; iterations in
progress get ``graceful-stop`` to end, then they are cancelled. A ramping-sessions
session let go by a ramp-down gets ``graceful-ramp-down`` for its stream.

Cancellation: cancelling :func:`run_executor` cancels every iteration (each is
counted as interrupted). Error handling: the body must not raise (it counts its own
failures); if it does, the exception propagates and ends the run.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import msgspec
import trio

from engine.scenario.lifecycle import Lifecycle, Step
from engine.scenario.schedule import (
    WHOLE,
    Segment,
    arrival_offsets,
    executor_end,
    owned_sessions,
    ramp_steps,
    target_at,
)
from engine.scenario.spec import (
    ConstantSessions,
    Executor,
    PerSessionIterations,
    RampingSessionArrivalRate,
    RampingSessions,
    SessionArrivalRate,
    seconds,
)

if TYPE_CHECKING:
    from engine.scenario.metrics import Recorder

__all__ = ["Body", "Iteration", "run_executor"]


class Iteration(msgspec.Struct, frozen=True):
    """One stream of a scenario: ``session`` (global index), its ``iteration`` number
    within that session, and when it was scheduled (trio clock)."""

    scenario: str
    session: int
    iteration: int
    scheduled: float
    offset: float  # seconds after the scenario's start


Body = Callable[[Iteration], Awaitable[None]]

_ROUND: Final = 1e-9


async def run_executor(
    spec: Executor,
    body: Body,
    recorder: Recorder,
    *,
    segment: Segment = WHOLE,
    run_start: float | None = None,
    lifecycle: Lifecycle | None = None,
) -> None:
    """Run one scenario's executor to its end (including its graceful stop).

    Args:
        spec: the scenario.
        body: plays one stream; returns when it ended (must not raise).
        recorder: where the executor's own counters go.
        segment: the execution segment this process runs.
        run_start: the run's start on the trio clock (default: now).
        lifecycle: follows the scenario's phases (:mod:`engine.scenario.lifecycle`).
    """
    life = lifecycle if lifecycle is not None else Lifecycle()
    try:
        await _run(spec, body, recorder, segment, run_start, life)
    except trio.Cancelled:
        life.fire(Step.CANCELLED)
        raise


async def _run(
    spec: Executor,
    body: Body,
    recorder: Recorder,
    segment: Segment,
    run_start: float | None,
    life: Lifecycle,
) -> None:
    start = (trio.current_time() if run_start is None else run_start) + seconds(spec.start_time)
    await trio.sleep_until(start)
    life.fire(Step.STARTED)
    end = start + executor_end(spec)
    stop = end + seconds(spec.graceful_stop)
    name = spec.name

    async def one(session: int, iteration: int, scheduled: float) -> None:
        recorder.add("sessions_started", name)
        try:
            await body(Iteration(name, session, iteration, scheduled, scheduled - start))
        except trio.Cancelled:
            recorder.add("sessions_interrupted", name)
            raise

    async def time_up() -> None:
        await trio.sleep_until(end)
        life.fire(Step.TIME_UP)

    with trio.CancelScope(deadline=stop) as graceful:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(time_up)
            match spec:
                case ConstantSessions() | PerSessionIterations():
                    await _closed(spec, one, start, end, segment)
                case RampingSessions():
                    await _ramping(spec, one, start, end, segment)
                case SessionArrivalRate() | RampingSessionArrivalRate():
                    await _open(spec, one, start, end, segment, recorder)
            nursery.cancel_scope.cancel()  # every stream ended: stop waiting for the time
    life.fire(Step.CANCELLED if graceful.cancelled_caught else Step.ENDED)


_One = Callable[[int, int, float], Awaitable[None]]


async def _closed(
    spec: ConstantSessions | PerSessionIterations,
    one: _One,
    start: float,
    end: float,
    segment: Segment,
) -> None:
    limit = spec.iterations if isinstance(spec, PerSessionIterations) else math.inf

    async def loop(k: int) -> None:
        j = 0
        while j < limit and (now := trio.current_time()) < end - _ROUND:
            await one(k, j, start if j == 0 else now)
            j += 1

    async with trio.open_nursery() as nursery:
        for k in owned_sessions(spec.sessions, segment):
            nursery.start_soon(loop, k)


async def _ramping(
    spec: RampingSessions, one: _One, start: float, end: float, segment: Segment
) -> None:
    steps = ramp_steps(spec)
    ramp_down = seconds(spec.graceful_ramp_down)
    top = max(n for _, n in steps)
    scopes: dict[int, trio.CancelScope] = {}

    def wanted(k: int) -> bool:
        return target_at(steps, trio.current_time() - start) > k

    async def loop(k: int, scope: trio.CancelScope) -> None:
        with scope:
            j = 0
            while wanted(k) and (now := trio.current_time()) < end - _ROUND:
                await one(k, j, now)
                j += 1
        del scopes[k]

    owned = owned_sessions(top, segment)
    async with trio.open_nursery() as nursery:
        for when, _ in steps:
            await trio.sleep_until(start + when)
            for k in owned:
                scope = scopes.get(k)
                if wanted(k):
                    if scope is None:
                        scopes[k] = scope = trio.CancelScope()
                        nursery.start_soon(loop, k, scope)
                    scope.deadline = math.inf
                elif scope is not None and scope.deadline == math.inf:
                    scope.deadline = trio.current_time() + ramp_down


async def _open(
    spec: SessionArrivalRate | RampingSessionArrivalRate,
    one: _One,
    start: float,
    end: float,
    segment: Segment,
    recorder: Recorder,
) -> None:
    free = segment.share(spec.max_sessions)

    async def slot(k: int, scheduled: float) -> None:
        nonlocal free
        try:
            await one(k, 0, scheduled)
        finally:
            free += 1

    async with trio.open_nursery() as nursery:
        for k, offset in arrival_offsets(spec, segment):
            scheduled = start + offset
            if scheduled >= end - _ROUND:
                break
            await trio.sleep_until(scheduled)
            if free > 0:
                free -= 1
                nursery.start_soon(slot, k, scheduled)
            else:
                recorder.add("sessions_dropped", spec.name)
