"""One daemon stream: a source, the public ``open_stream`` API, rolling files and metrics.

Theory of operation
-------------------
::

    source reader ──[source->push]──► pusher (gate) ──► Stream.push/skip … Stream.events() ──► tap
                                          │                                                      │
                                          └─ source events ─► renderer (rolling sinks) ◄─────────┘

The daemon is built on the same embedding API as any host (:func:`engine.stream.open_stream`).
The **reader** opens the source and forwards its items; a live source that
breaks is reopened with the stream's backoff, and the outage is sent as a
:class:`SourceGap`. The **pusher** runs the suspend gate (``gate.py``), pushes
audio, and hands every span of time without audio to ``Stream.skip`` (a
suspended silence, a source outage, a capture device's gap), so the engine keeps
the global timeline on wall time and reports the span; it measures lateness and
forwards the source's own events (a microphone's ``DeviceLost``/``DeviceRestored``,
moved onto the stream's timeline). The **tap** counts every engine event
(``metrics.py``) and hands it to the renderer actor, which writes the rolling files.

A translating stream (gummy, livetranslate) differs only in its
:class:`SessionConfig` (``translation``) and its files (bilingual subtitles, a
TXT per language, the translated voice as WAV: ``rolling.py``). Suspending works
alike on both protocols: the task is finished and a new one opens on the next push.

Ending is always a drain from the source, as in the CLI: the drain event (or a
permanent failure reported by the session) cancels the reader; its channel
closes, the pusher ends the input, the session finishes its task (finish-task …
task-finished under its deadline; once draining, a failure is not retried), the
tap sees ``StreamEnded``, the renderer closes the files. Cancelling the caller's
scope stops everything at once.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

import structlog
import trio

from adapters.dashscope.models import get_model
from adapters.dashscope.ws import dial_tcp
from adapters.sinks.layout import CueLayout
from engine._util import unwrap_single_group
from engine.actors import renderer
from engine.config import SessionConfig
from engine.daemon.config_sources import FileSource
from engine.daemon.gate import EnergyGate, GateStep
from engine.daemon.rolling import open_rolling_sinks
from engine.daemon.sources import (
    SourceContext,
    SourceItem,
    SourceLost,
    SourceTimeline,
    describe_source,
    is_live,
    open_source,
)
from engine.errors import StenoError
from engine.events import Event, StreamEnded, StreamError
from engine.messages import Skip
from engine.policy import Backoff, classify
from engine.ratelimit import StartLimiter
from engine.stream import StreamConfig, open_stream
from engine.translation import transcribes
from engine.wiring import Edge

if TYPE_CHECKING:
    from collections.abc import Callable

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
        translation=spec.translation_options(),
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
    out, translation = spec.outputs, spec.translation_options()
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
            languages=translation.targets if translation is not None else (),
            transcript=transcribes(get_model(spec.model), translation),
            voice=translation is not None and translation.speech,
            layout=CueLayout(out.max_line_width or None, out.max_lines or None),
        )
    )
    items_send, items_recv = trio.open_memory_channel[SourceItem | SourceGap](
        EDGES["source->push"].size
    )
    render_send, render_recv = trio.open_memory_channel[Event](EDGES["events->renderer"].size)
    metrics.rate = run.rate
    config = StreamConfig(source=describe_source(spec.source), session=session_config(spec, env))
    with structlog.contextvars.bound_contextvars(stream=spec.id):
        log.info(
            "daemon.stream.start",
            source=config.source,
            model=spec.model,
            idle=spec.idle.policy,
            translate_to=list(translation.targets) if translation is not None else None,
        )
        try:
            # One cause, not a group: the manager classifies it (permanent or retry).
            with unwrap_single_group():
                async with open_stream(
                    config, dial=env.dial, limiter=env.limiter, drain=drain, clock=env.clock
                ) as stream:
                    metrics.stats = stream.stats
                    metrics.queues = _queues(stream, items_recv, render_recv)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            functools.partial(renderer.run, inbox=render_recv, sinks=sinks)
                        )
                        nursery.start_soon(_tap, run, stream, render_send.clone())
                        async with trio.open_nursery() as feed:
                            feed.start_soon(_read, run, items_send)
                            feed.start_soon(_drain_on, run, drain)
                            await _push(run, stream, items_recv, render_send)
                            feed.cancel_scope.cancel()
                        await stream.end_input()
        finally:
            metrics.stats = None
            metrics.queues = {}
        ended = run.ended
        log.info(
            "daemon.stream.end",
            source=run.outcome,  # what ended the run: finished, drained or failed (the source)
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


def _queues(
    stream: Stream,
    items: trio.MemoryReceiveChannel[SourceItem | SourceGap],
    render: trio.MemoryReceiveChannel[Event],
) -> dict[str, Callable[[], int]]:
    """The depth of every bounded edge of the stream, the engine's included (R7)."""
    return {
        "source->push": lambda: items.statistics().current_buffer_used,
        "push->resampler": lambda: stream.statistics().push_queue,
        "resampler->session": lambda: stream.statistics().frame_queue,
        "session->renderer": lambda: stream.statistics().event_queue,
        "events->renderer": lambda: render.statistics().current_buffer_used,
    }


