"""/healthz and /readyz: the daemon's status as a pure function of its streams' states.

Rules / theory of operation
---------------------------
1. Each stream's **verdict** comes from its state by :data:`STATE_HEALTH`. A state
   marked ``GRACE`` (``starting``, ``reconnecting``: the stream cannot reach the
   service yet) is ``ok`` for ``grace_s`` and ``degraded`` after that.
2. A stream that is **losing audio now** (its replay buffer overflows during an
   outage) is ``degraded`` whatever its state: the loss is live, not after the fact.
3. The daemon's HTTP code and word come from :data:`DAEMON_HEALTH`, keyed by
   (draining, every stream failed, some stream not ok). The README's health
   table is this table.
4. **Readiness** (:data:`READY`): every stream has an open task or is legitimately
   without one (suspended, finished, or its source is being reopened: nothing a
   restart of the daemon would fix); a draining daemon is never ready.

Everything here is synchronous and pure (no clock: ages come in the snapshot),
so the tables are tested row by row.
"""

from __future__ import annotations

import datetime
import enum
from typing import TYPE_CHECKING, Final, Literal

import msgspec

if TYPE_CHECKING:
    from engine.daemon.metrics import DaemonSnapshot, State, StreamSnapshot

__all__ = [
    "DAEMON_HEALTH",
    "READY",
    "STATE_HEALTH",
    "Rule",
    "StreamHealth",
    "daemon_health",
    "render_health",
    "render_ready",
    "stream_health",
]

Status = Literal["ok", "degraded", "failed"]


class Rule(enum.Enum):
    """What a state says about a stream's health."""

    OK = "ok"
    GRACE = "ok within the grace, degraded after"
    DEGRADED = "degraded"
    FAILED = "failed"


STATE_HEALTH: Final[dict[State, Rule]] = {
    "starting": Rule.GRACE,  # no task yet: fine for a moment, not for long
    "running": Rule.OK,
    "reconnecting": Rule.GRACE,  # the service is unreachable: a blip, or an outage
    "suspended": Rule.OK,  # the suspend idle policy: no task on purpose
    "source-down": Rule.DEGRADED,  # the source is lost: its time is an AudioGap
    "restarting": Rule.DEGRADED,  # the stream crashed and waits for its backoff
    "draining": Rule.OK,  # shutting down (the daemon itself says draining)
    "finished": Rule.OK,  # its source ended (a file)
    "failed": Rule.FAILED,  # permanent: waits for a reload
}

READY: Final[dict[State, bool]] = {
    "starting": False,
    "running": True,
    "reconnecting": False,
    "suspended": True,
    "source-down": True,  # the task stays open (keep-alive) while the source is reopened
    "restarting": False,
    "draining": False,
    "finished": True,
    "failed": False,
}

# (draining, every stream failed, some stream not ok) -> (HTTP status, word)
DAEMON_HEALTH: Final[dict[tuple[bool, bool, bool], tuple[int, str]]] = {
    (True, True, True): (503, "draining"),
    (True, False, True): (503, "draining"),
    (True, False, False): (503, "draining"),
    (False, True, True): (503, "failed"),
    (False, False, True): (200, "degraded"),
    (False, False, False): (200, "ok"),
}


class StreamHealth(msgspec.Struct, frozen=True):
    """One stream's verdict and the reasons for it (empty when ok)."""

    status: Status
    reasons: tuple[str, ...] = ()


def stream_health(s: StreamSnapshot, grace_s: float) -> StreamHealth:
    """The verdict of one stream (rules 1 and 2)."""
    rule = STATE_HEALTH[s.state]
    reasons: list[str] = []
    if rule is Rule.FAILED:
        return StreamHealth("failed", (f"failed: {s.error or 'unknown error'}",))
    if rule is Rule.DEGRADED:
        reasons.append(s.state if s.error is None else f"{s.state}: {s.error}")
    elif rule is Rule.GRACE and s.outage_s > grace_s:
        reasons.append(
            f"cannot reach the service for {s.outage_s:.1f} s (grace {grace_s:g} s)"
            + (f": {s.error}" if s.error else "")
        )
    if s.losing_audio:
        reasons.append(f"losing audio: {s.outage_lost_s:.1f} s lost in this outage so far")
    return StreamHealth("degraded" if reasons else "ok", tuple(reasons))


def daemon_health(snap: DaemonSnapshot, grace_s: float) -> tuple[int, str, dict[str, StreamHealth]]:
    """HTTP status, word and per-stream verdicts (rule 3)."""
    verdicts = {s.stream: stream_health(s, grace_s) for s in snap.streams}
    statuses = [v.status for v in verdicts.values()]
    all_failed = bool(statuses) and all(x == "failed" for x in statuses)
    code, word = DAEMON_HEALTH[(snap.draining, all_failed, any(x != "ok" for x in statuses))]
    return code, word, verdicts


def _iso(t: float) -> str:
    return (
        datetime.datetime.fromtimestamp(t, datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _outage(s: StreamSnapshot, wall_time: float) -> dict[str, object] | None:
    if s.outage_s <= 0:
        return None
    return {
        "since": _iso(wall_time - s.outage_s),
        "for_s": round(s.outage_s, 3),
        "buffer_fill": round(s.replay_buffer_fill, 4),
        "lost_s": round(s.outage_lost_s, 3),
    }


def render_health(snap: DaemonSnapshot, grace_s: float) -> tuple[int, bytes]:
    """The /healthz response: status code and JSON body (per-stream state, verdict, outage)."""
    code, word, verdicts = daemon_health(snap, grace_s)
    degraded = {name: list(v.reasons) for name, v in verdicts.items() if v.status != "ok"}
    body = {
        "status": word,
        "uptime_s": round(snap.uptime_s, 3),
        "degraded": degraded,
        "streams": {
            s.stream: {
                "state": s.state,
                "health": verdicts[s.stream].status,
                "source": s.source,
                "model": s.model,
                "reconnects": s.reconnects,
                "finals": s.finals,
                "translations": s.translations,
                "audio_lost_ms": round(s.audio_lost_s * 1000),
                "outage": _outage(s, snap.wall_time),
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


def render_ready(snap: DaemonSnapshot) -> tuple[int, bytes]:
    """The /readyz response: 200 when every stream is :data:`READY` (rule 4), else 503."""
    waiting = {s.stream: s.state for s in snap.streams if not READY[s.state]}
    ready = not snap.draining and not waiting
    body = {
        "status": "ready" if ready else "not-ready",
        "draining": snap.draining,
        "waiting": waiting,
    }
    return (200 if ready else 503), msgspec.json.encode(body) + b"\n"
