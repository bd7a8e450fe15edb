"""/healthz and /readyz as pure functions of the streams' states (the README's health table)."""

from __future__ import annotations

import json

import msgspec
import pytest

from engine.daemon.health import (
    DAEMON_HEALTH,
    READY,
    STATE_HEALTH,
    Rule,
    daemon_health,
    render_health,
    render_ready,
    stream_health,
)
from engine.daemon.metrics import STATES, DaemonSnapshot, State, StreamMetrics, StreamSnapshot

GRACE = 5.0


def stream(
    state: State, *, name: str = "a", outage_s: float = 0.0, lost_s: float = 0.0
) -> StreamSnapshot:
    snap = StreamMetrics(name, source="url", model="paraformer-realtime-v2").snapshot(0.0)
    return msgspec.structs.replace(
        snap, state=state, outage_s=outage_s, outage_lost_s=lost_s, replay_buffer_fill=1.0
    )


def daemon(*streams: StreamSnapshot, draining: bool = False) -> DaemonSnapshot:
    return DaemonSnapshot(
        uptime_s=60.0, draining=draining, streams=streams, wall_time=1_700_000_000.0
    )


class TestTables:
    def test_every_state_has_a_rule_and_a_readiness(self) -> None:
        assert set(STATE_HEALTH) == set(READY) == set(STATES)

    @pytest.mark.parametrize("state", STATES)
    def test_each_state_within_and_beyond_the_grace(self, state: State) -> None:
        """A state's rule decides; GRACE states turn degraded only after the grace."""
        rule = STATE_HEALTH[state]
        within = stream_health(stream(state, outage_s=GRACE - 1), GRACE).status
        beyond = stream_health(stream(state, outage_s=GRACE + 1), GRACE).status
        expected = {
            Rule.OK: ("ok", "ok"),
            Rule.GRACE: ("ok", "degraded"),
            Rule.DEGRADED: ("degraded", "degraded"),
            Rule.FAILED: ("failed", "failed"),
        }[rule]
        assert (within, beyond) == expected

    @pytest.mark.parametrize("state", [s for s in STATES if s != "failed"])
    def test_losing_audio_degrades_at_once(self, state: State) -> None:
        verdict = stream_health(stream(state, outage_s=0.5, lost_s=1.0), GRACE)
        assert verdict.status == "degraded"
        assert any("losing audio" in r for r in verdict.reasons)

    @pytest.mark.parametrize(("key", "answer"), DAEMON_HEALTH.items())
    def test_daemon_rows(self, key: tuple[bool, bool, bool], answer: tuple[int, str]) -> None:
        """Each row of DAEMON_HEALTH, reached through real stream states."""
        draining, all_failed, some_not_ok = key
        if all_failed:
            streams = (stream("failed"),)
        elif some_not_ok:
            streams = (stream("running"), stream("reconnecting", name="b", outage_s=60))
        else:
            streams = (stream("running"), stream("suspended", name="b"))
        code, word, _ = daemon_health(daemon(*streams, draining=draining), GRACE)
        assert (code, word) == answer

    def test_no_streams_is_ok(self) -> None:
        assert daemon_health(daemon(), GRACE)[:2] == (200, "ok")


class TestBodies:
    def test_healthz_names_the_degraded_streams_and_their_outage(self) -> None:
        code, body = render_health(
            daemon(stream("running"), stream("reconnecting", name="b", outage_s=62.5, lost_s=52.5)),
            GRACE,
        )
        doc = json.loads(body)
        assert (code, doc["status"]) == (200, "degraded")
        assert list(doc["degraded"]) == ["b"]
        assert doc["degraded"]["b"][0].startswith("cannot reach the service for 62.5 s")
        outage = doc["streams"]["b"]["outage"]
        assert outage == {
            "since": "2023-11-14T22:12:17.500Z",
            "for_s": 62.5,
            "buffer_fill": 1.0,
            "lost_s": 52.5,
        }
        assert doc["streams"]["a"]["outage"] is None and doc["streams"]["a"]["health"] == "ok"

    def test_readyz(self) -> None:
        """Ready when every stream has a task or is legitimately idle; never while draining."""
        assert render_ready(daemon(stream("running"), stream("suspended", name="b")))[0] == 200
        code, body = render_ready(daemon(stream("running"), stream("reconnecting", name="b")))
        assert code == 503 and json.loads(body)["waiting"] == {"b": "reconnecting"}
        assert render_ready(daemon(stream("running"), draining=True))[0] == 503
        assert render_ready(daemon())[0] == 200
