"""Where a daemon stream's audio comes from: files, network streams via ffmpeg, stdin, a mic.

:func:`open_source` is an async context manager yielding an async iterator of
:data:`SourceItem`: mostly :class:`~engine.messages.RawBlock` (mono float32
at the source's rate, about ``block_ms`` each); a microphone also yields
:class:`~engine.messages.Skip` (a capture gap: the stream skips that time)
and its own events (``DeviceLost``, ``DeviceRestored``; positions count from the
opening). Live sources pace themselves; a file is paced on an absolute schedule
like the file capture actor.

* ``file`` — :func:`adapters.audio.files.open_audio_source` (soundfile or ffmpeg),
  once or in a loop.
* ``url`` — ``adapters/audio/files.py`` only opens local regular files (it stats
  the path and refuses pipes), so network streams get their own small ffmpeg
  reader here: ``ffmpeg -i URL`` → s16le mono at the configured rate on a pipe;
  stderr is drained continuously (a live stream can log for weeks), and a
  watchdog kills an ffmpeg that delivers nothing for ``timeout-s``. A broken or
  ended stream raises :class:`SourceLost` (transient: the stream reopens it).
* ``stdin`` — raw interleaved int16 LE PCM from a file descriptor.
* ``mic`` — a capture device through the same actor as ``steno listen``
  (:mod:`engine.actors.mic`: native rate and channels, a bounded hand-off, hot-plug
  with backoff). Its holes (hand-off overflow, a device outage) come as lost
  ``Skip`` s rather than silence, so an outage of hours is not pushed at once. A
  device that is missing or cannot be opened raises :class:`SourceLost`: a 24/7
  stream waits for it to be plugged in (with the stream's backoff).

Every opener takes ``(spec, ctx)``; ``ctx.openers`` overrides any kind (tests,
synthetic sources).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import msgspec
import structlog
import trio

from adapters.audio.backend import DeviceFailed, DeviceNotFound
from adapters.audio.files import open_audio_source
from adapters.audio.pcm import to_mono_float32
from adapters.children import open_child
from engine._util import unwrap_single_group
from engine.actors import mic
from engine.actors._handoff import in_thread
from engine.daemon.config_sources import FileSource, MicSource, StdinSource, UrlSource
from engine.daemon.keys import redact_url
from engine.errors import ConfigError, StenoError
from engine.events import DeviceLost, DeviceRestored, Event
from engine.messages import RawBlock, Skip

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping

    from adapters.audio.backend import AudioBackend
    from adapters.audio.files import ToolFinder
    from engine.daemon.config_sources import SourceSpec

__all__ = [
    "BlockSource",
    "SourceContext",
    "SourceItem",
    "SourceLost",
    "SourceOpener",
    "SourceTimeline",
    "describe_source",
    "is_live",
    "open_source",
    "source_kind",
]

log = structlog.get_logger("steno.daemon.source")

_READ: Final = 1 << 16


class SourceLost(StenoError):
    """A live source broke or ended (transient: the stream reopens it after a backoff)."""


SourceItem: TypeAlias = RawBlock | Skip | Event
BlockSource: TypeAlias = "contextlib.AbstractAsyncContextManager[AsyncIterator[SourceItem]]"
SourceOpener: TypeAlias = "Callable[[SourceSpec, SourceContext], BlockSource]"

_MIC_QUEUE: Final = 16  # blocks; the mic's own drop-oldest hand-off absorbs more


@dataclass(frozen=True)
class SourceContext:
    """What sources need from the process: tools, stdin, audio devices, opener overrides.

    Attributes:
        find_tool: looks up ffmpeg.
        stdin_fd: the file descriptor of ``stdin`` sources.
        block_ms: audio per block.
        openers: opener overrides by source kind (tests, synthetic sources).
        mic: the capture settings every ``mic`` source starts from (its device,
            channels, block length, timeline rate and hole handling are set per source).
        audio_backend: PortAudio (None: sounddevice's, loaded on first use); tests
            pass ``adapters.audio.fakeportaudio.FakeBackend``.
        run_blocking: runs a blocking PortAudio call (default: a worker thread).
        timeline_rate: the stream's session rate (event positions); set per stream.
    """

    find_tool: ToolFinder = shutil.which
    stdin_fd: int = 0
    block_ms: int = 100
    openers: Mapping[str, SourceOpener] = field(default_factory=dict)
    mic: mic.MicConfig = field(default_factory=mic.MicConfig)
    audio_backend: AudioBackend | None = None
    run_blocking: Callable[[Callable[[], Any]], Awaitable[Any]] = in_thread
    timeline_rate: int = 16000


class SourceTimeline:
    """Source time since a stream began (audio, skips, outages), exact, to place a
    source's own events: their positions count from the source's latest opening."""

    def __init__(self) -> None:
        self.elapsed = Fraction(0)
        self.origin = Fraction(0)  # when the latest opening of the source began

    def passed(self, samples: int, rate: int) -> None:
        self.elapsed += Fraction(samples, rate)

    def reopened(self) -> None:
        self.origin = self.elapsed

    def place(self, event: Event, stream: str) -> Event:
        """The source's event on the stream's timeline, stamped with the stream id."""
        if isinstance(event, DeviceLost | DeviceRestored):
            shift = round(self.origin * event.rate)
            return msgspec.structs.replace(event, at=event.at + shift, stream=stream)
        return msgspec.structs.replace(event, stream=stream)


def source_kind(spec: SourceSpec) -> str:
    tag = type(spec).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def is_live(spec: SourceSpec) -> bool:
    """Live sources keep wall time: their outages advance the stream's timeline."""
    return isinstance(spec, UrlSource | MicSource)


def describe_source(spec: SourceSpec) -> str:
    """A loggable description (credentials in URLs redacted)."""
    match spec:
        case FileSource(path=path):
            return f"file:{path}"
        case UrlSource(url=url):
            return redact_url(url)
        case StdinSource(rate=rate, channels=channels):
            return f"stdin:s16le/{rate}/{channels}ch"
        case MicSource(device=device):
            return f"mic:{device if device is not None else 'default'}"
    raise AssertionError(spec)  # pragma: no cover


def open_source(spec: SourceSpec, ctx: SourceContext) -> BlockSource:
    """Open ``spec``; use as ``async with open_source(spec, ctx) as blocks: async for b in blocks``.

    Raises:
        InputError: a file that is missing or not audio (permanent).
        ConfigError: a source this process cannot open (no ffmpeg, no PortAudio).
        SourceLost: a live source broke, or a device is missing (transient), also
            from the iteration.
    """
    override = ctx.openers.get(source_kind(spec))
    if override is not None:
        return override(spec, ctx)
    match spec:
        case FileSource():
            return _file_blocks(spec, ctx)
        case UrlSource():
            return _url_blocks(spec, ctx)
        case StdinSource():
            return _stdin_blocks(spec, ctx)
        case MicSource():
            return _mic_items(spec, ctx)
    raise AssertionError(spec)  # pragma: no cover


# ------------------------------------------------------------------- file


@contextlib.asynccontextmanager
async def _file_blocks(
    spec: FileSource, ctx: SourceContext
) -> AsyncIterator[AsyncIterator[RawBlock]]:
    first = await open_audio_source(spec.path, block_ms=ctx.block_ms, find_tool=ctx.find_tool)

    async def blocks() -> AsyncGenerator[RawBlock, None]:
        source = first
        t0 = trio.current_time()
        played = 0.0  # seconds of audio sent, over every loop
        while True:
            async with source:
                async for samples in source:
                    played += len(samples) / source.rate
                    await trio.sleep_until(t0 + played / spec.speed)
                    yield RawBlock(samples, source.rate)
            if not spec.loop:
                return
            source = await open_audio_source(
                spec.path, block_ms=ctx.block_ms, find_tool=ctx.find_tool
            )

    iterator = blocks()
    try:
        yield iterator
    finally:
        with trio.CancelScope(shield=True):
            await iterator.aclose()
            await first.aclose()


# -------------------------------------------------------------------- url


@contextlib.asynccontextmanager
async def _url_blocks(
    spec: UrlSource, ctx: SourceContext
) -> AsyncIterator[AsyncIterator[RawBlock]]:
    ffmpeg = ctx.find_tool("ffmpeg")
    if ffmpeg is None:
        raise ConfigError("url sources need ffmpeg; fix: apt-get install ffmpeg")
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error"]
    if spec.realtime:
        cmd.append("-re")
    cmd += ["-i", spec.url, "-vn", "-map", "0:a:0", "-ac", "1", "-ar", str(spec.rate)]
    cmd += ["-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"]
    try:
        proc = await open_child(cmd)  # its own process group: we stop it (adapters.children)
    except OSError as exc:
        raise ConfigError(f"cannot run {ffmpeg} ({exc}); fix: apt-get install ffmpeg") from None
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr
    tail: collections.deque[str] = collections.deque(maxlen=4)
    shown = redact_url(spec.url)

    async def drain_stderr() -> None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            pending = b""
            while chunk := await stderr.receive_some(_READ):
                *lines, pending = (pending + chunk).split(b"\n")
                pending = pending[-4096:]
                tail.extend(
                    line.decode(errors="replace").replace(spec.url, shown).strip()
                    for line in lines
                    if line.strip()
                )

    async def blocks() -> AsyncGenerator[RawBlock, None]:
        want = 2 * max(1, spec.rate * ctx.block_ms // 1000)
        buf = bytearray()
        while True:
            chunk: bytes | bytearray = b""
            with trio.move_on_after(spec.timeout_s):
                chunk = await stdout.receive_some(_READ)
                if not chunk:
                    break
            if not chunk:
                raise SourceLost(f"{shown}: no audio for {spec.timeout_s:g} s")
            buf += chunk
            while len(buf) >= want:
                pcm, buf[:] = bytes(buf[:want]), buf[want:]
                yield RawBlock(to_mono_float32(pcm, 1), spec.rate)
        with trio.move_on_after(2.0):
            code = await proc.wait()
        detail = tail[-1] if tail else f"ffmpeg exit code {proc.returncode}"
        raise SourceLost(f"{shown}: the stream ended ({detail if code else 'end of stream'})")

    # Unwrapped: the caller must see SourceLost itself, not a group holding it.
    with unwrap_single_group():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_stderr)
            iterator = blocks()
            try:
                yield iterator
            finally:
                with trio.CancelScope(shield=True):
                    await iterator.aclose()
                    if proc.returncode is None:
                        proc.kill()
                    await proc.wait()
                    await stdout.aclose()
                    await stderr.aclose()
                nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ stdin


@contextlib.asynccontextmanager
async def _stdin_blocks(
    spec: StdinSource, ctx: SourceContext
) -> AsyncIterator[AsyncIterator[RawBlock]]:
    stream = trio.lowlevel.FdStream(os.dup(ctx.stdin_fd))
    frame = 2 * spec.channels
    want = frame * max(1, spec.rate * ctx.block_ms // 1000)

    async def blocks() -> AsyncGenerator[RawBlock, None]:
        buf = bytearray()
        while chunk := await stream.receive_some(_READ):
            buf += chunk
            while len(buf) >= want:
                pcm, buf[:] = bytes(buf[:want]), buf[want:]
                yield RawBlock(to_mono_float32(pcm, spec.channels), spec.rate)
        whole = len(buf) // frame * frame
        if whole:
            yield RawBlock(to_mono_float32(bytes(buf[:whole]), spec.channels), spec.rate)

    iterator = blocks()
    try:
        yield iterator
    finally:
        with trio.CancelScope(shield=True):
            await iterator.aclose()
            await stream.aclose()


# -------------------------------------------------------------------- mic


@contextlib.asynccontextmanager
async def _mic_items(
    spec: MicSource, ctx: SourceContext
) -> AsyncIterator[AsyncIterator[SourceItem]]:
    if spec.rate is not None:
        log.warning("daemon.source.mic_rate_ignored", rate=spec.rate, note="native rate is used")
    config = msgspec.structs.replace(
        ctx.mic,
        device=spec.device,
        max_channels=spec.channels,
        block_ms=ctx.block_ms,
        timeline_rate=ctx.timeline_rate,
        holes="skip",
    )
    send, recv = trio.open_memory_channel[SourceItem](_MIC_QUEUE)
    try:
        with unwrap_single_group():
            async with recv, trio.open_nursery() as nursery:
                await nursery.start(
                    functools.partial(
                        mic.run,
                        outbox=send,
                        events=send.clone(),
                        config=config,
                        backend=ctx.audio_backend,
                        run_blocking=ctx.run_blocking,
                    )
                )
                try:
                    yield recv
                finally:
                    nursery.cancel_scope.cancel()  # the mic closes its device (shielded)
    except (DeviceNotFound, DeviceFailed) as exc:
        # Missing, unplugged or broken: a 24/7 stream waits for the device.
        raise SourceLost(f"{describe_source(spec)}: {exc}") from None
