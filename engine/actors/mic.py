"""The microphone capture actor: a PortAudio input device into the pipeline, losing nothing silently.

Theory of operation
-------------------
The device is opened at its own native rate and channel count (at most
``max_channels``); every block is downmixed to mono float32 and sent on as a
:class:`~engine.messages.RawBlock`, so the resampler (soxr) converts it to
the model's rate, exactly like a file.

**Hand-off.** PortAudio calls back on its own thread. The callback copies the
block and hands it to trio with ``TrioToken.run_sync_soon``, which never blocks;
in the trio thread the block joins a bounded :class:`Handoff` queue (drop-oldest,
``buffer_ms`` of audio). A pump task moves the queue to the outbox, and only the
pump ever waits on downstream, so a slow pipeline can never stall PortAudio.

**Timeline.** Every queued item has an exact position: seconds since the stream
began, as a :class:`~fractions.Fraction` (delivered frames / rate, summed over
device sessions). A block dropped by overflow becomes a *hole* at its position;
the pump turns a hole into silence of the same length, so later audio still lands
at the right global sample, and reports it as an ``AudioGap(capture-overflow)``
with exact global times. PortAudio's own input-overflow/underflow flags are
counted in :class:`MicStats` (their loss happened before the callback; its size
is unknown).

**Hot-plug.** A device loss shows as ``finished_callback`` without a stop
request, as ``active`` False while ``stopped`` is False, or as no audio for
``stall_timeout_s``. The actor then emits :class:`DeviceLost`, closes the dead
stream (a dead stream is never restarted: that hangs PortAudio), and retries
with capped backoff, re-initialising PortAudio (which re-reads the device list)
from the second attempt on. Downstream just sees no audio meanwhile (the
session's idle policy keeps its task alive). Once a new stream runs, the outage,
measured on the trio clock from the last block's arrival to the new start, goes
into the queue as a hole (silence, ``AudioGap(device)``), then
:class:`DeviceRestored` is emitted. Every stream gets a fresh *generation*;
callbacks of older generations are ignored.

**Layout.** :class:`~engine.actors._micstream.MicStreams` owns the streams, the
callbacks and the hand-off queue; this module supervises them (loss, recovery,
stop) and pumps the queue downstream.

**Blocking calls.** Opening, closing and re-initialising PortAudio run in worker
threads through :class:`~engine.actors._handoff.BoundedCalls`: a call that hangs
(a dead device can wedge PortAudio) is abandoned after ``call_timeout_s``, so
neither recovery nor shutdown can hang on it, and PortAudio is not re-initialised
while a call is stuck (that would wait for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, final

import msgspec
import structlog
import trio

from adapters.audio.backend import DeviceFailed, DeviceNotFound
from adapters.audio.portaudio import load_backend
from engine.actors._devicecalls import close_stream
from engine.actors._handoff import (
    Audio,
    BoundedCalls,
    in_thread,
    outage_hole,
    silence_blocks,
    to_global,
)
from engine.actors._micstream import MicStats, MicStreams
from engine.events import AudioGap, DeviceLost, DeviceRestored, Event
from engine.messages import AudioOutbox, RawBlock, Skip

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from adapters.audio.backend import AudioBackend

__all__ = ["MicConfig", "MicStats", "run"]

log = structlog.get_logger("steno.mic")


class MicConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which device, and how capture copes with overload and loss.

    Attributes:
        device: a name (exact or unique substring), an index, or None for the default.
        timeline_rate: the session rate of the global timeline (for event times).
        block_ms: audio per PortAudio callback; 0 lets PortAudio choose (variable).
        max_channels: open at most this many channels (the device's count if fewer).
        buffer_ms: the hand-off queue's bound; older blocks are dropped beyond it.
        retry_initial_s, retry_cap_s: backoff between reopen attempts after a loss.
        watch_interval_s: how often the stream's state is polled.
        stall_timeout_s: no audio for this long counts as a loss (None: never).
        give_up_after_s: stop retrying after this long without a device (None: never);
            the actor then raises :class:`DeviceFailed`.
        call_timeout_s: a PortAudio call (open, close) that takes longer is abandoned.
        holes: how a hole (overflow, outage) goes downstream: ``silence`` of the same
            length plus an ``AudioGap`` event, or ``skip``, a lost
            :class:`~engine.messages.Skip` (the resampler then reports the gap;
            the timeline moves on without sending a long silence at once).
        stream: the stream id put on events.
    """

    device: str | int | None = None
    timeline_rate: int = 16000
    block_ms: int = 100
    max_channels: int = 2
    buffer_ms: int = 2000
    retry_initial_s: float = 0.5
    retry_cap_s: float = 1.0
    watch_interval_s: float = 0.25
    stall_timeout_s: float | None = 5.0
    give_up_after_s: float | None = None
    call_timeout_s: float = 5.0
    holes: Literal["silence", "skip"] = "silence"
    stream: str = ""

    def __post_init__(self) -> None:
        if self.timeline_rate <= 0 or self.block_ms < 0 or self.max_channels < 1:
            raise ValueError(f"bad rate, block_ms or max_channels in {self}")
        if self.buffer_ms <= 0 or not 0 < self.retry_initial_s <= self.retry_cap_s:
            raise ValueError(f"buffer_ms and the retry delays must be positive in {self}")


