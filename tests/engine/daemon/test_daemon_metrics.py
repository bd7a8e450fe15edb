"""/metrics and /healthz as pure functions of a snapshot, and the counters behind them."""

from __future__ import annotations

import json
import math
import re

import pytest

from engine.daemon.metrics import (
    DaemonSnapshot,
    Histogram,
    StreamMetrics,
    render_health,
    render_metrics,
)
from engine.events import (
    AudioGap,
    Final,
    Reconnecting,
    SessionOpened,
    StreamError,
    TaskMetrics,
    TranslatedAudio,
    Translation,
)

SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$'
)


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reader of the text format 0.0.4: HELP/TYPE before samples, valid lines only."""
    assert text.endswith("\n")
    typed: dict[str, str] = {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            assert name not in typed, f"TYPE twice for {name}"
            typed[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.group(1), match.group(2) or "", match.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, f"{name} has no TYPE line"
        pairs = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', labels))
        samples.setdefault(name, []).append((pairs, float(value)))
    return samples


def metrics_of(*events: object) -> StreamMetrics:
    m = StreamMetrics('cam "1"\\x', source="url", model="paraformer-realtime-v2")
    for t, event in enumerate(events):
        m.observe(event, float(t))  # type: ignore[arg-type]
    return m


def snapshot(*streams: StreamMetrics, draining: bool = False) -> DaemonSnapshot:
    return DaemonSnapshot(
        uptime_s=12.5,
        draining=draining,
        streams=tuple(s.snapshot(now=10.0) for s in streams),
        ratelimit_wait_s=0.25,
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
        assert (m.first_package.count, m.last_package.count) == (1, 2)
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
        entry = json.loads(render_health(snapshot(m))[1])["streams"]['cam "1"\\x']
        assert entry["translations"] == 2

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
        assert labels == {"stream": 'cam \\"1\\"\\\\x'}  # quotes and backslashes escaped
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
        assert (first["0.25"], first["0.5"]) == (0.0, 1.0)
        assert samples["steno_last_package_delay_seconds_sum"][0][1] == pytest.approx(1.54)

    def test_no_streams_still_valid(self) -> None:
        assert "steno_uptime_seconds 12.5" in render_metrics(snapshot())
        parse(render_metrics(snapshot()))


class TestHealth:
    def test_states_and_codes(self) -> None:
        """200 ok; 200 degraded when some stream failed; 503 all failed or draining."""
        good, bad = metrics_of(*EVENTS[:2]), metrics_of()
        bad.set_state("failed")
        code, body = render_health(snapshot(good))
        doc = json.loads(body)
        assert (code, doc["status"]) == (200, "ok")
        entry = doc["streams"]['cam "1"\\x']
        assert entry["state"] == "running" and entry["finals"] == 1
        assert entry["last_event_age_s"] == pytest.approx(9.0)
        assert render_health(snapshot(good, bad))[0] == 200
        assert json.loads(render_health(snapshot(good, bad))[1])["status"] == "degraded"
        assert render_health(snapshot(bad))[0] == 503
        assert json.loads(render_health(snapshot(good, draining=True))[1])["status"] == "draining"
        assert math.isfinite(doc["uptime_s"])
