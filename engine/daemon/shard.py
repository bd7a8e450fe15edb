"""``workers = N``: which worker process runs which stream, and one view over all of them.

Rules / theory of operation
---------------------------
1. **How many.** ``workers = N`` runs N worker processes; ``"auto"`` one per CPU
   this process may use. Either way there are never more workers than streams
   (an idle worker would only cost memory), nor more than the tightest task-start
   burst of the streams' model families can be split into (each worker gets
   ``1/N`` of every budget and needs a whole start of burst: more workers would add
   up their bursts past the service's, as ``--processes`` is capped too), and 1
   means no worker process at all: the streams run in the daemon's own process, as
   before ``workers`` existed.
2. **Who runs what.** At start, stream ``i`` of the file (in file order) goes to
   worker ``i mod N``: balanced, and the same file gives the same split on every
   start. A reload never moves a running stream (moving it would restart its task
   and its files): kept streams stay where they are, and each added one goes to the
   worker with the fewest streams (the lowest index on a tie). Each stream is in
   exactly one worker.
3. **One view.** The parent merges its workers' latest snapshots into one
   :class:`~engine.daemon.metrics.DaemonSnapshot` (:func:`merge`), which the
   existing pure faces render: ``health.py`` (/healthz, /readyz) and
   ``exposition.py`` (/metrics; the ``stream`` label keeps every series apart, so
   every family appears once). A worker that has not reported yet shows its streams
   ``starting`` (with the grace of rule 1 of ``health.py``); a worker that died or
   went silent shows them ``restarting`` with the reason (degraded), until its
   replacement reports.
4. **Counters carry on.** The counters and histograms a dead worker last reported
   are kept (:func:`accumulate`) and added to its replacement's, so a stream's
   ``_total`` series never go down while the daemon runs, as in one process
   (where a stream's metrics outlive its restarts). What the dead worker counted
   after its last report (under a second) is lost.

Everything here is pure: times come in as arguments.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

import msgspec

from adapters.dashscope.models import MODELS
from engine.daemon.config import StreamSpec
from engine.daemon.metrics import DaemonSnapshot, HistogramSnapshot, StreamSnapshot
from engine.daemon.sources import source_kind
from engine.ratelimit import max_shares

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from engine.daemon.config import DaemonConfig
    from engine.daemon.metrics import State

__all__ = [
    "Placement",
    "WorkerView",
    "accumulate",
    "assign",
    "available_cpus",
    "burst_workers",
    "merge",
    "placeholder",
    "rate_share",
    "reassign",
    "resolve_workers",
]

_EMPTY: Final = HistogramSnapshot((), (0,), 0.0, 0)
_COUNTED: Final = (
    "reconnects",
    "finals",
    "tasks_opened",
    "restarts",
    "source_restarts",
    "errors",
    "audio_lost_s",
    "skipped_s",
    "translations",
    "voice_s",
    "frames_coalesced",
)
_HISTOGRAMS: Final = ("first_package_delay", "last_package_delay", "push_lateness", "final_lag")

Placement = dict[str, int]
"""Stream id -> worker index."""


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as a container limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(config: DaemonConfig, cpus: int) -> int:
    """The number of worker processes (rule 1): 1 means the streams run in-process."""
    wanted = cpus if config.daemon.workers == "auto" else config.daemon.workers
    return max(1, min(wanted, len(config.streams), burst_workers(config)))


def burst_workers(config: DaemonConfig) -> int:
    """The most workers the streams' task-start budgets can be split into (rule 1)."""
    families = {MODELS[spec.model].family for spec in config.streams}
    return min((max_shares(family) for family in families), default=1 << 30)


def rate_share(workers: int) -> str:
    """``STENO_RATE_SHARE`` for each of ``workers`` workers: their budgets sum to one.

    A decimal (``0.5``, ``0.3333333333333333``), which ``float`` and ``Fraction`` read.
    """
    return repr(1.0 / workers)


def assign(streams: Sequence[StreamSpec], workers: int) -> Placement:
    """The start placement (rule 2): the ``i``-th stream to worker ``i mod workers``."""
    return {spec.id: i % workers for i, spec in enumerate(streams)}


def reassign(current: Mapping[str, int], streams: Sequence[StreamSpec], workers: int) -> Placement:
    """The placement after a reload (rule 2): kept streams stay, added ones fill the emptiest."""
    wanted = [spec.id for spec in streams]
    placement = {i: current[i] for i in wanted if i in current and current[i] < workers}
    load = [0] * workers
    for worker in placement.values():
        load[worker] += 1
    for stream_id in wanted:
        if stream_id not in placement:
            worker = min(range(workers), key=lambda w: (load[w], w))
            placement[stream_id] = worker
            load[worker] += 1
    return {i: placement[i] for i in wanted}  # in file order


