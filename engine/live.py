"""One live stream, composed from actors: mic → resampler → session → renderer.

The live counterpart of :mod:`engine.pipeline` (which plays a file). The mic actor
owns a drop-oldest hand-off from PortAudio, so capture never waits on the
pipeline; every other edge is bounded and blocking (``engine.wiring``). Ending is
a drain from the source: when ``drain`` is set, capture stops, its queue is sent,
the resampler flushes and the session finishes its task; the renderer then closes
the files. Capture gaps (overflow, device outages) reach the renderer as
``AudioGap`` events and are folded into the final :class:`StreamEnded`.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import trio

from adapters.dashscope.models import endpoint, get_model
from engine._util import unwrap_single_group
from engine.actors import mic, playback, renderer, resampler, session
from engine.actors.renderer import close_sinks
from engine.clock import iso_utc, system_clock
from engine.config import SessionConfig
from engine.events import (
    AudioFrame,
    AudioGap,
    Event,
    StreamEnded,
    StreamError,
    StreamStarted,
    TranslatedAudio,
    samples_to_ms,
)
from engine.messages import RawBlock, Skip
from engine.pipeline import open_outputs
from engine.wiring import EDGES

if TYPE_CHECKING:
    from adapters.audio.backend import AudioBackend
    from adapters.dashscope.ws import Dialer
    from adapters.sinks.base import Sink
    from engine.clock import WallClock
    from engine.ratelimit import StartLimiter

__all__ = ["CAPTURE_GAPS", "LiveStreamConfig", "run_live_stream"]

log = structlog.get_logger("steno.live")

#: Gap reasons the capture side reports (the session reports its own in StreamEnded).
CAPTURE_GAPS = frozenset({"capture-overflow", "device"})


class LiveStreamConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One live stream: the device, the session and the outputs.

    ``voice_dir`` gets ``<output_stem>.voice.wav`` of the translated speech, and
    ``playback`` plays it on an output device (both need a model that speaks).
    """

    session: SessionConfig
    mic: mic.MicConfig
    out_dir: str | None = None
    output_stem: str = "listen"
    formats: tuple[str, ...] = ("txt", "srt", "vtt", "jsonl")
    voice_dir: str | None = None
    playback: playback.PlaybackConfig | None = None


#: Translated-voice chunks waiting for the playback actor; beyond it they are dropped
#: (counted): the session's events must never wait on a speaker.
PLAYBACK_QUEUE = 256


async def run_live_stream(
    config: LiveStreamConfig,
    *,
    console: trio.MemorySendChannel[Event],
    drain: trio.Event,
    dial: Dialer,
    limiter: StartLimiter | None = None,
    backend: AudioBackend | None = None,
    run_blocking: Any = None,
    clock: WallClock = system_clock,
) -> StreamEnded:
    """Transcribe an input device until ``drain`` is set; return its StreamEnded.

    Channels: takes ownership of ``console`` and closes it.

    Cancellation: cancelling closes the device and abandons the task at once;
    setting ``drain`` stops capture and finishes the task gracefully.

    ``clock`` (epoch seconds) stamps ``StreamStarted.started_at``.

    Error handling: :class:`ConfigError` (no PortAudio, no such device, a bad
    output) and :class:`InputError` (the device cannot be opened) are raised before
    any audio is captured. Capture gaps (overflow, device outages) make an ``ok``
    StreamEnded ``partial`` and count in its ``audio_lost_ms``.
    """
    cfg = config.session
    rate = get_model(cfg.model).sample_rate
    raw_send, raw_recv = trio.open_memory_channel[RawBlock | Skip](EDGES["capture->resampler"].size)
    frames_send, frames_recv = trio.open_memory_channel[AudioFrame](
        EDGES["resampler->session"].size
    )
    events_send, events_recv = trio.open_memory_channel[Event](EDGES["session->renderer"].size)
    render_send, render_recv = trio.open_memory_channel[Event](EDGES["session->renderer"].size)
    ended: list[StreamEnded] = []
    extra = {} if run_blocking is None else {"run_blocking": run_blocking}
    with structlog.contextvars.bound_contextvars(stream=cfg.stream), unwrap_single_group():
        async with console, trio.open_nursery() as nursery:
            sinks: list[Sink] = []
            voice: trio.MemorySendChannel[Event] | None = None
            speaker: dict[str, Any] = dict(extra)
            if backend is not None:
                speaker["backend"] = backend
            try:
                sinks = await trio.to_thread.run_sync(_open_outputs, config)
                if config.playback is not None:
                    voice, voice_recv = trio.open_memory_channel[Event](PLAYBACK_QUEUE)
                    await nursery.start(
                        functools.partial(
                            playback.run, inbox=voice_recv, config=config.playback, **speaker
                        )
                    )
                stats = await nursery.start(
                    functools.partial(
                        _capture, raw_send, events_send.clone(), config.mic, drain, backend, extra
                    )
                )
            except BaseException:
                close_sinks(sinks)
                if voice is not None:
                    voice.close()
                raw_send.close()
                raw_recv.close()
                frames_send.close()
                frames_recv.close()
                events_send.close()
                events_recv.close()
                render_send.close()
                render_recv.close()
                raise
            nursery.start_soon(
                lambda: resampler.run(
                    inbox=raw_recv,
                    outbox=frames_send,
                    config=resampler.ResamplerConfig(
                        out_rate=rate, frame_ms=cfg.frame_ms, stream=cfg.stream
                    ),
                )
            )
            nursery.start_soon(
                lambda: renderer.run(inbox=render_recv, sinks=sinks, forward=console.clone())
            )
            device = stats.device.name if stats.device else str(config.mic.device)
            started = StreamStarted(
                f"device:{device}",
                cfg.model,
                rate,
                endpoint=endpoint(cfg.model, cfg.url),
                started_at=iso_utc(clock()),
                stream=cfg.stream,
                t=trio.current_time(),
            )
            nursery.start_soon(_tap, events_recv, render_send, started, ended, voice)
            log.info("live.started", device=device, device_rate=stats.rate, rate=rate)
            await session.run(
                inbox=frames_recv,
                outbox=events_send,
                config=cfg,
                dial=dial,
                limiter=limiter,
                drain=drain,
            )
    return ended[0] if ended else StreamEnded("failed", stream=cfg.stream, t=trio.current_time())


