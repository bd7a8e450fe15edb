"""The playback actor: translated voice to a PortAudio output device, never in the way.

Theory of operation
-------------------
The actor reads a stream's events and plays every
:class:`~engine.events.TranslatedAudio` chunk (16-bit mono, 24 kHz) on an output
device; other events are ignored. Playback is optional: nothing it meets (overload,
a slow or dead device) may stall or fail the stream's transcription.

**Hand-off.** PortAudio pulls audio from its own thread through the stream
callback, which must never block. Between the actor (trio) and the callback sits a
:class:`PcmRing`: a fixed byte ring of ``capacity_s`` seconds, guarded by a lock held
only for a memory copy. The callback copies what is queued and plays silence for
the rest; it never waits for trio. The actor never waits for the callback either:
when a chunk does not fit, the *oldest* queued audio is dropped (policy
drop-oldest), counted in :class:`PlaybackStats` and logged as ``playback.overflow``
at most once per ``log_interval_s``.

**Underruns.** Silence while nothing is queued is idle, not an error. An *underrun*
is a gap inside one response: the ring ran dry after playing part of a response,
and more of that same response arrived later. It is counted when the late chunk
arrives, with the silence that was played (at callback-block resolution).

**Rates.** The device is opened mono int16 at ``rate`` (24 kHz); if it refuses that
rate, at its native rate, and the chunks are then resampled with soxr (one
continuous resampler per response), as are chunks at any other rate.

**Device loss.** As measured (``/work/shared/research/AUDIO.md``), a dying device
calls ``finished_callback`` and leaves the stream inactive but not stopped; a device
that stops calling back (no callback for ``stall_timeout_s``) counts too. Playback
then stops with one ``playback.device_lost`` warning: the stream is closed (never
restarted) and later audio is discarded (counted), while the actor keeps reading its
inbox so the sender never blocks or breaks. Blocking PortAudio calls run through
:class:`~engine.actors._handoff.BoundedCalls`, so a wedged device cannot hang it.

**Layout.** :class:`~engine.actors._playstream.PlayStream` owns the device side
(opening, the callback, loss); this module feeds it from the inbox and drains it.

**The end.** When the inbox ends, the queued audio plays out (bounded by its length
plus ``drain_margin_s``), the stream plays silence for the device's latency plus
``tail_s`` (measured: stopping the ALSA ``pulse`` device otherwise cuts the last
~40 ms), then it is stopped and closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import msgspec
import structlog
import trio

from adapters.audio.backend import DeviceFailed
from adapters.audio.devices import resolve_output
from adapters.audio.portaudio import load_backend
from engine.actors._handoff import BoundedCalls, in_thread
from engine.actors._playring import PcmRing, PlaybackStats
from engine.actors._playstream import PlayStream
from engine.errors import ConfigError
from engine.events import TranslatedAudio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from adapters.audio.backend import OutputBackend
    from engine.events import Event

__all__ = [
    "PcmRing",
    "PlaybackConfig",
    "PlaybackStats",
    "output_available",
    "output_problem",
    "run",
]

log = structlog.get_logger("steno.playback")


class PlaybackConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which device, and how playback copes with overload and loss.

    Attributes:
        device: a name (exact or unique substring), an index, or None for the default.
        rate: the rate to open the device at (the voice's rate; the device's native
            rate is tried next).
        capacity_s: audio the ring holds; beyond it the oldest is dropped.
        block_ms: audio per PortAudio callback; 0 lets PortAudio choose.
        watch_interval_s: how often the stream's state is polled.
        stall_timeout_s: no callback for this long counts as a loss (None: never).
        drain_margin_s: at the end, queued audio may play for its length plus this.
        tail_s: after the queue ran empty, the stream plays silence for the device's
            latency plus this before it stops, so the end is heard (PortAudio's stop
            does not wait for the ALSA ``pulse`` plugin's buffer).
        call_timeout_s: a PortAudio call (open, close) that takes longer is abandoned.
        log_interval_s: at most one ``playback.overflow`` line per interval.
        stream: the stream id, bound to log lines.
    """

    device: str | int | None = None
    rate: int = 24000
    capacity_s: float = 10.0
    block_ms: int = 20
    watch_interval_s: float = 0.25
    stall_timeout_s: float | None = 5.0
    drain_margin_s: float = 1.0
    tail_s: float = 0.05
    call_timeout_s: float = 5.0
    log_interval_s: float = 10.0
    stream: str = ""

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.block_ms < 0 or not self.capacity_s * self.rate >= 1:
            raise ValueError(f"bad rate, block_ms or capacity_s in {self}")
        if self.watch_interval_s <= 0 or self.call_timeout_s <= 0:
            raise ValueError(f"watch_interval_s and call_timeout_s must be positive in {self}")


def output_problem(
    device: str | int | None = None, *, backend: OutputBackend | None = None
) -> str | None:
    """Why playback on ``device`` (None: the default output) cannot start, in one line,
    or None when it can.

    Blocking (imports PortAudio, lists devices): call it before the trio run or in a
    thread. Never raises for a missing or broken audio stack.
    """
    try:
        resolve_output(backend if backend is not None else load_backend(), device)
    except (ConfigError, DeviceFailed) as exc:
        return str(exc)
    return None


def output_available(
    device: str | int | None = None, *, backend: OutputBackend | None = None
) -> bool:
    """Whether playback on ``device`` could start (see :func:`output_problem`). Blocking."""
    return output_problem(device, backend=backend) is None


