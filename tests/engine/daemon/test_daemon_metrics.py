"""/metrics and /healthz as pure functions of a snapshot, and the counters behind them."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.daemon.exposition import render_metrics
from engine.daemon.health import render_health
from engine.daemon.metrics import DaemonSnapshot, Histogram, StreamMetrics
from engine.events import (
    AudioGap,
    Final,
    Partial,
    Reconnecting,
    SessionOpened,
    StreamError,
    TaskMetrics,
    TranslatedAudio,
    Translation,
)


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name, read by prometheus_client's own parser (which refuses a bad exposition)."""
    assert text.endswith("\n")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type in ("counter", "gauge", "histogram", "info"), family
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def metrics_of(*events: object) -> StreamMetrics:
    m = StreamMetrics('cam "1"\\x', source="url", model="paraformer-realtime-v2")
    for t, event in enumerate(events):
        m.observe(event, float(t))  # type: ignore[arg-type]
    return m


def snapshot(*streams: StreamMetrics, draining: bool = False, now: float = 10.0) -> DaemonSnapshot:
    return DaemonSnapshot(
        uptime_s=12.5,
        draining=draining,
        streams=tuple(s.snapshot(now=now) for s in streams),
        ratelimit_wait_s=0.25,
        wall_time=1_700_000_000.0,
    )


EVENTS = (
    SessionOpened("t1", 0),
    Final(1, 0, 100, "hi"),
    Reconnecting(1, 0.5, "network"),
    SessionOpened("t2", 100),
    AudioGap(100, 8100, "replay-overflow", rate=16000),
    TaskMetrics("t2", "t2", 420.0, 1500.0, 1000, 1),
    TaskMetrics("t3", "t3", None, 40.0, 1000, 0),
    StreamError("auth", "rejected", permanent=True),
)


class TestStreamMetrics:
    def test_events_are_counted(self) -> None:
        m = metrics_of(*EVENTS)
        assert (m.finals, m.reconnects, m.tasks_opened, m.errors) == (1, 1, 2, 1)
        assert m.audio_lost_s == pytest.approx(0.5)
        assert m.gaps == {"replay-overflow": 1}
        # first package: at the first text after each SessionOpened (Final "hi" at t=1 after t=0)
        assert (m.first_package.count, m.first_package.sum) == (1, 1.0)
        assert m.last_package.count == 2
        assert m.error == "rejected"
        assert m.state == "running"  # a permanent error is the runner's to decide

    def test_translations_and_voice_are_counted(self) -> None:
        """Final translations (not previews) and seconds of translated speech."""
        m = metrics_of(
            Translation("zh", 1, 0, None, "你", final=False),
            Translation("zh", 1, 0, 100, "你好", final=True),
            Translation("ja", 1, 0, 100, "こんにちは", final=True),
            TranslatedAudio("r1", b"\x00\x00" * 12000),
        )
        assert (m.translations, m.voice_s) == (2, pytest.approx(0.5))
        samples = parse(render_metrics(snapshot(m)))
        assert samples["steno_translations_total"][0][1] == 2.0
        assert samples["steno_translated_speech_seconds_total"][0][1] == pytest.approx(0.5)
        entry = json.loads(render_health(snapshot(m), 5.0)[1])["streams"]['cam "1"\\x']
        assert entry["translations"] == 2

    def test_frames_coalesced_by_finished_tasks_are_counted(self) -> None:
        """A stream that fell behind: TaskMetrics' frames_coalesced add up in /metrics."""
        m = metrics_of(
            TaskMetrics("t1", "t1", None, 40.0, 1000, 0, frames_coalesced=6),
            TaskMetrics("t2", "t2", None, 40.0, 1000, 0, frames_coalesced=4),
        )
        assert m.frames_coalesced == 10
        samples = parse(render_metrics(snapshot(m)))
        assert samples["steno_frames_coalesced_total"][0][1] == 10.0

    def test_histogram_buckets(self) -> None:
        h = Histogram((0.1, 1.0))
        for v in (0.05, 0.1, 0.5, 7.0):
            h.observe(v)
        snap = h.snapshot()
        assert snap.cumulative == (2, 3, 4)  # le is inclusive
        assert (snap.sum, snap.count) == (pytest.approx(7.65), 4)