async def _read(run: _Run, outbox: trio.MemorySendChannel[SourceItem | SourceGap]) -> None:
    """Forward the source's items; reopen a live source that broke (Channels: closes outbox)."""
    spec = run.spec
    backoff = Backoff(spec.restart.policy(), run.rng)
    sources = dataclasses.replace(run.env.sources, timeline_rate=run.rate)
    async with outbox:
        with run.reader_scope:
            while True:
                opened_t = trio.current_time()
                try:
                    async with open_source(spec.source, sources) as items:
                        async for item in items:
                            await outbox.send(item)
                    return  # the source ended: a file, stdin, or a live stream without reconnect
                except SourceLost as exc:
                    if not getattr(spec.source, "reconnect", True):
                        run.stop_source("finished", str(exc))
                        return
                    lost_t = trio.current_time()
                    delay = backoff.failed_forever(lost_t - opened_t)
                    run.metrics.source_restarts += 1
                    run.metrics.error = str(exc)
                    run.metrics.set_state("source-down")
                    log.warning(
                        "daemon.source.lost",
                        error=str(exc),
                        attempt=backoff.attempt,
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
    run: _Run,
    stream: Stream,
    inbox: trio.MemoryReceiveChannel[SourceItem | SourceGap],
    events: trio.MemorySendChannel[Event],
) -> None:
    """Gate and push audio, skip time without audio, forward the source's events.

    Channels: reads and closes ``inbox``; closes ``events`` (its clone of the
    renderer's inbox).
    """
    idle, metrics = run.spec.idle, run.metrics
    gate = (
        EnergyGate(
            threshold_dbfs=idle.threshold_dbfs, after_s=idle.after_s, preroll_ms=idle.preroll_ms
        )
        if idle.policy == "suspend"
        else None
    )
    speed = run.spec.source.speed if isinstance(run.spec.source, FileSource) else 1.0
    base: float | None = None  # when, on the trio clock, the source's audio began
    seen = 0.0  # seconds of source time since then
    timeline = SourceTimeline()
    async with inbox, events:
        async for item in inbox:
            if isinstance(item, SourceGap | Skip):
                if gate is not None:  # what the gate withheld came before the break
                    await _skip(stream, gate.interrupt(), "suspended")
                if isinstance(item, SourceGap):
                    samples, rate, reason = round(item.seconds * run.rate), run.rate, "source"
                    base = None
                else:
                    samples, rate, reason = item.samples, item.rate, item.reason
                    seen += samples / rate
                await stream.skip(samples, rate=rate, reason=reason, lost=True)
                timeline.passed(samples, rate)
                if isinstance(item, SourceGap):
                    timeline.reopened()
                continue
            if isinstance(item, Event):
                event = timeline.place(item, run.spec.id)
                metrics.observe(event, trio.current_time())
                await events.send(event)
                continue
            duration = len(item.samples) / item.rate
            timeline.passed(len(item.samples), item.rate)
            if base is None:
                base, seen = trio.current_time() - duration / speed, 0.0
            seen += duration
            step = (
                gate.feed(item.samples, item.rate) if gate else GateStep(item.rate, (item.samples,))
            )
            await _skip(stream, step, "suspended")
            if step.suspended:
                metrics.set_state("suspended")
                log.info("daemon.stream.suspended", after_s=idle.after_s)
            for pcm in step.push:
                await stream.push(pcm, rate=step.rate, channels=1)
            if step.resumed:
                metrics.set_state("running")
                log.info("daemon.stream.resumed", skipped_s=round(step.skipped / step.skip_rate, 3))
            metrics.push_lateness.observe(max(0.0, trio.current_time() - (base + seen / speed)))
        if gate is not None:  # a trailing suspension is accounted for too
            await _skip(stream, gate.interrupt(), "suspended")


async def _skip(stream: Stream, step: GateStep, reason: str) -> None:
    if step.skipped:
        await stream.skip(step.skipped, rate=step.skip_rate, reason=reason)


# ------------------------------------------------------------------- tap


async def _tap(run: _Run, stream: Stream, outbox: trio.MemorySendChannel[Event]) -> None:
    """Count and forward every event (Channels: closes outbox, which ends the renderer)."""
    metrics = run.metrics
    async with outbox:
        async for event in stream.events():
            metrics.observe(event, trio.current_time())
            if isinstance(event, StreamError) and event.permanent and event.kind != "sink":
                run.stop_source("failed", f"{event.kind}: {event.message}")
            if isinstance(event, StreamEnded):
                run.ended = event
            await outbox.send(event)