@final
class _Player:
    """Feeds one playback stream from the inbox: conversion, overflow notes, the drain."""

    def __init__(self, config: PlaybackConfig, stream: PlayStream) -> None:
        self.config, self.stream, self.stats = config, stream, stream.stats
        self.response: str | None = None
        self.tag = -1
        self.unlogged_drop = 0
        self.last_log_t = -float("inf")

    async def consume(self, inbox: trio.MemoryReceiveChannel[Event]) -> None:
        async for event in inbox:
            if not isinstance(event, TranslatedAudio):
                continue
            ring, converter = self.stream.ring, self.stream.converter
            if self.stats.lost is not None or ring is None or converter is None:
                self.stats.discarded_frames += len(event.pcm) // 2
                continue
            if event.response_id != self.response:
                self.response, self.tag = event.response_id, self.tag + 1
            try:
                pcm = converter.convert(event.pcm, event.rate, self.tag)
            except ValueError as exc:
                log.warning("playback.bad_chunk", response_id=event.response_id, error=str(exc))
                continue
            if dropped := ring.push(pcm, self.tag):
                self.note_overflow(dropped)

    def note_overflow(self, dropped: int) -> None:
        self.unlogged_drop += dropped
        now = trio.current_time()
        if now - self.last_log_t >= self.config.log_interval_s:
            self.log_overflow()
            self.last_log_t = now

    def log_overflow(self) -> None:
        stats, rate = self.stats, max(self.stats.rate, 1)
        log.warning(
            "playback.overflow",
            dropped_s=round(self.unlogged_drop / rate, 3),
            total_dropped_s=round(stats.dropped_frames / rate, 3),
            overflows=stats.overflows,
            capacity_s=self.config.capacity_s,
        )
        self.unlogged_drop = 0

    async def drain(self) -> None:
        """Let the queued audio play out (for at most its length plus the margin), then
        the device's latency plus ``tail_s`` of silence."""
        stream = self.stream
        ring, converter = stream.ring, stream.converter
        if ring is None or converter is None or self.stats.lost is not None:
            return
        ring.push(converter.flush(), self.tag)
        stream.idle = trio.Event()  # before looking: an emptying from now on sets this one
        cfg = self.config
        if ring.queued_frames:
            with trio.move_on_after(ring.queued_frames / self.stats.rate + cfg.drain_margin_s):
                await stream.idle.wait()
        handle = stream.handle
        if handle is not None and not ring.queued_frames and self.stats.played_frames:
            try:
                latency = min(max(handle.latency, 0.0), 1.0)
            except DeviceFailed:
                latency = 0.0
            await trio.sleep(latency + cfg.tail_s)  # the last block is still on its way


async def run(
    *,
    inbox: trio.MemoryReceiveChannel[Event],
    config: PlaybackConfig,
    backend: OutputBackend | None = None,
    run_blocking: Callable[[Callable[[], Any]], Awaitable[Any]] = in_thread,
    task_status: trio.TaskStatus[PlaybackStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Play the translated voice of ``inbox`` until it ends.

    Args:
        inbox: the stream's events; only :class:`~engine.events.TranslatedAudio` is used.
        config: the device, the ring's capacity and the loss policy.
        backend: PortAudio (default: :func:`~adapters.audio.portaudio.load_backend`).
        run_blocking: runs a blocking PortAudio call (default: a worker thread,
            abandoned after ``call_timeout_s``).
        task_status: gets the live :class:`PlaybackStats` once the device plays.

    Channels:
        Owns and closes ``inbox``; reads it to the end even after the device is lost,
        so the sender never blocks on or breaks against playback.

    Cancellation:
        The stream is closed (shielded) without playing out; queued audio is dropped.
        At the inbox's end, queued audio plays out first (bounded by its length plus
        ``drain_margin_s``).

    Error handling:
        Before ``task_status.started``: :class:`~engine.errors.ConfigError` (no
        PortAudio, or no such output device: :class:`DeviceNotFound`, listing the
        output devices) and :class:`DeviceFailed` (it cannot be opened). A caller for
        whom playback is optional catches these from ``nursery.start`` and goes on
        without it. After that, nothing is raised: overflow, underruns and a lost
        device are counted in :class:`PlaybackStats` and logged.
    """
    with structlog.contextvars.bound_contextvars(actor="playback", stream=config.stream):
        async with inbox:
            if backend is None:
                backend = await run_blocking(load_backend)
            stream = PlayStream(
                backend,
                BoundedCalls(run_blocking, config.call_timeout_s),
                device=config.device,
                rate=config.rate,
                capacity_s=config.capacity_s,
                block_ms=config.block_ms,
                watch_interval_s=config.watch_interval_s,
                stall_timeout_s=config.stall_timeout_s,
            )
            player = _Player(config, stream)
            graceful = False
            try:
                await stream.open()
                task_status.started(player.stats)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(stream.watch)
                    await player.consume(inbox)
                    await player.drain()
                    graceful = True
                    nursery.cancel_scope.cancel()
            finally:
                await stream.close(graceful=graceful)
            if player.unlogged_drop:
                player.log_overflow()
            stats, rate = player.stats, max(player.stats.rate, 1)
            log.info(
                "playback.finished",
                played_s=round(stats.played_frames / rate, 3),
                dropped_s=round(stats.dropped_frames / rate, 3),
                underruns=stats.underruns,
                lost=stats.lost,
            )
