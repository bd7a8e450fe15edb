"""One daemon stream: a source, the public ``open_stream`` API, rolling files and metrics.

Theory of operation
-------------------
::

    source reader ──[source->push]──► pusher (gate) ──► Stream.push … Stream.events() ──► tap
                                                                                           │
                          renderer (rolling sinks) ◄──[events->renderer]───────────────────┘

The daemon is built on the same embedding API as any host (:func:`engine.stream.open_stream`).
The **reader** opens the source and forwards its blocks; a live source that
breaks is reopened with the stream's backoff, and the outage is sent as a
:class:`SourceGap` so the timeline keeps wall time. The **pusher** runs the
suspend gate (``gate.py``), pushes, and measures lateness. The **tap** maps each
event onto the global timeline, counts it (``metrics.py``) and hands it to the
engine's renderer actor, which writes the rolling files.

Ending is always a drain from the source, as in the CLI: the drain event (or a
permanent failure reported by the session) cancels the reader; its channel
closes, the pusher ends the input, the session finishes its task (finish-task …
task-finished under its deadline), the tap sees ``StreamEnded``, the renderer
closes the files. Cancelling the caller's scope stops everything at once.
"""

from __future__ import annotations

import functools
import pathlib
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

import structlog
import trio

from adapters.dashscope.models import get_model
from adapters.dashscope.ws import dial_tcp
from engine._util import unwrap_single_group
from engine.actors import renderer
from engine.actors.capture import RawBlock
from engine.config import SessionConfig
from engine.daemon.config import FileSource
from engine.daemon.gate import EnergyGate, GateStep, TimelineMap
from engine.daemon.rolling import open_rolling_sinks
from engine.daemon.sources import SourceContext, SourceLost, describe_source, is_live, open_source
from engine.errors import StenoError
from engine.events import Event, StreamEnded, StreamError, StreamStarted
from engine.policy import classify, next_delay
from engine.ratelimit import StartLimiter
from engine.stream import StreamConfig, open_stream
from engine.wiring import Edge

if TYPE_CHECKING:
    from adapters.dashscope.ws import Dialer
    from engine.config import Secret
    from engine.daemon.config import StreamSpec
    from engine.daemon.metrics import StreamMetrics
    from engine.daemon.rolling import WallClock
    from engine.stream import Stream

__all__ = ["EDGES", "Outcome", "SourceGap", "StreamEnv", "run_stream", "session_config"]

log = structlog.get_logger("steno.daemon.stream")

# The daemon's own edges (house rule R7), beside engine.wiring.EDGES.
EDGES: Final[dict[str, Edge]] = {
    "source->push": Edge(16, "block", "a file waits; a live reader backs up into its pipe briefly"),
    "events->renderer": Edge(64, "block", "events are never dropped; the files are fast"),
}

Outcome = Literal["finished", "drained", "failed"]


@dataclass(frozen=True)
class SourceGap:
    """A live source was down for ``seconds``: time that passed with no audio."""

    seconds: float


@dataclass(frozen=True)
class StreamEnv:
    """What every stream of a daemon shares (passed in; no globals, R19)."""

    url: str
    api_key: Secret
    clock: WallClock
    dial: Dialer = dial_tcp
    limiter: StartLimiter = field(default_factory=StartLimiter)
    sources: SourceContext = field(default_factory=SourceContext)
    seed: int | None = None  # seeds backoff jitter (tests); None: random


def session_config(spec: StreamSpec, env: StreamEnv) -> SessionConfig:
    """The session settings of ``spec``: the daemon policy, its idle policy and tuning."""
    tuning, suspend = spec.session, spec.idle.policy == "suspend"
    return SessionConfig(
        stream=spec.id,
        model=spec.model,
        url=spec.url or env.url,
        api_key=env.api_key,
        options=spec.options(),
        frame_ms=tuning.frame_ms,
        finish_timeout_s=tuning.finish_timeout_s,
        replay_buffer_s=tuning.replay_buffer_s,
        policy=spec.restart.policy(),
        seed=env.seed,
        # suspend: the gate stops the audio; the session finishes the task soon after
        # and reopens one on the next push. keepalive: padding + heartbeat.
        idle_policy="finish" if suspend else "keepalive",
        idle_timeout_s=spec.idle.finish_after_s if suspend else tuning.idle_timeout_s,
        max_task_age_s=tuning.rotate_task_after_s or None,
        ping_interval_s=tuning.ping_interval_s,
    )


