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

**Blocking calls.** Opening, closing and re-initialising PortAudio run in worker
threads through :class:`~engine.actors._handoff.BoundedCalls`: a call that hangs
(a dead device can wedge PortAudio) is abandoned after ``call_timeout_s``, so
neither recovery nor shutdown can hang on it, and PortAudio is not re-initialised
while a call is stuck (that would wait for it).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, final

import msgspec
import structlog
import trio

from adapters.audio.backend import DeviceFailed, DeviceNotFound
from adapters.audio.devices import resolve_input
from adapters.audio.pcm import to_mono_float32
from adapters.audio.portaudio import load_backend
from engine.actors._handoff import (
    Audio,
    BoundedCalls,
    Handoff,
    Hole,
    in_thread,
    outage_hole,
    silence_blocks,
    to_global,
)
from engine.events import AudioGap, DeviceLost, DeviceRestored, Event
from engine.messages import RawBlock, Skip

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import numpy as np
    from numpy.typing import NDArray

    from adapters.audio.backend import AudioBackend, CallbackStatus, InputHandle
    from adapters.audio.devices import DeviceInfo

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
class MicStats:
    """Live counters of one mic actor (read them; the actor writes them)."""

    def __init__(self) -> None:
        self.device: DeviceInfo | None = None
        self.rate = self.channels = 0
        self.blocks = self.frames = 0  # delivered by PortAudio and accepted
        self.dropped_blocks = self.dropped_frames = 0  # hand-off overflow (became holes)
        self.input_overflows = self.input_underflows = 0  # PortAudio status flags
        self.stale_blocks = 0  # callbacks of a stream already given up
        self.losses = self.restores = 0
        self.outage_s = 0.0


def _quiet_close(handle: InputHandle | None, *, stop: bool) -> None:
    if handle is None:
        return
    try:
        if stop:
            handle.stop()  # lets PortAudio deliver what it holds
    except DeviceFailed as exc:
        log.debug("mic.stop_failed", error=str(exc))
    try:
        handle.close()
    except DeviceFailed as exc:
        log.debug("mic.close_failed", error=str(exc))


# ------------------------------------------------------------------- the actor


