"""/metrics through ``prometheus_client``: a registry per daemon, collectors over our own counters.

The engine keeps its own counters (``metrics.py``); :class:`DaemonCollector`
turns a :class:`~engine.daemon.metrics.DaemonSnapshot` into metric families at
each scrape (:func:`families`, pure). :func:`new_registry` builds the registry one
daemon serves: that collector, plus the standard ``process_*`` (RSS, open fds,
CPU, start time) and ``python_info`` collectors. There is no global registry
(house rule R19): two daemons in one process (the tests) never share a metric.

With ``workers = N`` (``pool.py``) the parent serves one registry for all: the
streams' families from the merged snapshot (each stream once, by its ``stream``
label), and ``process_*`` once per family with a ``worker`` label per process
(:class:`WorkerProcesses`: ``main`` for the parent, ``0`` … for the workers),
read from ``/proc/<pid>`` by the parent, so a worker that hangs still shows.

Names users alert on (the README's "Alerting" section and
``deploy/prometheus/alerts.yml``): ``steno_audio_lost_seconds_total`` (rises
*during* an outage), ``steno_stream_outage_seconds`` (0 while connected),
``steno_replay_buffer_fill_ratio``, ``steno_stream_state``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from engine.daemon.metrics import STATES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from engine.daemon.metrics import DaemonSnapshot, HistogramSnapshot, StreamSnapshot

__all__ = [
    "ALERT_NAMES",
    "CONTENT_TYPE",
    "DaemonCollector",
    "WorkerProcesses",
    "families",
    "new_registry",
    "render_metrics",
]

CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4

_COUNTERS: Final[tuple[tuple[str, str, Callable[[StreamSnapshot], float]], ...]] = (
    ("steno_reconnects", "Session reconnects (transient failures retried).", lambda s: s.reconnects),
    ("steno_finals", "Final sentences recognized.", lambda s: s.finals),
    ("steno_translations", "Final translations, every target language.", lambda s: s.translations),
    ("steno_translated_speech_seconds", "Translated speech received (livetranslate speech = true).", lambda s: s.voice_s),
    ("steno_tasks_opened", "Server tasks opened (reconnects, rotations, resumes).", lambda s: s.tasks_opened),
    ("steno_stream_restarts", "Restarts of the whole stream after a crash or a reload.", lambda s: s.restarts),
    ("steno_source_restarts", "Reopenings of a live source that broke.", lambda s: s.source_restarts),
    ("steno_stream_errors", "StreamError events (service, input and sink failures).", lambda s: s.errors),
    ("steno_audio_lost_seconds", "Audio that was not and will not be recognized: AudioGaps, and the replay overflow of an outage as it happens.", lambda s: s.audio_lost_s),
    ("steno_frames_coalesced", "Live frames sent joined with others (up to 200 ms a message) because the stream was behind.", lambda s: s.frames_coalesced),
    ("steno_audio_suspended_seconds", "Time skipped on purpose (AudioSkipped: silence the suspend idle policy held back).", lambda s: s.skipped_s),
)  # fmt: skip

_GAUGES: Final[tuple[tuple[str, str, Callable[[StreamSnapshot], float]], ...]] = (
    ("steno_stream_outage_seconds", "How long the stream has had no task open while it wants one (0 when connected).", lambda s: s.outage_s),
    ("steno_outage_audio_lost_seconds", "Audio the current outage has lost so far (not yet an AudioGap).", lambda s: s.outage_lost_s),
    ("steno_replay_buffer_fill_ratio", "Replay buffer used / its bound (1: the oldest audio is being dropped).", lambda s: s.replay_buffer_fill),
    ("steno_replay_buffer_seconds", "Audio held after the commit point (bounded by replay-buffer-s).", lambda s: s.replay_buffer_s),
    ("steno_session_tasks", "Background tasks of the session (conversations and helpers).", lambda s: s.live_tasks),
)  # fmt: skip

_HISTOGRAMS: Final[tuple[tuple[str, str, Callable[[StreamSnapshot], HistogramSnapshot]], ...]] = (
    ("steno_first_package_delay_seconds", "First result with text minus the task's start, observed when that result arrives.", lambda s: s.first_package_delay),
    ("steno_last_package_delay_seconds", "task-finished minus finish-task sent, per task.", lambda s: s.last_package_delay),
    ("steno_push_lateness_seconds", "How far behind real time audio was handed to the engine.", lambda s: s.push_lateness),
    ("steno_final_lag_seconds", "From the session having a sentence's last sample to its final (to the spacing of the stream's events).", lambda s: s.final_lag),
)  # fmt: skip

ALERT_NAMES: Final = (
    "steno_up",
    "steno_audio_lost_seconds_total",
    "steno_stream_outage_seconds",
    "steno_replay_buffer_fill_ratio",
    "steno_stream_state",
    "steno_reconnects_total",
    "steno_final_lag_seconds_bucket",
    "steno_first_package_delay_seconds_bucket",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
)
"""Sample names the README's alerts and dashboards use (pinned by a test)."""