class _Run:
    """The state one run of a stream shares between its tasks."""

    def __init__(self, spec: StreamSpec, env: StreamEnv, metrics: StreamMetrics) -> None:
        self.spec = spec
        self.env = env
        self.metrics = metrics
        self.rate = get_model(spec.model).sample_rate
        self.timeline = TimelineMap(self.rate)
        self.reader_scope = trio.CancelScope()
        self.outcome: Outcome = "finished"
        self.failure: str | None = None
        self.ended: StreamEnded | None = None
        self.rng = random.Random(env.seed)

    def stop_source(self, outcome: Outcome, failure: str | None = None) -> None:
        """End the input: the session finishes what it has."""
        if self.outcome == "finished":
            self.outcome = outcome
        self.failure = self.failure or failure
        self.reader_scope.cancel()


async def run_stream(
    spec: StreamSpec, env: StreamEnv, metrics: StreamMetrics, drain: trio.Event
) -> tuple[Outcome, str | None]:
    """Run one stream until its source ends, it fails permanently, or ``drain`` is set.

    Returns:
        ``("finished" | "drained" | "failed", reason)``.

    A source that cannot be opened (a missing file, no ffmpeg) or a permanent
    session failure (a rejected key) is an outcome, ``"failed"``, not an exception.

    Raises:
        OSError: the output directory cannot be created or written.
        StenoError: the stream could not start (e.g. a bad model). Anything else is
            a bug; the manager restarts the stream after a backoff.

    Cancellation: abandons the task at once (no finish-task); the files are closed.
    """
    run = _Run(spec, env, metrics)
    # The manager fills in the daemon's output-dir (manager.effective_spec).
    directory = pathlib.Path(spec.outputs.dir or ".")
    out = spec.outputs
    sinks = await trio.to_thread.run_sync(
        functools.partial(
            open_rolling_sinks,
            directory,
            spec.id,
            out.formats,
            clock=env.clock,
            rotate=out.rotate,
            max_bytes=out.max_bytes,
            timezone=out.timezone,
        )
    )
    blocks_send, blocks_recv = trio.open_memory_channel[RawBlock | SourceGap](
        EDGES["source->push"].size
    )
    render_send, render_recv = trio.open_memory_channel[Event](EDGES["events->renderer"].size)
    metrics.rate = run.rate
    metrics.queues = {
        "source->push": lambda: blocks_recv.statistics().current_buffer_used,
        "events->renderer": lambda: render_recv.statistics().current_buffer_used,
    }
    config = StreamConfig(session=session_config(spec, env))
    with structlog.contextvars.bound_contextvars(stream=spec.id):
        log.info(
            "daemon.stream.start",
            source=describe_source(spec.source),
            model=spec.model,
            idle=spec.idle.policy,
            translate_to=list(spec.translate_to) or None,
        )
        try:
            # One cause, not a group: the manager classifies it (permanent or retry).
            with unwrap_single_group():
                async with open_stream(config, dial=env.dial, limiter=env.limiter) as stream:
                    metrics.stats = stream.stats
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            functools.partial(renderer.run, inbox=render_recv, sinks=sinks)
                        )
                        nursery.start_soon(_tap, run, stream, render_send)
                        async with trio.open_nursery() as feed:
                            feed.start_soon(_read, run, blocks_send)
                            feed.start_soon(_drain_on, run, drain)
                            await _push(run, stream, blocks_recv)
                            feed.cancel_scope.cancel()
                        await stream.end_input()
        finally:
            metrics.stats = None
            metrics.queues = {}
        ended = run.ended
        log.info(
            "daemon.stream.end",
            outcome=run.outcome,
            reason=run.failure,
            status=ended.status if ended else None,
            finals=ended.finals if ended else None,
            audio_lost_ms=ended.audio_lost_ms if ended else None,
        )
    return run.outcome, run.failure


async def _drain_on(run: _Run, drain: trio.Event) -> None:
    await drain.wait()
    run.stop_source("drained")


# ---------------------------------------------------------------- reader