class TestPrometheusText:
    def test_the_exposition_is_valid_and_complete(self) -> None:
        """Every family is typed; histograms are cumulative and end at +Inf == _count."""
        samples = parse(render_metrics(snapshot(metrics_of(*EVENTS))))
        assert samples["steno_up"] == [({}, 1.0)]
        ((labels, value),) = samples["steno_reconnects_total"]
        assert labels == {"stream": 'cam "1"\\x'}  # escaped on the wire, read back intact
        assert value == 1.0
        assert samples["steno_audio_lost_seconds_total"][0][1] == pytest.approx(0.5)
        assert samples["steno_audio_gaps_total"][0][0]["reason"] == "replay-overflow"
        states = {lab["state"]: v for lab, v in samples["steno_stream_state"]}
        assert states["running"] == 1.0 and sum(states.values()) == 1.0
        for family in ("steno_first_package_delay_seconds", "steno_last_package_delay_seconds"):
            buckets = samples[f"{family}_bucket"]
            counts = [v for _, v in buckets]
            assert counts == sorted(counts)
            assert buckets[-1][0]["le"] == "+Inf"
            assert counts[-1] == samples[f"{family}_count"][0][1]
        first = {lab["le"]: v for lab, v in samples["steno_first_package_delay_seconds_bucket"]}
        assert (first["0.5"], first["1.0"]) == (0.0, 1.0)
        assert samples["steno_last_package_delay_seconds_sum"][0][1] == pytest.approx(1.54)

    def test_no_streams_still_valid(self) -> None:
        assert "steno_uptime_seconds 12.5" in render_metrics(snapshot())
        parse(render_metrics(snapshot()))


class FakeStats:
    """The read-only view a session gives the metrics (SessionStats' fields), set by the test."""

    def __init__(self, max_buffered: int) -> None:
        self.pending_lost_samples = 0
        self.received_samples = 0
        self.buffered_samples = 0
        self.max_buffered_samples = max_buffered
        self.live_tasks = 1


class TestLiveLoss:
    def test_the_outage_is_counted_as_it_happens_and_once(self) -> None:
        """Pending loss shows in the total during the outage; the closing gap replaces it, and
        the total never goes down in between (gap emitted but not yet counted)."""
        m = StreamMetrics("a", source="url", model="paraformer-realtime-v2")
        stats = FakeStats(max_buffered=160_000)
        m.stats = stats  # type: ignore[assignment]
        m.set_state("starting", 0.0)
        m.observe(SessionOpened("t1", 0), 1.0)
        assert m.snapshot(2.0).outage_s == 0.0
        m.observe(Reconnecting(1, 2.0, "connect: refused"), 3.0)
        totals = []
        for second in range(1, 6):
            stats.pending_lost_samples = second * 16000
            stats.buffered_samples = 160_000
            snap = m.snapshot(3.0 + 10 + second)
            assert snap.outage_s == 10 + second and snap.replay_buffer_fill == 1.0
            assert snap.losing_audio and snap.outage_lost_s == second
            totals.append(snap.audio_lost_s)
        assert totals == [1.0, 2.0, 3.0, 4.0, 5.0]
        stats.pending_lost_samples = 0  # the session emitted the gap; the tap has not seen it
        assert m.snapshot(20.0).audio_lost_s == 5.0
        m.observe(AudioGap(0, 5 * 16000, "replay-overflow", rate=16000), 20.0)
        m.observe(SessionOpened("t2", 5 * 16000), 20.0)
        snap = m.snapshot(21.0)
        assert (snap.audio_lost_s, snap.outage_s, snap.losing_audio) == (5.0, 0.0, False)
        samples = parse(render_metrics(snapshot(m, now=21.0)))
        assert samples["steno_audio_lost_seconds_total"] == [({"stream": "a"}, 5.0)]
        assert samples["steno_stream_outage_seconds"] == [({"stream": "a"}, 0.0)]

    def test_a_starting_stream_is_in_an_outage_until_its_first_task(self) -> None:
        m = StreamMetrics("a", source="url", model="paraformer-realtime-v2")
        m.set_state("starting", 100.0)
        assert m.snapshot(107.0).outage_s == 7.0
        m.set_state("failed")
        assert m.snapshot(108.0).outage_s == 0.0  # not trying: no outage to show


class TestFinalLag:
    def test_from_the_sentence_end_received_to_its_final(self) -> None:
        m = StreamMetrics("a", source="url", model="paraformer-realtime-v2")
        stats = FakeStats(max_buffered=160_000)
        m.stats = stats  # type: ignore[assignment]
        m.observe(SessionOpened("t1", 0), 0.0)
        for t in range(1, 5):  # partials while the audio comes in: 1 s per second
            stats.received_samples = t * 16000
            m.observe(Partial(1, 0, "hel"), float(t))
        m.observe(Final(1, 0, 2 * 16000, "hello"), 4.5)  # its end arrived at t=2
        lag = m.final_lag.snapshot()
        assert (lag.count, lag.sum) == (1, pytest.approx(2.5))
        assert m.first_package.count == 1 and m.first_package.sum == 1.0