def _histogram(name: str, help_: str, streams: tuple[StreamSnapshot, ...], get: Callable[[StreamSnapshot], HistogramSnapshot]) -> Metric:  # fmt: skip
    family = HistogramMetricFamily(name, help_, labels=["stream"])
    for s in streams:
        h = get(s)
        bounds = [*(repr(float(b)) for b in h.bounds), "+Inf"]
        family.add_metric(
            [s.stream], list(zip(bounds, map(float, h.cumulative), strict=True)), h.sum
        )
    return family


def families(snap: DaemonSnapshot) -> list[Metric]:
    """The daemon's metric families for one snapshot (pure)."""
    out: list[Metric] = [
        GaugeMetricFamily("steno_up", "1 while the daemon runs; 0 once it drains.", value=0 if snap.draining else 1),
        GaugeMetricFamily("steno_uptime_seconds", "Seconds since the daemon started.", value=snap.uptime_s),
        GaugeMetricFamily("steno_start_time_seconds", "When the daemon started (Unix time).", value=snap.wall_time - snap.uptime_s),
        CounterMetricFamily("steno_ratelimit_wait_seconds", "Time task starts waited for the shared rate limiter.", value=snap.ratelimit_wait_s),
    ]  # fmt: skip
    streams = snap.streams
    state = GaugeMetricFamily(
        "steno_stream_state", "1 for the stream's current state, 0 for the others.", labels=["stream", "state"]
    )  # fmt: skip
    for s in streams:
        for state_name in STATES:
            state.add_metric([s.stream, state_name], float(s.state == state_name))
    out.append(state)
    for name, help_, get in _COUNTERS:
        counter = CounterMetricFamily(name, help_, labels=["stream"])
        for s in streams:
            counter.add_metric([s.stream], float(get(s)))
        out.append(counter)
    for name, help_, get in _GAUGES:
        gauge = GaugeMetricFamily(name, help_, labels=["stream"])
        for s in streams:
            gauge.add_metric([s.stream], float(get(s)))
        out.append(gauge)
    gaps = CounterMetricFamily("steno_audio_gaps", "AudioGap events by reason.", labels=["stream", "reason"])  # fmt: skip
    queues = GaugeMetricFamily("steno_queue_depth", "Items waiting in a stream's bounded queues.", labels=["stream", "queue"])  # fmt: skip
    age = GaugeMetricFamily("steno_last_event_age_seconds", "Seconds since the stream's last event.", labels=["stream"])  # fmt: skip
    last = GaugeMetricFamily("steno_last_event_timestamp_seconds", "When the stream's last event came (Unix time).", labels=["stream"])  # fmt: skip
    for s in streams:
        for reason, n in sorted(s.gaps.items()):
            gaps.add_metric([s.stream, reason], float(n))
        for queue, depth in sorted(s.queues.items()):
            queues.add_metric([s.stream, queue], float(depth))
        if s.last_event_age_s is not None:
            age.add_metric([s.stream], s.last_event_age_s)
            last.add_metric([s.stream], snap.wall_time - s.last_event_age_s)
    out += [gaps, queues, age, last]
    out += [_histogram(name, help_, streams, get) for name, help_, get in _HISTOGRAMS]
    return out


class DaemonCollector(Collector):
    """Collects the daemon's families from ``snapshot()`` at every scrape."""

    def __init__(self, snapshot: Callable[[], DaemonSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot())


class WorkerProcesses(Collector):
    """``process_*`` of the parent and every live worker, one family each, by ``worker``.

    ``worker="main"`` is the parent (HTTP, signals, logs, the embedded simulator if
    any), ``worker="0"`` … the workers; a worker being restarted has no series.
    """

    def __init__(self, pids: Callable[[], Sequence[tuple[str, int | str]]]) -> None:
        self._pids = pids

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for label, pid in self._pids():
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            for metric in collector.collect():
                family = families.get(metric.name)
                if family is None:
                    family = families[metric.name] = Metric(
                        metric.name, metric.documentation, metric.type
                    )
                for sample in metric.samples:
                    family.add_sample(sample.name, {**sample.labels, "worker": label}, sample.value)
        yield from families.values()


def new_registry(
    snapshot: Callable[[], DaemonSnapshot], *, process: bool = True
) -> CollectorRegistry:
    """A registry of its own: the daemon's collector, with the process and platform ones."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(snapshot))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def render_metrics(snap: DaemonSnapshot) -> str:
    """The text exposition (0.0.4) of one snapshot's families alone (tests, tools)."""
    return generate_latest(new_registry(lambda: snap, process=False)).decode()
