"""One file stream: the file's capture actor is the producer of an :func:`open_stream`.

Theory of operation
-------------------
::

    capture (file) ──► open_stream: resampler → session ──► Stream.events() ──► renderer ──► console

The capture actor sends straight into the stream's resampler inlet (the resampler
runs in the capture's task), so a paced frame wakes one task on its way to the
session; the stream's events are rendered in the stream's own task
(:func:`engine.actors.renderer.render`: no task and no channel between
``Stream.events()`` and the files), then forwarded to the run's console. The
capture actor is started first (:class:`~engine.stream.Producer`), so a file that
cannot be read is reported before anything connects; the output files are
created next (a bad ``--out`` likewise), then the stream's session starts.
The file starts *playing* (its real-time clock starts) when the stream's first
task has started (:class:`SessionOpened`; a failure or a retry first, reported as
:class:`StreamError` or :class:`Reconnecting`, starts it too, so nothing waits on
a stream that cannot open). A stream the task-start limit holds back (20 starts/s
for paraformer: ``--jobs 300`` starts over 15 s) therefore streams in real time
from its start, instead of playing into the session's replay buffer while it waits
and replaying that backlog in a burst: no burst on the wire, no backlog in memory,
no replay overflow under a slow budget (livetranslate: 10 starts a minute).
Ending is always a *drain* from the source: when the file ends, or when a drain
is requested (first Ctrl-C / SIGTERM), the capture actor stops and closes its
lanes; the end of input flows downstream, the resampler flushes, and the session
finishes its task (``finish-task`` … ``task-finished`` under a deadline) before
the renderer closes the files. Cancelling the stream's scope instead (the second
Ctrl-C) stops everything at once. The stream's ``StreamEnded`` is complete when
it arrives here (:mod:`engine.stream` folds the input side in); this module only
forwards it.
"""

from __future__ import annotations

import functools
import pathlib
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio

from adapters.audio._batchread import current_write_batcher
from adapters.dashscope.models import get_model
from adapters.dashscope.ws import Dialer, dial_tcp
from adapters.sinks.factory import open_sinks
from adapters.sinks.layout import DEFAULT_LAYOUT, CueLayout
from engine._stream_input import INTERRUPTED
from engine._util import unwrap_single_group
from engine.actors import capture, renderer
from engine.actors.renderer import close_sinks
from engine.actors.resampler import ResamplerInlet
from engine.config import SessionConfig, TranslationOptions
from engine.errors import ConfigError, InputError
from engine.events import Event, StreamEnded, StreamError, StreamStarted
from engine.stream import StreamConfig, open_stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from adapters.sinks.base import Sink
    from engine.messages import AudioOutbox, PcmBlock, RawBlock, Skip
    from engine.ratelimit import StartLimiter
    from engine.stream import Feed, Stream

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
        layout: line width and lines per cue of the SRT and VTT files.
    """

    path: str
    session: SessionConfig
    out_dir: str | None = None
    output_stem: str | None = None
    formats: tuple[str, ...] = ("txt", "srt", "vtt", "jsonl")
    speed: float | None = 1.0
    voice_dir: str | None = None
    layout: CueLayout = DEFAULT_LAYOUT


async def run_file_stream(
    config: FileStreamConfig,
    *,
    console: trio.MemorySendChannel[Event] | None = None,
    drain: trio.Event | None = None,
    dial: Dialer = dial_tcp,
    limiter: StartLimiter | None = None,
    console_if: Callable[[Event], bool] | None = None,
) -> StreamEnded:
    """Transcribe one file; return its :class:`StreamEnded`.

    Channels: takes ownership of ``console`` (a clone for this stream) and closes it.
    Only the events ``console_if`` accepts are sent to it (None: every non-audio one);
    see :func:`engine.actors.console.shown`.

    Cancellation: cancelling abandons the task at once; setting ``drain`` ends the
    stream gracefully (capture stops, the session finishes its task).

    Error handling: a bad file or output directory never raises; it is reported as a
    :class:`StreamError` on the console and a ``failed`` StreamEnded.
    """
    stream_id = config.session.stream
    sinks: list[Sink] = []
    playing = trio.Event()  # set by _render at the stream's first event after StreamStarted
    producer = functools.partial(_produce, config=config, drain=drain, sinks=sinks, playing=playing)
    opened = False
    with structlog.contextvars.bound_contextvars(stream=stream_id):
        try:
            async with open_stream(
                StreamConfig(session=config.session, source=config.path),
                producer=producer,
                dial=dial,
                limiter=limiter,
                drain=drain,
            ) as stream:
                opened = True
                await _render(stream, sinks, console, console_if, playing)
            if stream.ended is not None:
                return stream.ended
            return StreamEnded("failed", stream=stream_id, t=trio.current_time())
        except (InputError, ConfigError) as exc:
            if opened:
                raise
            close_sinks(sinks)
            return await _report_failure(stream_id, exc, console)


async def _produce(
    feed: Feed,
    *,
    config: FileStreamConfig,
    drain: trio.Event | None,
    sinks: list[Sink],
    playing: trio.Event,
    task_status: trio.TaskStatus[str | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The file's producer: start the capture, create the outputs, then push (from
    when ``playing`` is set) until the file ends or ``drain`` is set (Channels: closes
    both lanes of ``feed``).

    A drain before the end of the file stops reading it; what was read is still
    sent, and the part never sent is reported as ``StreamError("interrupted")``,
    which makes the stream end ``interrupted``.

    Raises:
        InputError: the file cannot be read (before ``started``).
        ConfigError: an output file cannot be created (before ``started``).
    """
    # The drain stops the capture (drain_scope); the watcher has a scope of its own,
    # so ending it never cancels a scope the capture's unwinding passes through.
    drain_scope, watch_scope = trio.CancelScope(), trio.CancelScope()
    broken: list[InputError] = []  # a decoding failure after the start
    counts = capture.CaptureStats()  # what was handed to the stream
    stream = config.session.stream
    async with feed.audio, feed.events:
        with unwrap_single_group():  # one cause for open_stream to raise
            async with trio.open_nursery() as inner:
                # The capture sends straight into the stream's resampler inlet: no relay.
                info = await inner.start(
                    _capture, feed.audio, config, drain_scope, watch_scope, broken, counts, playing
                )
                if drain is not None:
                    inner.start_soon(_drain_on, drain, drain_scope, watch_scope)
                # in the run's write batcher: one hop for every stream's outputs at start
                opened = functools.partial(_open_outputs, config)
                sinks.extend(await current_write_batcher().run_sync(opened))
                log.info("stream.started", source_rate=info.rate)
                task_status.started(None)
        for exc in broken:
            # The file broke mid-way: what was decoded is still transcribed and finished.
            log.error("capture.failed", error=str(exc))
            await feed.events.send(
                StreamError("input", str(exc), stream=stream, t=trio.current_time())
            )
        if drain_scope.cancelled_caught:
            # The stage's count, not the capture's: a send cancelled while delivering
            # its frames had handed its block over (the file is the stage's one producer).
            audio = feed.audio
            sent_s = (
                audio.taken_s if isinstance(audio, ResamplerInlet) else counts.samples / info.rate
            )
            message = interrupted_message(sent_s, info.duration_s)
            log.warning("capture.interrupted", message=message)
            await feed.events.send(
                StreamError(
                    INTERRUPTED, message, permanent=False, stream=stream, t=trio.current_time()
                )
            )