@final
class _Mic:
    def __init__(
        self,
        config: MicConfig,
        backend: AudioBackend,
        outbox: trio.MemorySendChannel[RawBlock | Skip],
        events: trio.MemorySendChannel[Event],
        blocking: Callable[[Callable[[], Any]], Awaitable[Any]],
    ) -> None:
        self.config, self.backend, self.outbox, self.events = config, backend, outbox, events
        self.calls = BoundedCalls(blocking, config.call_timeout_s)
        self.token = trio.lowlevel.current_trio_token()
        self.stats = MicStats()
        self.handoff = Handoff(Fraction(config.buffer_ms, 1000))
        self.spec: str | int | None = config.device
        self.handle: InputHandle | None = None
        self.gen = 0  # generation of the current stream; older callbacks are stale
        self.segment_open = False  # the position of the current stream is known
        self.early: list[NDArray[np.float32]] = []  # its blocks that came before that
        self.rate = 0
        self.position = Fraction(0)  # end of the audio accepted so far (seconds)
        self.last_audio_t = 0.0
        self.finished_gen = -1
        self.stop_requested = self.done = False
        self.attention = trio.Event()  # wakes the watcher
        self.stopped = trio.Event()  # set once a stop is requested
        self.wake = trio.Event()  # wakes the pump

    # --- PortAudio's thread -------------------------------------------------

    def callback(
        self, gen: int, indata: NDArray[np.float32], frames: int, _time: Any, status: CallbackStatus
    ) -> None:
        try:
            block = to_mono_float32(indata)
            flags = (bool(status.input_overflow), bool(status.input_underflow))
            self.token.run_sync_soon(self.deliver, gen, block, flags)
        except trio.RunFinishedError:
            pass  # the trio run is over; nobody is listening any more

    def finished(self, gen: int) -> None:
        try:
            self.token.run_sync_soon(self.on_finished, gen)
        except trio.RunFinishedError:
            pass

    # --- the trio thread (run_sync_soon callbacks: never raise, never block) ---

    def deliver(self, gen: int, block: NDArray[np.float32], flags: tuple[bool, bool]) -> None:
        if gen != self.gen:
            self.stats.stale_blocks += 1
            return
        self.stats.input_overflows += flags[0]
        self.stats.input_underflows += flags[1]
        if self.segment_open:
            self.accept(block)
        else:
            self.early.append(block)

    def on_finished(self, gen: int) -> None:
        if gen == self.gen and not self.stop_requested:
            self.finished_gen = gen
            self.attention.set()

    def accept(self, block: NDArray[np.float32]) -> None:
        item = Audio(self.position, block, self.rate)
        self.position = item.end
        self.last_audio_t = trio.current_time()
        self.stats.blocks += 1
        self.stats.frames += len(block)
        blocks, frames = self.handoff.put_audio(item)
        self.stats.dropped_blocks += blocks
        self.stats.dropped_frames += frames
        self.wake.set()

    # --- opening ---------------------------------------------------------------

    async def open(self, *, reinit: bool) -> None:
        """Open and start a new stream as a new generation (its position not yet fixed)."""
        self.gen += 1
        self.segment_open, self.early = False, []
        gen, cfg, backend = self.gen, self.config, self.backend
        # Re-initialising closes every stream: it would wait for one PortAudio is stuck on.
        may_reinit = not self.calls.stuck

        def open_blocking() -> tuple[InputHandle, DeviceInfo, int]:
            if reinit and may_reinit:
                backend.reinitialize()
            try:
                info = resolve_input(backend, self.spec)
            except DeviceNotFound:
                if reinit or not may_reinit:
                    raise
                backend.reinitialize()  # maybe it appeared after PortAudio listed devices
                info = resolve_input(backend, self.spec)
            channels = min(info.input_channels, cfg.max_channels)
            handle = backend.open_input(
                device=info.index,
                samplerate=info.rate,
                channels=channels,
                blocksize=info.rate * cfg.block_ms // 1000,
                callback=functools.partial(self.callback, gen),
                finished_callback=functools.partial(self.finished, gen),
            )
            try:
                handle.start()
            except BaseException:
                _quiet_close(handle, stop=False)
                raise
            return handle, info, channels

        handle, info, channels = await self.calls(
            open_blocking, "opening the device", lambda r: _quiet_close(r[0], stop=False)
        )
        self.handle, self.rate = handle, info.rate
        self.stats.device, self.stats.rate, self.stats.channels = info, info.rate, channels
        if isinstance(self.spec, int) or (isinstance(self.spec, str) and self.spec.isdigit()):
            self.spec = info.name  # indexes can change when PortAudio re-initialises
        log.info("mic.opened", device=info.name, rate=info.rate, channels=channels, gen=gen)

    def open_segment(self) -> None:
        """The new stream's position is fixed: accept the blocks it delivered meanwhile."""
        self.segment_open = True
        self.last_audio_t = trio.current_time()
        early, self.early = self.early, []
        for block in early:
            self.accept(block)

    # --- supervising -------------------------------------------------------------

    async def supervise(self) -> None:
        while (cause := await self.watch()) is not None:
            await self.recover(cause)

    async def watch(self) -> str | None:
        """Wait for a stop request (None) or a device loss (its cause)."""
        stall = self.config.stall_timeout_s
        while True:
            handle = self.handle
            if self.stop_requested:
                return None
            if self.finished_gen == self.gen:
                return "finished"
            if handle is not None and not handle.active and not handle.stopped:
                return "inactive"
            if stall is not None and trio.current_time() - self.last_audio_t > stall:
                return "stalled"
            self.attention = trio.Event()
            with trio.move_on_after(self.config.watch_interval_s):
                await self.attention.wait()

    async def recover(self, cause: str) -> None:
        """Report the loss, close the dead stream, reopen with backoff, fill the outage."""
        cfg, stats = self.config, self.stats
        name = stats.device.name if stats.device else str(self.spec)
        t_last, position, old_rate = self.last_audio_t, self.position, self.rate
        stats.losses += 1
        log.warning("mic.device_lost", device=name, cause=cause)
        self.gen += 1  # from now on, callbacks of the dead stream are stale
        await self.emit(DeviceLost(name, to_global(position, cfg.timeline_rate), cause))
        dead, self.handle = self.handle, None
        try:
            await self.calls(functools.partial(_quiet_close, dead, stop=False), "closing it")
        except DeviceFailed as exc:  # PortAudio is stuck on the dead stream: go on without it
            log.error("mic.close_failed", error=str(exc))
        delay, attempts = cfg.retry_initial_s, 0
        while True:
            with trio.move_on_after(delay):
                await self.stopped.wait()
            now = trio.current_time()
            gave_up = cfg.give_up_after_s is not None and now - t_last >= cfg.give_up_after_s
            if self.stop_requested or gave_up:
                self.fill_outage(outage_hole(position, t_last, now, old_rate))
                if gave_up:
                    raise DeviceFailed(
                        f"input device {name!r} did not come back within "
                        f"{cfg.give_up_after_s:g} s ({attempts} attempts)"
                    )
                return
            attempts += 1
            try:
                await self.open(reinit=attempts > 1)
            except (DeviceNotFound, DeviceFailed) as exc:
                log.info("mic.reopen_failed", attempt=attempts, error=str(exc))
                delay = min(delay * 1.5, cfg.retry_cap_s)
                continue
            hole = outage_hole(position, t_last, trio.current_time(), self.rate)
            self.fill_outage(hole)
            self.open_segment()
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

    def fill_outage(self, hole: Hole) -> None:
        self.position = hole.end
        self.handoff.put_hole(hole)
        self.wake.set()

    def request_stop(self) -> None:
        self.stop_requested = True
        self.stopped.set()
        self.attention.set()

    async def shutdown(self, *, graceful: bool) -> None:
        """Stop and close the stream, then let the pump drain and end."""
        self.stop_requested = True
        handle, self.handle = self.handle, None
        if handle is not None:
            with trio.CancelScope(shield=True):
                try:
                    await self.calls(
                        functools.partial(_quiet_close, handle, stop=graceful), "closing the device"
                    )
                except DeviceFailed as exc:
                    log.error("mic.close_failed", error=str(exc))
        self.done = True
        self.wake.set()

    # --- downstream ------------------------------------------------------------

    async def pump(self) -> None:
        """Move the hand-off queue to the outbox until shutdown and empty."""
        cfg = self.config
        while True:
            item = self.handoff.pop()
            if item is None:
                if self.done:
                    return
                self.wake = trio.Event()
                await self.wake.wait()
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
    outbox: trio.MemorySendChannel[RawBlock | Skip],
    events: trio.MemorySendChannel[Event],
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
                await mic.open(reinit=False)
                mic.open_segment()
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
