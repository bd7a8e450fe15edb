"""One file stream, composed from actors: capture → resampler → session → renderer.

Theory of operation
-------------------
Each stream is a nursery of four actors joined by the bounded edges of
``engine.wiring``. Ending is always a *drain* from the source: when the file
ends, or when a drain is requested (first Ctrl-C / SIGTERM), the capture actor
stops and closes its outbox; the end of input flows downstream, the resampler
flushes, and the session finishes its task (``finish-task`` … ``task-finished``
under a deadline) before the renderer closes the files. Cancelling the stream's
scope instead (the second Ctrl-C) stops everything at once.
"""

from __future__ import annotations

import functools
import pathlib
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio

from adapters.dashscope.models import endpoint, get_model
from adapters.dashscope.ws import Dialer, dial_tcp
from adapters.sinks.factory import open_sinks
from adapters.sinks.voice import VoiceWavSink
from engine._util import unwrap_single_group
from engine.actors import capture, renderer, resampler, session
from engine.actors.renderer import close_sinks
from engine.clock import iso_utc, system_clock
from engine.config import SessionConfig, TranslationOptions
from engine.errors import ConfigError, InputError
from engine.events import AudioFrame, Event, StreamEnded, StreamError, StreamStarted
from engine.messages import RawBlock
from engine.wiring import EDGES

if TYPE_CHECKING:
    from adapters.sinks.base import Sink
    from engine.ratelimit import StartLimiter

__all__ = ["FileStreamConfig", "open_outputs", "run_file_stream"]

log = structlog.get_logger("steno.pipeline")


class FileStreamConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A file to transcribe: where it goes, how fast, and what to write.

    Attributes:
        path: the audio file.
        session: the session settings (model, endpoint, key, deadlines).
        out_dir: where output files go; None writes no files.
        output_stem: the output files' name without extension (default: the audio
            file's stem); streams of one run need distinct stems.
        formats: output formats (``txt``, ``srt``, ``vtt``, ``jsonl``).
        speed: real-time multiplier; None sends as fast as the service accepts.
        voice_dir: where translated speech goes (``<stem>.voice.wav``, 24 kHz);
            None writes none. Needs a model that speaks (livetranslate).
    """

    path: str
    session: SessionConfig
    out_dir: str | None = None
    output_stem: str | None = None
    formats: tuple[str, ...] = ("txt", "srt", "vtt", "jsonl")
    speed: float | None = 1.0
    voice_dir: str | None = None


async def run_file_stream(
    config: FileStreamConfig,
    *,
    console: trio.MemorySendChannel[Event] | None = None,
    drain: trio.Event | None = None,
    dial: Dialer = dial_tcp,
    limiter: StartLimiter | None = None,
) -> StreamEnded:
    """Transcribe one file; return its :class:`StreamEnded`.

    Channels: takes ownership of ``console`` (a clone for this stream) and closes it.

    Cancellation: cancelling abandons the task at once; setting ``drain`` ends the
    stream gracefully (capture stops, the session finishes its task).

    Error handling: a bad file or output directory never raises; it is reported as a
    :class:`StreamError` on the console and a ``failed`` StreamEnded.
    """
    stream = config.session.stream
    rate = get_model(config.session.model).sample_rate
    events_send, events_recv = trio.open_memory_channel[Event](EDGES["session->renderer"].size)
    failure: InputError | ConfigError | None = None
    with structlog.contextvars.bound_contextvars(stream=stream):
        async with trio.open_nursery() as nursery:
            drain_scope = trio.CancelScope()
            raw_send, raw_recv = trio.open_memory_channel[RawBlock](
                EDGES["capture->resampler"].size
            )
            try:
                info = await nursery.start(
                    _capture, raw_send, events_send.clone(), config, drain_scope
                )
                sinks = await trio.to_thread.run_sync(_open_outputs, config)
            except (InputError, ConfigError) as exc:
                raw_recv.close()
                events_send.close()
                events_recv.close()
                failure = exc
                nursery.cancel_scope.cancel()
            else:
                if drain is not None:
                    nursery.start_soon(_drain_on, drain, drain_scope)
                ended = await _run_actors(
                    config,
                    info.rate,
                    rate,
                    raw_recv,
                    (events_send, events_recv),
                    sinks,
                    console,
                    dial,
                    limiter,
                    drain,
                )
                nursery.cancel_scope.cancel()
                return ended
        # Reported outside the nursery: its scope is cancelled, so sending to the
        # console in there raises Cancelled, which the nursery swallows, and the
        # stream would end with no error line and no StreamEnded (returning None).
        assert failure is not None
        return await _report_failure(stream, failure, console)


async def _capture(
    raw_send: trio.MemorySendChannel[RawBlock],
    errors: trio.MemorySendChannel[Event],
    config: FileStreamConfig,
    drain_scope: trio.CancelScope,
    task_status: trio.TaskStatus[capture.SourceInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the capture actor in the drain scope; a decode error after the start is reported."""
    started = False
    async with errors:
        try:
            with drain_scope, unwrap_single_group():
                async with trio.open_nursery() as inner:
                    info = await inner.start(
                        functools.partial(
                            capture.run,
                            outbox=raw_send,
                            config=capture.FileCaptureConfig(path=config.path, speed=config.speed),
                        )
                    )
                    started = True
                    task_status.started(info)
        except InputError as exc:
            if not started:
                raise
            # The file broke mid-way: what was decoded is still transcribed and finished.
            log.error("capture.failed", error=str(exc))
            await errors.send(
                StreamError("input", str(exc), stream=config.session.stream, t=trio.current_time())
            )