def placeholder(
    spec: StreamSpec,
    state: State,
    *,
    error: str | None = None,
    down_s: float = 0.0,
    restarts: int = 0,
) -> StreamSnapshot:
    """What the parent shows for a stream no live worker reports: ``state`` and why."""
    return StreamSnapshot(
        stream=spec.id,
        source=source_kind(spec.source),
        model=spec.model,
        state=state,
        error=error,
        reconnects=0,
        finals=0,
        tasks_opened=0,
        restarts=restarts,
        source_restarts=0,
        errors=0,
        audio_lost_s=0.0,
        gaps={},
        skipped_s=0.0,
        last_event_age_s=None,
        replay_buffer_s=0.0,
        live_tasks=0,
        queues={},
        first_package_delay=_EMPTY,
        last_package_delay=_EMPTY,
        push_lateness=_EMPTY,
        final_lag=_EMPTY,
        outage_s=down_s,
    )


class WorkerView(msgspec.Struct, frozen=True, kw_only=True):
    """What the parent knows of one worker at one moment (its input to :func:`merge`).

    ``snapshot`` is the worker's latest report, or None before the first one (or
    after it died). ``down`` says why its streams cannot be trusted now (it died,
    it is restarting, it stopped reporting), with ``down_s``: how long.
    """

    worker: int
    streams: tuple[StreamSpec, ...]  # the streams placed on it, in file order
    snapshot: DaemonSnapshot | None = None
    down: str | None = None
    down_s: float = 0.0
    restarts: int = 0  # times the parent restarted this worker
    carried: dict[str, StreamSnapshot] = {}  # what its dead processes had counted


def _add(a: HistogramSnapshot, b: HistogramSnapshot) -> HistogramSnapshot:
    if not a.count:
        return b
    if not b.count or a.bounds != b.bounds:
        return a if not b.count else b
    cumulative = tuple(x + y for x, y in zip(a.cumulative, b.cumulative, strict=True))
    return HistogramSnapshot(b.bounds, cumulative, a.sum + b.sum, a.count + b.count)


def accumulate(earlier: StreamSnapshot, now: StreamSnapshot) -> StreamSnapshot:
    """``now`` with the counters and histograms of ``earlier`` added (rule 4; pure).

    Gauges (state, outage, buffers, queues, ages) are ``now``'s alone.
    """
    gaps = dict(earlier.gaps)
    for reason, n in now.gaps.items():
        gaps[reason] = gaps.get(reason, 0) + n
    counted = {name: getattr(earlier, name) + getattr(now, name) for name in _COUNTED}
    histograms = {name: _add(getattr(earlier, name), getattr(now, name)) for name in _HISTOGRAMS}
    return msgspec.structs.replace(now, gaps=gaps, **counted, **histograms)


def _stream_view(spec: StreamSpec, view: WorkerView) -> StreamSnapshot:
    reported = None
    if view.snapshot is not None:
        reported = next((s for s in view.snapshot.streams if s.stream == spec.id), None)
    if view.down is not None:
        shown = placeholder(
            spec, "restarting", error=view.down, down_s=view.down_s, restarts=view.restarts
        )
    elif reported is None:
        shown = placeholder(spec, "starting", down_s=view.down_s, restarts=view.restarts)
    elif view.restarts:  # a restarted worker's streams were restarted with it
        shown = msgspec.structs.replace(reported, restarts=reported.restarts + view.restarts)
    else:
        shown = reported
    earlier = view.carried.get(spec.id)
    return shown if earlier is None else accumulate(earlier, shown)


def merge(
    views: Sequence[WorkerView], *, uptime_s: float, draining: bool, wall_time: float
) -> DaemonSnapshot:
    """One snapshot of the whole daemon (rule 3): every placed stream once, in placement order.

    The parent's own ``uptime_s``, ``draining`` and ``wall_time`` stand for the daemon;
    the rate limiter's waits are summed over the workers.
    """
    streams = tuple(_stream_view(spec, view) for view in views for spec in view.streams)
    waited = sum(v.snapshot.ratelimit_wait_s for v in views if v.snapshot is not None)
    return DaemonSnapshot(
        uptime_s=uptime_s,
        draining=draining,
        streams=streams,
        ratelimit_wait_s=waited,
        wall_time=wall_time,
    )
