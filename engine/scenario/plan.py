"""``steno scenario check``: the plan of a scenario file, sessions over time (pure).

For closed-model scenarios the plan shows the sessions wanted in each time bucket; for
open-model ones the stream starts per second. It also estimates how many streams a
run makes and how much audio it sends, which is what a run against a non-loopback
target states before it asks for ``--yes``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec

from engine.scenario.schedule import (
    WHOLE,
    Segment,
    arrival_offsets,
    executor_end,
    ramp_steps,
    target_at,
)
from engine.scenario.spec import (
    ConstantSessions,
    Executor,
    PerSessionIterations,
    RampingSessionArrivalRate,
    RampingSessions,
    ScenarioFile,
    SessionArrivalRate,
    seconds,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Estimate", "estimate", "plan_text"]


class Estimate(msgspec.Struct, frozen=True):
    """At most how many streams a scenario starts and how much audio they send."""

    scenario: str
    streams: int
    audio_s: float


def _iteration_s(audio_s: float, speed: float) -> float:
    return max(audio_s / speed, 0.1) + 0.5  # the finish takes a moment


def estimate(spec: Executor, audio_s: float, segment: Segment = WHOLE) -> Estimate:
    """The upper bound of streams (and their audio) this segment of ``spec`` starts."""
    it = _iteration_s(audio_s, spec.audio.speed)
    match spec:
        case ConstantSessions(sessions=n, duration=d):
            streams = segment.share(n) * math.ceil(seconds(d) / it)
        case PerSessionIterations(sessions=n, iterations=i):
            streams = segment.share(n) * i
        case RampingSessions():
            steps = ramp_steps(spec)
            end = executor_end(spec)
            session_s = sum(
                target_at(steps, t + 0.5) for t in range(math.ceil(end))
            )  # session-seconds, 1 s grain
            streams = math.ceil(session_s / it / segment.count) + segment.share(
                max(n for _, n in steps)
            )
        case SessionArrivalRate() | RampingSessionArrivalRate():
            streams = sum(1 for _ in arrival_offsets(spec, segment))
    return Estimate(spec.name, streams, streams * audio_s)


def plan_text(file: ScenarioFile, audio_s: Mapping[str, float], segment: Segment = WHOLE) -> str:
    """Per scenario: a line on its executor, then sessions (or starts) per time bucket."""
    lines = []
    horizon = max(
        seconds(s.start_time) + _expected_end(s, audio_s.get(s.name, 0.0)) for s in file.scenarios
    )
    bucket = max(1.0, math.ceil(horizon / 20))
    total_streams, total_audio = 0, 0.0
    for s in file.scenarios:
        e = estimate(s, audio_s.get(s.name, 0.0), segment)
        total_streams += e.streams
        total_audio += e.audio_s
        start = seconds(s.start_time)
        lines.append(
            f"{s.name}: {s.executor_name} from {start:g}s "
            + ("for at most " if isinstance(s, PerSessionIterations) else "for ")
            + f"{executor_end(s):g}s "
            f"(+{seconds(s.graceful_stop):g}s graceful stop), model {s.model}, "
            f"audio {s.audio.file} ({audio_s.get(s.name, 0.0):.1f}s at {s.audio.speed:g}x); "
            f"at most {e.streams} streams"
        )
        lines.append("    " + _row(s, start, bucket, horizon, segment, audio_s.get(s.name, 0.0)))
    lines.append(
        f"total: at most {total_streams} streams, {total_audio / 3600:.3f} audio hours"
        + (f" (segment {segment})" if segment != WHOLE else "")
    )
    return "\n".join(lines)


def _expected_end(s: Executor, audio_s: float) -> float:
    """When the executor is expected to stop starting streams: per-session-iterations
    stops when its iterations are done (at most ``max-duration``)."""
    if isinstance(s, PerSessionIterations):
        return min(executor_end(s), s.iterations * _iteration_s(audio_s, s.audio.speed))
    return executor_end(s)


def _row(
    s: Executor, start: float, bucket: float, horizon: float, segment: Segment, audio_s: float
) -> str:
    cells = []
    n_buckets = math.ceil(horizon / bucket)
    if isinstance(s, SessionArrivalRate | RampingSessionArrivalRate):
        counts = [0] * n_buckets
        for _, t in arrival_offsets(s, segment):
            i = int((start + t) // bucket)
            if i < n_buckets:
                counts[i] += 1
        cells = [f"{c / bucket:.3g}" for c in counts]
        unit = "starts/s"
    else:
        end = start + _expected_end(s, audio_s)
        for i in range(n_buckets):
            t = i * bucket
            if t < start or t >= end:
                cells.append("0")
            elif isinstance(s, RampingSessions):
                cells.append(
                    str(
                        sum(
                            1 for k in range(target_at(ramp_steps(s), t - start)) if segment.owns(k)
                        )
                    )
                )
            else:
                cells.append(str(segment.share(s.sessions)))
        unit = "sessions"
    return f"{unit} per {bucket:g}s: " + " ".join(cells)