async def _drain_on(drain: trio.Event, scope: trio.CancelScope) -> None:
    await drain.wait()
    scope.cancel()


def _open_outputs(config: FileStreamConfig) -> list[Sink]:
    stem = config.output_stem or pathlib.Path(config.path).stem
    return open_outputs(
        config.out_dir, stem, config.formats, config.session.translation, config.voice_dir
    )


def open_outputs(
    out_dir: str | None,
    stem: str,
    formats: tuple[str, ...],
    translation: TranslationOptions | None,
    voice_dir: str | None,
) -> list[Sink]:
    """A stream's files: the formats under ``out_dir`` (bilingual when translating)
    and ``<stem>.voice.wav`` under ``voice_dir``. Blocking (call from a thread).

    Raises:
        ConfigError: a bad format or a file that cannot be created (nothing is left open).
    """
    sinks: list[Sink] = []
    if out_dir is not None:
        sinks = open_sinks(
            pathlib.Path(out_dir),
            stem,
            formats,
            translation.targets if translation is not None else (),
            transcript=translation is None or translation.transcription,
        )
    if voice_dir is not None:
        path = pathlib.Path(voice_dir) / f"{stem}.voice.wav"
        try:
            sinks.append(VoiceWavSink(path))
        except OSError as exc:
            close_sinks(sinks)
            raise ConfigError(
                f"cannot create {path}: {exc.strerror or exc}; fix: check --audio-out"
            ) from None
    return sinks


async def _run_actors(
    config: FileStreamConfig,
    source_rate: int,
    rate: int,
    raw_recv: trio.MemoryReceiveChannel[RawBlock],
    events: tuple[trio.MemorySendChannel[Event], trio.MemoryReceiveChannel[Event]],
    sinks: list[Sink],
    console: trio.MemorySendChannel[Event] | None,
    dial: Dialer,
    limiter: StartLimiter | None,
    drain: trio.Event | None,
) -> StreamEnded:
    stream = config.session.stream
    frames_send, frames_recv = trio.open_memory_channel[AudioFrame](
        EDGES["resampler->session"].size
    )
    events_send, events_recv = events
    render_send, render_recv = trio.open_memory_channel[Event](EDGES["session->renderer"].size)
    ended: list[StreamEnded] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: resampler.run(
                inbox=raw_recv,
                outbox=frames_send,
                config=resampler.ResamplerConfig(
                    out_rate=rate, frame_ms=config.session.frame_ms, stream=stream
                ),
            )
        )
        nursery.start_soon(lambda: renderer.run(inbox=render_recv, sinks=sinks, forward=console))
        started = StreamStarted(
            config.path,
            config.session.model,
            rate,
            endpoint=endpoint(config.session.model, config.session.url),
            started_at=iso_utc(system_clock()),
            stream=stream,
            t=trio.current_time(),
        )
        nursery.start_soon(_tap, events_recv, render_send, started, ended)
        log.info("stream.started", source_rate=source_rate, rate=rate)
        await session.run(
            inbox=frames_recv,
            outbox=events_send,
            config=config.session,
            dial=dial,
            limiter=limiter,
            drain=drain,
        )
    return ended[0] if ended else StreamEnded("failed", stream=stream, t=trio.current_time())


async def _tap(
    inbox: trio.MemoryReceiveChannel[Event],
    outbox: trio.MemorySendChannel[Event],
    first: Event,
    ended: list[StreamEnded],
) -> None:
    """Forward the session's events to the renderer, remembering the StreamEnded.

    An input error reported mid-stream turns an ``ok`` ending into ``partial``.
    """
    errors = 0
    async with inbox, outbox:
        await outbox.send(first)
        async for event in inbox:
            if isinstance(event, StreamError):
                errors += 1
            if isinstance(event, StreamEnded):
                if errors and event.status == "ok":
                    event = msgspec.structs.replace(event, status="partial")
                ended.append(event)
            await outbox.send(event)


async def _report_failure(
    stream: str, exc: Exception, console: trio.MemorySendChannel[Event] | None
) -> StreamEnded:
    now = trio.current_time()
    kind = "input" if isinstance(exc, InputError) else "config"
    log.error("stream.failed", kind=kind, error=str(exc))
    ended = StreamEnded("failed", stream=stream, t=now)
    if console is not None:
        async with console:
            await console.send(StreamError(kind, str(exc), stream=stream, t=now))
            await console.send(ended)
    return ended
