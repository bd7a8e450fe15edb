"""When sessions start: k6's executors as pure functions of time, and execution segments.

Nothing here sleeps or reads a clock; :mod:`engine.scenario.executor` drives these
plans on the trio clock. Times are seconds after the scenario's ``start-time``.

Closed model (a fixed set of sessions; how fast they go depends on the service):

* ``constant-sessions``: sessions 0…N−1 each start a stream, and another as soon as
  one ends, until ``duration``.
* ``per-session-iterations``: each session plays ``iterations`` streams back to back
  (within ``max-duration``).
* ``ramping-sessions``: the wanted number of sessions follows straight lines between
  stages (:func:`ramp_steps`): ramping up, session *i* is added when the line
  reaches *i* + 1; ramping down, it is let go when the line falls to *i*. A session
  let go finishes its stream (within ``graceful-ramp-down``) and starts no other.

Open model (starts happen whatever the service does):

* ``session-arrival-rate``: start *k* (k = 0, 1, …) at ``k · time-unit / rate`` while
  that is before ``duration``.
* ``ramping-session-arrival-rate``: the rate follows straight lines between stages;
  start *k* happens when the integral of the rate (starts so far) reaches *k*.

Either way a start that finds all of ``max-sessions`` busy is *dropped* (counted in
``sessions_dropped``), never queued.

Execution segments (``--segment I/N``, I = 0…N−1): segment I owns every session and
every start whose global index *k* has ``k mod N == I``. The segments' schedules
partition the whole run's exactly (their union is the one-process schedule); rates and
``max-sessions`` are split accordingly (:meth:`Segment.share`), and so is the
task-start rate limit. No coordinator is needed: every segment computes the same global
schedule and keeps its stripe.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Final

import msgspec

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
    from collections.abc import Iterator, Sequence

__all__ = [
    "WHOLE",
    "Segment",
    "arrival_offsets",
    "executor_end",
    "owned_sessions",
    "ramp_steps",
    "target_at",
]

_SEGMENT: Final = re.compile(r"^(\d+)/(\d+)$")


class Segment(msgspec.Struct, frozen=True):
    """Execution segment ``index/count``: the stripe of global indexes it owns."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"bad segment {self.index}/{self.count}; fix: I/N with 0 <= I < N, e.g. 0/2"
            )

    @classmethod
    def parse(cls, text: str) -> Segment:
        """``"1/4"`` → Segment(1, 4). Raises ValueError with the fix."""
        m = _SEGMENT.match(text.strip())
        if m is None:
            raise ValueError(f"bad segment {text!r}; fix: I/N with 0 <= I < N, e.g. 0/2")
        return cls(int(m.group(1)), int(m.group(2)))

    def owns(self, k: int) -> bool:
        return k % self.count == self.index

    def share(self, n: int) -> int:
        """How many of the global indexes 0…n−1 this segment owns."""
        return max(0, -(-(n - self.index) // self.count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE: Final = Segment()


def executor_end(spec: Executor) -> float:
    """When the executor stops starting streams (seconds after its start-time)."""
    match spec:
        case ConstantSessions(duration=d) | SessionArrivalRate(duration=d):
            return seconds(d)
        case PerSessionIterations(max_duration=d):
            return seconds(d)
        case RampingSessions(stages=stages) | RampingSessionArrivalRate(stages=stages):
            return sum(seconds(s.duration) for s in stages)
    raise AssertionError(spec)  # pragma: no cover


# ------------------------------------------------------------------- ramping sessions


def ramp_steps(spec: RampingSessions) -> list[tuple[float, int]]:
    """The wanted number of sessions as ``(time, count)`` changes, one session per step.

    Starts with ``(0.0, start-sessions)``; then, per stage from ``a`` to ``b`` over
    ``d``, a step to ``i`` at ``t0 + d·(i − a)/(b − a)`` for each i up to b (ramping up:
    i = a+1…b; down: i = a−1…b, each when the line falls to i). A stage of ``d = 0``
    jumps at once.
    """
    steps = [(0.0, spec.start_sessions)]
    t0, a = 0.0, spec.start_sessions
    for stage in spec.stages:
        d, b = seconds(stage.duration), stage.target
        direction = 1 if b > a else -1
        for i in range(a + direction, b + direction, direction) if b != a else ():
            steps.append((t0 + d * (i - a) / (b - a), i))
        t0, a = t0 + d, b
    return steps


def target_at(steps: Sequence[tuple[float, int]], t: float) -> int:
    """The wanted number of sessions at ``t`` (the last step at or before it)."""
    count = steps[0][1]
    for when, n in steps:
        if when > t + 1e-9:  # t comes from a clock reading: forgive rounding at a step
            break
        count = n
    return count


# -------------------------------------------------------------------- arrival rates


def arrival_offsets(
    spec: SessionArrivalRate | RampingSessionArrivalRate, segment: Segment = WHOLE
) -> Iterator[tuple[int, float]]:
    """The starts this segment owns, as ``(global index k, offset in seconds)``, in order."""
    starts = _constant(spec) if isinstance(spec, SessionArrivalRate) else _ramping(spec)
    for k, t in starts:
        if segment.owns(k):
            yield k, t


def _constant(spec: SessionArrivalRate) -> Iterator[tuple[int, float]]:
    interval = seconds(spec.time_unit) / spec.rate
    end = seconds(spec.duration)
    k = 0
    while (t := k * interval) < end - 1e-9:
        yield k, t
        k += 1


def _ramping(spec: RampingSessionArrivalRate) -> Iterator[tuple[int, float]]:
    unit = seconds(spec.time_unit)
    t0, r0, done = 0.0, spec.start_rate / unit, 0.0  # done: starts (integral) before t0
    k = 0
    for stage in spec.stages:
        d, r1 = seconds(stage.duration), stage.target / unit
        if d > 0:
            while True:
                x = _time_to_reach(k - done, r0, r1, d)
                if x is None:
                    break
                yield k, t0 + x
                k += 1
            done += (r0 + r1) * d / 2
        t0, r0 = t0 + d, r1


def _time_to_reach(need: float, r0: float, r1: float, d: float) -> float | None:
    """The x in [0, d) where ∫₀ˣ (r0 + (r1 − r0)·s/d) ds = need, or None (not in this stage)."""
    if need <= 1e-12:
        return 0.0
    slope = (r1 - r0) / d
    if abs(slope) < 1e-15:
        x = need / r0 if r0 > 0 else math.inf
    else:
        disc = r0 * r0 + 2 * slope * need
        if disc < 0:
            return None
        x = (-r0 + math.sqrt(disc)) / slope
    return x if 0 <= x < d - 1e-9 else None


def owned_sessions(n: int, segment: Segment = WHOLE) -> list[int]:
    """The global session indexes (0…n−1) a segment runs."""
    return [k for k in range(n) if segment.owns(k)]