async def _capture(
    raw_send: trio.MemorySendChannel[RawBlock | Skip],
    events: trio.MemorySendChannel[Event],
    config: mic.MicConfig,
    drain: trio.Event,
    backend: AudioBackend | None,
    extra: dict[str, Any],
    task_status: trio.TaskStatus[mic.MicStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the mic actor; a device that never came back is reported, not raised."""
    from adapters.audio.backend import DeviceFailed

    started = False
    errors = events.clone()
    async with errors:
        try:
            with unwrap_single_group():
                async with trio.open_nursery() as inner:
                    stats = await inner.start(
                        functools.partial(
                            mic.run,
                            outbox=raw_send,
                            events=events,
                            config=config,
                            backend=backend,
                            stop=drain,
                            **extra,
                        )
                    )
                    started = True
                    task_status.started(stats)
        except DeviceFailed as exc:
            if not started:
                raise
            log.error("capture.failed", error=str(exc))
            await errors.send(
                StreamError("device", str(exc), stream=config.stream, t=trio.current_time())
            )


def _open_outputs(config: LiveStreamConfig) -> list[Sink]:
    return open_outputs(
        config.out_dir,
        config.output_stem,
        config.formats,
        config.session.translation,
        config.voice_dir,
    )


async def _tap(
    inbox: trio.MemoryReceiveChannel[Event],
    outbox: trio.MemorySendChannel[Event],
    first: Event,
    ended: list[StreamEnded],
    voice: trio.MemorySendChannel[Event] | None = None,
) -> None:
    """Forward events to the renderer (and the translated voice to playback, never
    waiting on it: a chunk that does not fit is dropped and counted); fold capture
    gaps and errors into StreamEnded."""
    lost_ms = errors = dropped = 0
    async with inbox, outbox, contextlib.AsyncExitStack() as stack:
        if voice is not None:
            await stack.enter_async_context(voice)
        await outbox.send(first)
        async for event in inbox:
            if voice is not None and isinstance(event, TranslatedAudio):
                try:
                    voice.send_nowait(event)
                except (trio.WouldBlock, trio.BrokenResourceError):
                    dropped += 1
                    if dropped == 1 or dropped % 100 == 0:
                        log.warning("playback.chunks_dropped", dropped=dropped)
            if isinstance(event, AudioGap) and event.reason in CAPTURE_GAPS:
                lost_ms += samples_to_ms(event.end - event.start, event.rate)
            elif isinstance(event, StreamError):
                errors += 1
            elif isinstance(event, StreamEnded):
                status = "partial" if event.status == "ok" and (lost_ms or errors) else event.status
                event = msgspec.structs.replace(
                    event, status=status, audio_lost_ms=event.audio_lost_ms + lost_ms
                )
                ended.append(event)
            await outbox.send(event)