@final
class _Mic:
    """Supervises one mic's streams (loss, recovery, stop) and pumps its audio downstream."""

    def __init__(
        self,
        config: MicConfig,
        backend: AudioBackend,
        outbox: AudioOutbox[RawBlock | Skip],
        events: AudioOutbox[Event],
        blocking: Callable[[Callable[[], Any]], Awaitable[Any]],
    ) -> None:
        self.config, self.outbox, self.events = config, outbox, events
        self.calls = BoundedCalls(blocking, config.call_timeout_s)
        self.streams = MicStreams(
            backend,
            self.calls,
            device=config.device,
            max_channels=config.max_channels,
            block_ms=config.block_ms,
            buffer_ms=config.buffer_ms,
        )
        self.stats = self.streams.stats
        self.done = False
        self.stopped = trio.Event()  # set once a stop is requested

    # --- supervising -------------------------------------------------------------

    async def supervise(self) -> None:
        while (cause := await self.watch()) is not None:
            await self.recover(cause)

    async def watch(self) -> str | None:
        """Wait for a stop request (None) or a device loss (its cause)."""
        streams, stall = self.streams, self.config.stall_timeout_s
        while True:
            handle = streams.handle
            if streams.stop_requested:
                return None
            if streams.finished_gen == streams.gen:
                return "finished"
            if handle is not None and not handle.active and not handle.stopped:
                return "inactive"
            if stall is not None and trio.current_time() - streams.last_audio_t > stall:
                return "stalled"
            streams.attention = trio.Event()
            with trio.move_on_after(self.config.watch_interval_s):
                await streams.attention.wait()

    async def recover(self, cause: str) -> None:
        """Report the loss, close the dead stream, reopen with backoff, fill the outage."""
        cfg, stats, streams = self.config, self.stats, self.streams
        name = stats.device.name if stats.device else str(streams.spec)
        t_last, position, old_rate = streams.last_audio_t, streams.position, streams.rate
        stats.losses += 1
        log.warning("mic.device_lost", device=name, cause=cause)
        streams.retire()  # from now on, callbacks of the dead stream are stale
        await self.emit(DeviceLost(name, to_global(position, cfg.timeline_rate), cause))
        await close_stream(
            self.calls, streams.detach(), stop=False, what="closing it", actor="mic"
        )  # PortAudio stuck on the dead stream: logged, and we go on without it
        delay, attempts = cfg.retry_initial_s, 0
        while True:
            with trio.move_on_after(delay):
                await self.stopped.wait()
            now = trio.current_time()
            gave_up = cfg.give_up_after_s is not None and now - t_last >= cfg.give_up_after_s
            if streams.stop_requested or gave_up:
                streams.fill_outage(outage_hole(position, t_last, now, old_rate))
                if gave_up:
                    raise DeviceFailed(
                        f"input device {name!r} did not come back within "
                        f"{cfg.give_up_after_s:g} s ({attempts} attempts)"
                    )
                return
            attempts += 1
            try:
                await streams.open(reinit=attempts > 1)
            except (DeviceNotFound, DeviceFailed) as exc:
                log.info("mic.reopen_failed", attempt=attempts, error=str(exc))
                delay = min(delay * 1.5, cfg.retry_cap_s)
                continue
            hole = outage_hole(position, t_last, trio.current_time(), streams.rate)
            streams.fill_outage(hole)
            streams.open_segment()
            stats.restores += 1
            outage = float(hole.end - hole.start)
            stats.outage_s += outage
            log.warning("mic.device_restored", device=name, outage_s=round(outage, 3))
            await self.emit(
                DeviceRestored(
                    name,
                    to_global(hole.end, cfg.timeline_rate),
                    round(outage, 6),
                    attempts=attempts,
                )
            )
            return

    def request_stop(self) -> None:
        self.streams.stop_requested = True
        self.stopped.set()
        self.streams.attention.set()

    async def shutdown(self, *, graceful: bool) -> None:
        """Stop and close the stream, then let the pump drain and end."""
        self.streams.stop_requested = True
        await close_stream(
            self.calls,
            self.streams.detach(),
            stop=graceful,
            what="closing the device",
            actor="mic",
            shield=True,
        )
        self.done = True
        self.streams.wake.set()

    # --- downstream ------------------------------------------------------------

    async def pump(self) -> None:
        """Move the hand-off queue to the outbox until shutdown and empty."""
        cfg, streams = self.config, self.streams
        while True:
            item = streams.handoff.pop()
            if item is None:
                if self.done:
                    return
                streams.wake = trio.Event()
                await streams.wake.wait()
            elif isinstance(item, Audio):
                await self.outbox.send(RawBlock(item.samples, item.rate))
            else:
                start, end = (to_global(p, cfg.timeline_rate) for p in (item.start, item.end))
                log.warning("mic.gap", reason=item.reason, start=start, end=end)
                if cfg.holes == "skip":
                    await self.outbox.send(Skip(item.frames, item.rate, item.reason, lost=True))
                    continue
                await self.emit(AudioGap(start, end, item.reason, rate=cfg.timeline_rate))
                chunk = max(item.rate * max(cfg.block_ms, 100) // 1000, 1)
                for zeros in silence_blocks(item.frames, chunk):
                    await self.outbox.send(RawBlock(zeros, item.rate))

    async def emit(self, event: Event) -> None:
        await self.events.send(
            msgspec.structs.replace(event, stream=self.config.stream, t=trio.current_time())
        )


async def run(
    *,
    outbox: AudioOutbox[RawBlock | Skip],
    events: AudioOutbox[Event],
    config: MicConfig,
    backend: AudioBackend | None = None,
    stop: trio.Event | None = None,
    run_blocking: Callable[[Callable[[], Any]], Awaitable[Any]] = in_thread,
    task_status: trio.TaskStatus[MicStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Capture from an input device into ``outbox`` until ``stop`` is set.

    Args:
        outbox: mono float32 blocks at the device's rate, gapless on the timeline (holes
            as silence, or as :class:`~engine.messages.Skip` s: ``config.holes``).
        events: where :class:`DeviceLost`, :class:`DeviceRestored` and
            :class:`AudioGap` go.
        config: the device and the loss policy.
        backend: PortAudio (default: :func:`~adapters.audio.portaudio.load_backend`).
        stop: setting it ends capture gracefully (the queue is drained first).
        run_blocking: runs a blocking PortAudio call (default: a worker thread, abandoned
            after ``call_timeout_s``).
        task_status: gets the live :class:`MicStats` once the device is open.

    Channels:
        Owns and closes ``outbox`` and ``events``.

    Cancellation:
        The PortAudio stream is closed (shielded); queued audio is dropped.

    Error handling:
        :class:`~engine.errors.ConfigError` (no PortAudio, or no such device:
        :class:`DeviceNotFound`) and :class:`DeviceFailed` (it cannot be opened) are
        raised before ``task_status.started``. A later loss is retried, never raised,
        unless ``give_up_after_s`` passes: then the queue is drained, ``outbox``
        closed, and :class:`DeviceFailed` raised.
    """
    with structlog.contextvars.bound_contextvars(actor="mic", stream=config.stream):
        async with outbox, events:
            if backend is None:
                backend = await run_blocking(load_backend)
            mic = _Mic(config, backend, outbox, events, run_blocking)
            failure: DeviceFailed | None = None
            try:
                await mic.streams.open(reinit=False)
                mic.streams.open_segment()
                task_status.started(mic.stats)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(mic.pump)
                    async with trio.open_nursery() as watchers:
                        if stop is not None:
                            watchers.start_soon(_stop_on, stop, mic)
                        graceful = False
                        try:
                            await mic.supervise()
                            graceful = True
                        except DeviceFailed as exc:
                            failure = exc
                        finally:
                            await mic.shutdown(graceful=graceful)
                        watchers.cancel_scope.cancel()
            finally:
                await mic.shutdown(graceful=False)  # no-op unless opening was interrupted
            log.info(
                "mic.finished",
                blocks=mic.stats.blocks,
                dropped_blocks=mic.stats.dropped_blocks,
                losses=mic.stats.losses,
            )
            if failure is not None:
                raise failure


async def _stop_on(stop: trio.Event, mic: _Mic) -> None:
    await stop.wait()
    mic.request_stop()