async def _read(run: _Run, outbox: trio.MemorySendChannel[RawBlock | SourceGap]) -> None:
    """Forward the source's blocks; reopen a live source that broke (Channels: closes outbox)."""
    spec, policy = run.spec, run.spec.restart.policy()
    attempt = 0
    async with outbox:
        with run.reader_scope:
            while True:
                opened_t = trio.current_time()
                try:
                    async with open_source(spec.source, run.env.sources) as blocks:
                        async for block in blocks:
                            await outbox.send(block)
                    return  # the source ended: a file, stdin, or a live stream without reconnect
                except SourceLost as exc:
                    if not getattr(spec.source, "reconnect", True):
                        run.stop_source("finished", str(exc))
                        return
                    lost_t = trio.current_time()
                    attempt = 1 if lost_t - opened_t >= policy.healthy_after_s else attempt + 1
                    delay = next_delay(policy, attempt, run.rng) or policy.backoff_cap_s
                    run.metrics.source_restarts += 1
                    run.metrics.set_state("source-down")
                    log.warning(
                        "daemon.source.lost",
                        error=str(exc),
                        attempt=attempt,
                        delay_s=round(delay, 3),
                    )
                    await trio.sleep(delay)
                    if is_live(spec.source):
                        await outbox.send(SourceGap(trio.current_time() - lost_t))
                except StenoError as exc:
                    # A file that is missing or not audio, ffmpeg missing, no mic support.
                    category = classify(exc)
                    log.error("daemon.source.failed", error=str(exc), category=category.value)
                    run.stop_source("failed", str(exc))
                    return


# ---------------------------------------------------------------- pusher


async def _push(
    run: _Run, stream: Stream, inbox: trio.MemoryReceiveChannel[RawBlock | SourceGap]
) -> None:
    """Gate and push every block (Channels: reads and closes inbox)."""
    idle, metrics, timeline = run.spec.idle, run.metrics, run.timeline
    gate = (
        EnergyGate(
            threshold_dbfs=idle.threshold_dbfs, after_s=idle.after_s, preroll_ms=idle.preroll_ms
        )
        if idle.policy == "suspend"
        else None
    )
    speed = run.spec.source.speed if isinstance(run.spec.source, FileSource) else 1.0
    base: float | None = None  # when, on the trio clock, the source's audio began
    seen = 0.0  # seconds of source audio since then
    async with inbox:
        async for item in inbox:
            if isinstance(item, SourceGap):
                timeline.skip(round(item.seconds * run.rate), run.rate)
                base = None
                continue
            duration = len(item.samples) / item.rate
            if base is None:
                base, seen = trio.current_time() - duration / speed, 0.0
            seen += duration
            step = (
                gate.feed(item.samples, item.rate) if gate else GateStep(item.rate, (item.samples,))
            )
            if step.skipped:
                timeline.skip(step.skipped, step.skip_rate)
                metrics.skipped_s += step.skipped / step.skip_rate
            if step.suspended:
                metrics.set_state("suspended")
                log.info("daemon.stream.suspended", after_s=idle.after_s)
            for pcm in step.push:
                await stream.push(pcm, rate=step.rate, channels=1)
                timeline.pushed(len(pcm), step.rate)
            if step.resumed:
                metrics.set_state("running")
                log.info("daemon.stream.resumed", skipped_s=round(step.skipped / step.skip_rate, 3))
            metrics.push_lateness.observe(max(0.0, trio.current_time() - (base + seen / speed)))


# ------------------------------------------------------------------- tap


async def _tap(run: _Run, stream: Stream, outbox: trio.MemorySendChannel[Event]) -> None:
    """Map, count and forward every event (Channels: closes outbox, which ends the renderer)."""
    spec, metrics = run.spec, run.metrics
    async with outbox:
        await outbox.send(
            StreamStarted(
                describe_source(spec.source),
                spec.model,
                run.rate,
                endpoint=stream.config.session.url.split("?", 1)[0],
                stream=spec.id,
                t=trio.current_time(),
            )
        )
        async for raw in stream.events():
            event = run.timeline.map_event(raw)
            metrics.observe(event, trio.current_time())
            if isinstance(event, StreamError) and event.permanent and event.kind != "sink":
                run.stop_source("failed", f"{event.kind}: {event.message}")
            if isinstance(event, StreamEnded):
                run.ended = event
            await outbox.send(event)
