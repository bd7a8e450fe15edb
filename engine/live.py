"""One live stream: the microphone actor is the producer of an :func:`open_stream`.

The live counterpart of :mod:`engine.pipeline` (which plays a file). The mic actor
owns a drop-oldest hand-off from PortAudio, so capture never waits on the
pipeline; every other edge is bounded and blocking (``engine.wiring``). Ending is
a drain from the source: when ``drain`` is set, capture stops, its queue is sent,
the resampler flushes and the session finishes its task; the renderer then closes
the files. Capture gaps (overflow, device outages) travel the stream's input lane
as ``AudioGap`` events; :mod:`engine.stream` folds them into the final
:class:`StreamEnded`, which this module only forwards.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import trio

from adapters.sinks.layout import DEFAULT_LAYOUT, CueLayout
from engine._util import unwrap_single_group
from engine.actors import mic, playback, renderer
from engine.actors.renderer import close_sinks
from engine.clock import system_clock
from engine.config import SessionConfig
from engine.events import Event, StreamEnded, StreamError, TranslatedAudio
from engine.pipeline import open_outputs
from engine.stream import StreamConfig, open_stream
from engine.wiring import EDGES

if TYPE_CHECKING:
    from adapters.audio.backend import AudioBackend
    from adapters.dashscope.ws import Dialer
    from adapters.sinks.base import Sink
    from engine.clock import WallClock
    from engine.ratelimit import StartLimiter
    from engine.stream import Feed, Stream

__all__ = ["LiveStreamConfig", "run_live_stream"]

log = structlog.get_logger("steno.live")


class LiveStreamConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One live stream: the device, the session and the outputs.

    ``layout`` sets the SRT/VTT line width and lines per cue. ``voice_dir`` gets
    ``<output_stem>.voice.wav`` of the translated speech, and
    ``playback`` plays it on an output device (both need a model that speaks).
    """

    session: SessionConfig
    mic: mic.MicConfig
    out_dir: str | None = None
    output_stem: str = "listen"
    formats: tuple[str, ...] = ("txt", "srt", "vtt", "jsonl")
    voice_dir: str | None = None
    layout: CueLayout = DEFAULT_LAYOUT
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
    extra = {} if run_blocking is None else {"run_blocking": run_blocking}
    speaker: dict[str, Any] = dict(extra)
    if backend is not None:
        speaker["backend"] = backend
    producer = functools.partial(_produce, config=config, drain=drain, backend=backend, extra=extra)
    ended: StreamEnded | None = None
    with structlog.contextvars.bound_contextvars(stream=cfg.stream), unwrap_single_group():
        async with console, trio.open_nursery() as nursery:
            sinks: list[Sink] = []
            voice: trio.MemorySendChannel[Event] | None = None
            rendering = False
            try:
                sinks = await trio.to_thread.run_sync(_open_outputs, config)
                if config.playback is not None:
                    voice, voice_recv = trio.open_memory_channel[Event](PLAYBACK_QUEUE)
                    await nursery.start(
                        functools.partial(
                            playback.run, inbox=voice_recv, config=config.playback, **speaker
                        )
                    )
                async with open_stream(
                    StreamConfig(session=cfg, source=f"device:{config.mic.device}"),
                    producer=producer,
                    dial=dial,
                    limiter=limiter,
                    drain=drain,
                    clock=clock,
                ) as stream:
                    rendering = True
                    await _render(stream, sinks, console.clone(), voice)
                ended = stream.ended
            except BaseException:
                if not rendering:
                    close_sinks(sinks)
                if voice is not None:
                    voice.close()
                raise
    return ended or StreamEnded("failed", stream=cfg.stream, t=trio.current_time())


async def _produce(
    feed: Feed,
    *,
    config: LiveStreamConfig,
    drain: trio.Event,
    backend: AudioBackend | None,
    extra: dict[str, Any],
    task_status: trio.TaskStatus[str | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The microphone's producer; a device that never came back is reported, not raised.

    Channels: the mic actor owns and closes both lanes of ``feed``; a clone of the
    events lane reports a device failure after the start.

    Raises:
        ConfigError, InputError: no PortAudio, no such device, or it cannot be
            opened (before ``started``).
    """
    from adapters.audio.backend import DeviceFailed

    started = False
    errors = feed.events.clone()
    async with feed.audio, feed.events, errors:
        try:
            with unwrap_single_group():
                async with trio.open_nursery() as inner:
                    stats = await inner.start(
                        functools.partial(
                            mic.run,
                            outbox=feed.audio,
                            events=feed.events,
                            config=config.mic,
                            backend=backend,
                            stop=drain,
                            **extra,
                        )
                    )
                    device = stats.device.name if stats.device else str(config.mic.device)
                    log.info("live.started", device=device, device_rate=stats.rate)
                    started = True
                    task_status.started(f"device:{device}")
        except DeviceFailed as exc:
            if not started:
                raise
            log.error("capture.failed", error=str(exc))
            await errors.send(
                StreamError("device", str(exc), stream=config.mic.stream, t=trio.current_time())
            )


def _open_outputs(config: LiveStreamConfig) -> list[Sink]:
    return open_outputs(
        config.out_dir,
        config.output_stem,
        config.formats,
        config.session.translation,
        config.voice_dir,
        config.layout,
    )


async def _render(
    stream: Stream,
    sinks: list[Sink],
    console: trio.MemorySendChannel[Event],
    voice: trio.MemorySendChannel[Event] | None,
) -> None:
    """Hand every event to the renderer (files, then the console), and the translated
    voice to playback, never waiting on it: a chunk that does not fit is dropped and
    counted. Channels: closes ``console`` (via the renderer) and ``voice``."""
    dropped = 0
    render_send, render_recv = trio.open_memory_channel[Event](EDGES["session->renderer"].size)
    async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
        nursery.start_soon(
            functools.partial(renderer.run, inbox=render_recv, sinks=sinks, forward=console)
        )
        await stack.enter_async_context(render_send)
        if voice is not None:
            await stack.enter_async_context(voice)
        async for event in stream.events():
            if voice is not None and isinstance(event, TranslatedAudio):
                try:
                    voice.send_nowait(event)
                except (trio.WouldBlock, trio.BrokenResourceError):
                    dropped += 1
                    if dropped == 1 or dropped % 100 == 0:
                        log.warning("playback.chunks_dropped", dropped=dropped)
            await render_send.send(event)
