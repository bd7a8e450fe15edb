"""Per-stream counters fed by the stream's events, and the snapshots /metrics and /healthz show.

:class:`StreamMetrics` lives as long as the stream id (restarts of the stream
keep counting); the stream's tap calls :meth:`StreamMetrics.observe` for every
event, and the runner sets the state and attaches live gauges (the session's
replay buffer, the daemon's queues). :meth:`StreamMetrics.snapshot` copies
everything into plain Structs; the faces are pure functions of a snapshot:
``exposition.py`` (Prometheus, through ``prometheus_client``) and ``health.py``
(/healthz, /readyz). Neither ever sees a key: a snapshot holds only numbers,
ids, state names and error messages.

**Loss as it happens.** While a stream cannot reach the service, its session
reports the audio its replay buffer has already dropped
(``SessionStats.pending_lost_samples``); the closing ``AudioGap`` carries exactly
that span later. The lost-audio total is the gaps seen plus that pending part,
and it never goes down: between the session emitting the gap and the tap
counting it, the total holds its last value.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from engine.events import (
    AudioGap,
    AudioSkipped,
    DeviceLost,
    DeviceRestored,
    Event,
    Partial,
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
    "DaemonSnapshot",
    "Histogram",
    "HistogramSnapshot",
    "State",
    "StreamMetrics",
    "StreamSnapshot",
]

DELAY_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
LATENESS_BUCKETS: Final = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
FINAL_LAG_BUCKETS: Final = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 120.0)
_ANCHORS: Final = 1024  # (received sample, time) pairs kept to time a final's end

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
_CONNECTING: Final = frozenset({"starting", "restarting"})
_NOT_TRYING: Final = frozenset({"suspended", "finished", "failed"})


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
    final_lag: HistogramSnapshot
    translations: int = 0
    voice_s: float = 0.0
    outage_s: float = 0.0  # since the stream last had a task open (0 when it has one)
    outage_lost_s: float = 0.0  # lost in the current outage, not yet an AudioGap
    replay_buffer_fill: float = 0.0  # replay buffer used / its bound
    frames_coalesced: int = 0  # live frames sent joined with others while behind (TaskMetrics)

    @property
    def losing_audio(self) -> bool:
        return self.outage_lost_s > 0


class DaemonSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    uptime_s: float
    draining: bool
    streams: tuple[StreamSnapshot, ...]
    ratelimit_wait_s: float = 0.0
    wall_time: float = 0.0  # the wall clock (Unix seconds) at the snapshot


class StreamMetrics:
    """The counters of one stream id. Not thread-safe: used from the trio thread only."""

    def __init__(self, stream: str, *, source: str, model: str) -> None:
        self.stream = stream
        self.source = source
        self.model = model
        self.state: State = "starting"
        self.error: str | None = None
        self.reconnects = self.finals = self.tasks_opened = 0
        self.frames_coalesced = 0  # live frames finished tasks were sent joined (behind)
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
        self.final_lag = Histogram(FINAL_LAG_BUCKETS)
        # Since when no task has been open (None: one is); the stream starts without one.
        self.down_since: float | None = None
        self._opened_t: float | None = None  # the newest task's start, until its first text
        self._lost_floor = 0.0  # the lost-audio total last shown (it never goes down)
        # When the session had received each global sample, to time a final's end.
        self._received: deque[tuple[int, float]] = deque(maxlen=_ANCHORS)
        # Live gauges of the current run of the stream (None between runs).
        self.stats: SessionStats | None = None
        self.rate = 16000
        self.queues: Mapping[str, Callable[[], int]] = {}

    def set_state(self, state: State, now: float | None = None) -> None:
        """Change the state; ``draining``, ``finished`` and ``failed`` are not undone by events.

        ``now`` (the trio time) starts the outage clock when a run (re)starts.
        """
        self.state = state
        if state in _CONNECTING and self.down_since is None and now is not None:
            self.down_since = now

    def observe(self, event: Event, now: float) -> None:
        """Count one event of the stream (called by its tap, in order)."""
        self.last_event_t = now
        self._anchor(now)
        match event:
            case Reconnecting():
                self.reconnects += 1
                if self.down_since is None:
                    self.down_since = now
                self._transient("reconnecting")
            case SessionOpened():
                self.tasks_opened += 1
                self.down_since = None
                self._opened_t = now
                self._transient("running")
            case FinalEvent(end=end, text=text, rate=rate):
                self.finals += 1
                self._first_text(text, now)
                self._final_lag(end * self.rate // rate, now)
            case Partial(text=text):
                self._first_text(text, now)
            case Translation(final=final, text=text):
                self.translations += int(final)
                self._first_text(text, now)
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
            case TaskMetrics(last_package_delay_ms=last, frames_coalesced=coalesced):
                # (its first-package delay was observed when the first text arrived)
                self.frames_coalesced += coalesced
                if last is not None:
                    self.last_package.observe(last / 1000.0)
            case StreamError(message=message):
                self.errors += 1
                self.error = message

    def _first_text(self, text: str, now: float) -> None:
        """The first result with text since the task opened: its first-package delay."""
        if text and self._opened_t is not None:
            self.first_package.observe(now - self._opened_t)
            self._opened_t = None

    def _anchor(self, now: float) -> None:
        stats = self.stats
        if stats is None:
            return
        received = stats.received_samples
        if not self._received or received > self._received[-1][0]:
            self._received.append((received, now))

    def _final_lag(self, end: int, now: float) -> None:
        """From when the session had the sentence's last sample to its final."""
        anchors = self._received
        while len(anchors) > 1 and anchors[1][0] <= end:
            anchors.popleft()  # finals move forward: older anchors are not needed again
        at = next((t for sample, t in anchors if sample >= end), None)
        if at is not None:
            self.final_lag.observe(now - at)

    def lost_s(self) -> tuple[float, float]:
        """(the lost-audio total, the part of it the current outage has not reported yet)."""
        stats = self.stats
        pending = stats.pending_lost_samples / self.rate if stats is not None else 0.0
        self._lost_floor = max(self._lost_floor, self.audio_lost_s + pending)
        return self._lost_floor, pending

    def _transient(self, state: State) -> None:
        if self.state in ("starting", "running", "reconnecting", "source-down"):
            self.state = state

    def snapshot(self, now: float) -> StreamSnapshot:
        stats = self.stats
        lost, pending = self.lost_s()
        down = self.down_since is not None and self.state not in _NOT_TRYING
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
            audio_lost_s=lost,
            gaps=dict(self.gaps),
            skipped_s=self.skipped_s,
            last_event_age_s=None if self.last_event_t is None else now - self.last_event_t,
            replay_buffer_s=stats.buffered_samples / self.rate if stats is not None else 0.0,
            live_tasks=stats.live_tasks if stats is not None else 0,
            queues={name: depth() for name, depth in self.queues.items()},
            first_package_delay=self.first_package.snapshot(),
            last_package_delay=self.last_package.snapshot(),
            push_lateness=self.push_lateness.snapshot(),
            final_lag=self.final_lag.snapshot(),
            translations=self.translations,
            voice_s=self.voice_s,
            outage_s=now - self.down_since if down and self.down_since is not None else 0.0,
            outage_lost_s=pending,
            replay_buffer_fill=stats.buffered_samples / stats.max_buffered_samples
            if stats is not None
            else 0.0,
            frames_coalesced=self.frames_coalesced,
        )