def interrupted_message(sent_s: float, duration_s: float | None) -> str:
    """``interrupted at 4.1 s of 12.6 s: 4.1–12.6 s not sent`` (the rest when unknown)."""
    if duration_s is None:
        return f"interrupted at {sent_s:.1f} s: the rest of the file was not sent"
    return (
        f"interrupted at {sent_s:.1f} s of {duration_s:.1f} s: "
        f"{sent_s:.1f}–{duration_s:.1f} s not sent"
    )


async def _capture(
    outbox: AudioOutbox[PcmBlock | RawBlock | Skip],
    config: FileStreamConfig,
    drain_scope: trio.CancelScope,
    watch_scope: trio.CancelScope,
    broken: list[InputError],
    counts: capture.CaptureStats,
    playing: trio.Event,
    task_status: trio.TaskStatus[capture.SourceInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The capture actor, in the drain scope: a drain stops reading the file (or
    waiting for ``playing``).

    A bad file raises before ``started``; a decoding failure later is kept in
    ``broken``, so the blocks read before it still go out. When it ends, the drain
    watcher (``watch_scope``) is stopped.
    """
    status = _Status(task_status)
    try:
        with drain_scope:
            await capture.run(
                outbox=outbox,
                config=capture.FileCaptureConfig(path=config.path, speed=config.speed),
                task_status=status,
                stats=counts,
                start=playing,
                stream_rate=get_model(config.session.model).sample_rate,  # as open_stream's
            )
    except InputError as exc:
        if not status.done:
            raise
        broken.append(exc)
    finally:
        watch_scope.cancel()


class _Status:
    """A ``task_status`` that remembers whether ``started`` was called."""

    def __init__(self, inner: trio.TaskStatus[capture.SourceInfo]) -> None:
        self.inner = inner
        self.done = False

    def started(self, value: capture.SourceInfo | None = None) -> None:
        assert value is not None
        self.done = True
        self.inner.started(value)


async def _drain_on(drain: trio.Event, scope: trio.CancelScope, watch: trio.CancelScope) -> None:
    with watch:
        await drain.wait()
        scope.cancel()


async def _render(
    stream: Stream,
    sinks: list[Sink],
    console: trio.MemorySendChannel[Event] | None,
    console_if: Callable[[Event], bool] | None,
    playing: trio.Event,
) -> None:
    """Render every event of the stream in this task (files, then the console).

    Sets ``playing`` at the stream's first event after :class:`StreamStarted` (see
    the module's theory of operation), and when the events end.
    """
    try:
        await renderer.render(
            _setting_playing(stream.events(), playing),
            sinks=sinks,
            forward=console,
            forward_if=console_if,
        )
    finally:
        playing.set()


async def _setting_playing(
    events: AsyncIterator[Event], playing: trio.Event
) -> AsyncIterator[Event]:
    async for event in events:
        if not playing.is_set() and not isinstance(event, StreamStarted):
            playing.set()
        yield event


def _open_outputs(config: FileStreamConfig) -> list[Sink]:
    stem = config.output_stem or pathlib.Path(config.path).stem
    return open_outputs(
        config.out_dir,
        stem,
        config.formats,
        config.session.translation,
        config.voice_dir,
        config.layout,
    )


def open_outputs(
    out_dir: str | None,
    stem: str,
    formats: tuple[str, ...],
    translation: TranslationOptions | None,
    voice_dir: str | None,
    layout: CueLayout = DEFAULT_LAYOUT,
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
            layout=layout,
        )
    if voice_dir is not None:
        from adapters.sinks.voice import VoiceWavSink  # translated speech only

        path = pathlib.Path(voice_dir) / f"{stem}.voice.wav"
        try:
            sinks.append(VoiceWavSink(path))
        except OSError as exc:
            close_sinks(sinks)
            raise ConfigError(
                f"cannot create {path}: {exc.strerror or exc}; fix: check --audio-out"
            ) from None
    return sinks


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
