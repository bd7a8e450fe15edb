"""Per-stream counters fed by the stream's events, and their two faces: /metrics and /healthz.

:class:`StreamMetrics` lives as long as the stream id (restarts of the stream
keep counting); the stream's tap calls :meth:`StreamMetrics.observe` for every
event, and the runner sets the state and attaches live gauges (the session's
replay buffer, the daemon's queues). :meth:`StreamMetrics.snapshot` copies
everything into plain Structs, and the formatting is pure:
:func:`render_metrics` (Prometheus text exposition 0.0.4, with HELP/TYPE
lines and ``_bucket{le=…}``/``_sum``/``_count`` histograms) and
:func:`render_health` (JSON). Neither ever sees a key: a snapshot holds only
numbers, ids, state names and error messages.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from engine.events import (
    AudioGap,
    AudioSkipped,
    DeviceLost,
    DeviceRestored,
    Event,
    Reconnecting,
    SessionOpened,
    StreamError,
    TaskMetrics,
    TranslatedAudio,
    Translation,
)
from engine.events import (
    Final as FinalEvent,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from engine.actors.session import SessionStats

__all__ = [
    "CONTENT_TYPE",
    "DaemonSnapshot",
    "Histogram",
    "HistogramSnapshot",
    "State",
    "StreamMetrics",
    "StreamSnapshot",
    "render_health",
    "render_metrics",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
DELAY_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
LATENESS_BUCKETS: Final = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

State = Literal[
    "starting",
    "running",
    "reconnecting",
    "suspended",
    "source-down",
    "restarting",
    "draining",
    "finished",
    "failed",
]
STATES: Final[tuple[State, ...]] = State.__args__  # type: ignore[attr-defined]
_UNHEALTHY: Final = frozenset({"failed"})


class HistogramSnapshot(msgspec.Struct, frozen=True):
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # per bound, then +Inf
    sum: float
    count: int


class Histogram:
    """A Prometheus histogram: fixed upper bounds, counts, sum (constant memory)."""

    __slots__ = ("_counts", "bounds", "count", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def snapshot(self) -> HistogramSnapshot:
        running, cumulative = 0, []
        for n in self._counts:
            running += n
            cumulative.append(running)
        return HistogramSnapshot(self.bounds, tuple(cumulative), self.sum, self.count)


class StreamSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything /metrics and /healthz show about one stream, at one moment."""

    stream: str
    source: str
    model: str
    state: State
    error: str | None
    reconnects: int
    finals: int
    tasks_opened: int
    restarts: int
    source_restarts: int
    errors: int
    audio_lost_s: float
    gaps: dict[str, int]
    skipped_s: float
    last_event_age_s: float | None
    replay_buffer_s: float
    live_tasks: int
    queues: dict[str, int]
    first_package_delay: HistogramSnapshot
    last_package_delay: HistogramSnapshot
    push_lateness: HistogramSnapshot
    translations: int = 0
    voice_s: float = 0.0


class DaemonSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    uptime_s: float
    draining: bool
    streams: tuple[StreamSnapshot, ...]
    ratelimit_wait_s: float = 0.0


class StreamMetrics:
    """The counters of one stream id. Not thread-safe: used from the trio thread only."""

    def __init__(self, stream: str, *, source: str, model: str) -> None:
        self.stream = stream
        self.source = source
        self.model = model
        self.state: State = "starting"
        self.error: str | None = None
        self.reconnects = self.finals = self.tasks_opened = 0
        self.translations = 0  # final translations, every language
        self.voice_s = 0.0  # translated speech received
        self.restarts = self.source_restarts = self.errors = 0
        self.audio_lost_s = 0.0
        self.gaps: dict[str, int] = {}
        self.skipped_s = 0.0
        self.last_event_t: float | None = None
        self.first_package = Histogram(DELAY_BUCKETS)
        self.last_package = Histogram(DELAY_BUCKETS)
        self.push_lateness = Histogram(LATENESS_BUCKETS)
        # Live gauges of the current run of the stream (None between runs).
        self.stats: SessionStats | None = None
        self.rate = 16000
        self.queues: Mapping[str, Callable[[], int]] = {}

    def set_state(self, state: State) -> None:
        """Change the state; ``draining``, ``finished`` and ``failed`` are not undone by events."""
        self.state = state

    def observe(self, event: Event, now: float) -> None:
        """Count one event of the stream (called by its tap, in order)."""
        self.last_event_t = now
        match event:
            case Reconnecting():
                self.reconnects += 1
                self._transient("reconnecting")
            case SessionOpened():
                self.tasks_opened += 1
                self._transient("running")
            case FinalEvent():
                self.finals += 1
            case Translation(final=True):
                self.translations += 1
            case TranslatedAudio(pcm=pcm, rate=rate):
                self.voice_s += len(pcm) / 2 / rate
            case AudioGap(start=start, end=end, reason=reason, rate=rate):
                self.gaps[reason] = self.gaps.get(reason, 0) + 1
                self.audio_lost_s += (end - start) / rate
            case AudioSkipped(start=start, end=end, rate=rate):
                self.skipped_s += (end - start) / rate
            case DeviceLost():
                self._transient("source-down")
            case DeviceRestored():
                self.source_restarts += 1
                self._transient("running")
            case TaskMetrics(first_package_delay_ms=first, last_package_delay_ms=last):
                if first is not None:
                    self.first_package.observe(first / 1000.0)
                if last is not None:
                    self.last_package.observe(last / 1000.0)
            case StreamError(message=message):
                self.errors += 1
                self.error = message

    def _transient(self, state: State) -> None:
        if self.state in ("starting", "running", "reconnecting", "source-down"):
            self.state = state

    def snapshot(self, now: float) -> StreamSnapshot:
        stats = self.stats
        return StreamSnapshot(
            stream=self.stream,
            source=self.source,
            model=self.model,
            state=self.state,
            error=self.error,
            reconnects=self.reconnects,
            finals=self.finals,
            tasks_opened=self.tasks_opened,
            restarts=self.restarts,
            source_restarts=self.source_restarts,
            errors=self.errors,
            audio_lost_s=self.audio_lost_s,
            gaps=dict(self.gaps),
            skipped_s=self.skipped_s,
            last_event_age_s=None if self.last_event_t is None else now - self.last_event_t,
            replay_buffer_s=stats.buffered_samples / self.rate if stats is not None else 0.0,
            live_tasks=stats.live_tasks if stats is not None else 0,
            queues={name: depth() for name, depth in self.queues.items()},
            first_package_delay=self.first_package.snapshot(),
            last_package_delay=self.last_package.snapshot(),
            push_lateness=self.push_lateness.snapshot(),
            translations=self.translations,
            voice_s=self.voice_s,
        )


# ------------------------------------------------------------- /healthz


def health_status(snap: DaemonSnapshot) -> tuple[int, str]:
    """HTTP status and word: 503 while draining or when every stream failed; else 200.

    ``degraded`` (still 200) means some stream failed: the process is worth keeping.
    """
    failed = [s for s in snap.streams if s.state in _UNHEALTHY]
    if snap.draining:
        return 503, "draining"
    if snap.streams and len(failed) == len(snap.streams):
        return 503, "failed"
    return 200, "degraded" if failed else "ok"


def render_health(snap: DaemonSnapshot) -> tuple[int, bytes]:
    """The /healthz response: status code and JSON body (per-stream state and counters)."""
    code, word = health_status(snap)
    body = {
        "status": word,
        "uptime_s": round(snap.uptime_s, 3),
        "streams": {
            s.stream: {
                "state": s.state,
                "source": s.source,
                "model": s.model,
                "reconnects": s.reconnects,
                "finals": s.finals,
                "translations": s.translations,
                "audio_lost_ms": round(s.audio_lost_s * 1000),
                "last_event_age_s": None
                if s.last_event_age_s is None
                else round(s.last_event_age_s, 3),
                "restarts": s.restarts,
                "replay_buffer_s": round(s.replay_buffer_s, 3),
                "error": s.error,
            }
            for s in snap.streams
        },
    }
    return code, msgspec.json.encode(body) + b"\n"


# -------------------------------------------------------------- /metrics


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _le(bound: float) -> str:
    return _number(float(bound))


_SIMPLE: Final[tuple[tuple[str, str, str, Callable[[StreamSnapshot], float]], ...]] = (
    ("steno_reconnects_total", "counter", "Session reconnects (transient failures retried).", lambda s: s.reconnects),
    ("steno_finals_total", "counter", "Final sentences recognized.", lambda s: s.finals),
    ("steno_translations_total", "counter", "Final translations, every target language.", lambda s: s.translations),
    ("steno_translated_speech_seconds_total", "counter", "Translated speech received (livetranslate speech = true).", lambda s: s.voice_s),
    ("steno_tasks_opened_total", "counter", "Server tasks opened (reconnects, rotations, resumes).", lambda s: s.tasks_opened),
    ("steno_stream_restarts_total", "counter", "Restarts of the whole stream after a crash or a reload.", lambda s: s.restarts),
    ("steno_source_restarts_total", "counter", "Reopenings of a live source that broke.", lambda s: s.source_restarts),
    ("steno_stream_errors_total", "counter", "StreamError events (service, input and sink failures).", lambda s: s.errors),
    ("steno_audio_lost_seconds_total", "counter", "Audio that was not and will not be recognized (AudioGap).", lambda s: s.audio_lost_s),
    ("steno_audio_suspended_seconds_total", "counter", "Time skipped on purpose (AudioSkipped: silence the suspend idle policy held back).", lambda s: s.skipped_s),
    ("steno_replay_buffer_seconds", "gauge", "Audio held after the commit point (bounded by replay-buffer-s).", lambda s: s.replay_buffer_s),
    ("steno_session_tasks", "gauge", "Background tasks of the session (conversations and helpers).", lambda s: s.live_tasks),
)  # fmt: skip

_HISTOGRAMS: Final[tuple[tuple[str, str, Callable[[StreamSnapshot], HistogramSnapshot]], ...]] = (
    ("steno_first_package_delay_seconds", "First non-empty result minus first audio sent, per task.", lambda s: s.first_package_delay),
    ("steno_last_package_delay_seconds", "task-finished minus finish-task sent, per task.", lambda s: s.last_package_delay),
    ("steno_push_lateness_seconds", "How far behind real time audio was handed to the engine.", lambda s: s.push_lateness),
)  # fmt: skip


def render_metrics(snap: DaemonSnapshot) -> str:
    """The /metrics body in the Prometheus text format 0.0.4."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")

    family("steno_up", "gauge", "1 while the daemon runs; 0 once it drains.")
    out.append(f"steno_up {0 if snap.draining else 1}")
    family("steno_uptime_seconds", "gauge", "Seconds since the daemon started.")
    out.append(f"steno_uptime_seconds {_number(snap.uptime_s)}")
    family(
        "steno_ratelimit_wait_seconds_total",
        "counter",
        "Time task starts waited for the shared rate limiter.",
    )
    out.append(f"steno_ratelimit_wait_seconds_total {_number(snap.ratelimit_wait_s)}")
    family("steno_stream_state", "gauge", "1 for the stream's current state, 0 for the others.")
    for s in snap.streams:
        for state in STATES:
            out.append(
                f"steno_stream_state{_labels(stream=s.stream, state=state)} {int(s.state == state)}"
            )
    for name, kind, help_, get in _SIMPLE:
        family(name, kind, help_)
        out.extend(f"{name}{_labels(stream=s.stream)} {_number(get(s))}" for s in snap.streams)
    family("steno_audio_gaps_total", "counter", "AudioGap events by reason.")
    for s in snap.streams:
        out.extend(
            f"steno_audio_gaps_total{_labels(stream=s.stream, reason=r)} {n}"
            for r, n in sorted(s.gaps.items())
        )
    family("steno_queue_depth", "gauge", "Items waiting in a stream's bounded queues.")
    for s in snap.streams:
        out.extend(
            f"steno_queue_depth{_labels(stream=s.stream, queue=q)} {n}"
            for q, n in sorted(s.queues.items())
        )
    family("steno_last_event_age_seconds", "gauge", "Seconds since the stream's last event.")
    out.extend(
        f"steno_last_event_age_seconds{_labels(stream=s.stream)} {_number(s.last_event_age_s)}"
        for s in snap.streams
        if s.last_event_age_s is not None
    )
    for name, help_, hist in _HISTOGRAMS:
        family(name, "histogram", help_)
        for s in snap.streams:
            h = hist(s)
            for bound, n in zip((*h.bounds, math.inf), h.cumulative, strict=True):
                out.append(f"{name}_bucket{_labels(stream=s.stream, le=_le(bound))} {n}")
            out.append(f"{name}_sum{_labels(stream=s.stream)} {_number(h.sum)}")
            out.append(f"{name}_count{_labels(stream=s.stream)} {h.count}")
    return "\n".join(out) + "\n"
