"""The playback actor's PortAudio output stream: opening, the callback, loss.

:class:`PlayStream` owns the device side of playback (see the theory of
operation in :mod:`engine.actors.playback`): it opens the stream at the voice's
rate or the device's own, feeds PortAudio's callback from the
:class:`~engine.actors._playring.PcmRing` (never waiting for trio), hands
"finished" and "ring emptied" to trio with ``TrioToken.run_sync_soon``, and
watches for a lost device: a ``finished_callback`` without a stop, a stream
inactive but not stopped, or no callback for ``stall_timeout_s``. On a loss it
stops playback for good (the stream is closed, never restarted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import structlog
import trio

from adapters.audio.backend import DeviceFailed
from adapters.audio.devices import resolve_output
from adapters.audio.resample import Pcm16Converter
from engine.actors._devicecalls import close_stream, quiet_close
from engine.actors._playring import PcmRing, PlaybackStats

if TYPE_CHECKING:
    from adapters.audio.backend import OutputBackend, OutputHandle, OutputStatus
    from adapters.audio.devices import DeviceInfo
    from engine.actors._handoff import BoundedCalls

__all__ = ["PlayStream"]

log = structlog.get_logger("steno.playback")


@final
class PlayStream:
    """The output stream of one playback actor: opened once, watched, closed.

    Args:
        backend: PortAudio.
        calls: the actor's bounded PortAudio calls.
        device: a name, an index, or None for the default output.
        rate: the rate to open at (the device's own is tried next).
        capacity_s: audio the ring holds.
        block_ms: audio per callback (0: PortAudio chooses).
        watch_interval_s: how often the stream's state is polled.
        stall_timeout_s: no callback for this long counts as a loss (None: never).
    """

    def __init__(
        self,
        backend: OutputBackend,
        calls: BoundedCalls,
        *,
        device: str | int | None,
        rate: int,
        capacity_s: float,
        block_ms: int,
        watch_interval_s: float,
        stall_timeout_s: float | None,
    ) -> None:
        self.backend, self.calls = backend, calls
        self.device, self.rate, self.capacity_s, self.block_ms = device, rate, capacity_s, block_ms
        self.watch_interval_s, self.stall_timeout_s = watch_interval_s, stall_timeout_s
        self.token = trio.lowlevel.current_trio_token()
        self.stats = PlaybackStats()
        self.ring: PcmRing | None = None
        self.converter: Pcm16Converter | None = None
        self.handle: OutputHandle | None = None
        self.stopping = self.finished = False
        self.attention = trio.Event()  # wakes the watcher
        self.idle = trio.Event()  # set when the ring runs empty (or playback stops)

    # --- PortAudio's thread -------------------------------------------------

    def callback(self, out: memoryview, _frames: int, _time: Any, status: OutputStatus) -> None:
        ring = self.ring
        if ring is None:  # not possible once started; silence rather than raise
            out[:] = bytes(len(out))
            return
        ring.fill(out, underflow=bool(status.output_underflow))

    def finished_callback(self) -> None:
        try:
            self.token.run_sync_soon(self.on_finished)
        except trio.RunFinishedError:
            pass  # the trio run is over; nobody is listening any more

    def emptied(self) -> None:
        try:
            self.token.run_sync_soon(self.on_emptied)
        except trio.RunFinishedError:
            pass

    # --- the trio thread (run_sync_soon callbacks: never raise, never block) ---

    def on_finished(self) -> None:
        if not self.stopping:
            self.finished = True
            self.attention.set()

    def on_emptied(self) -> None:
        self.idle.set()

    # --- trio ----------------------------------------------------------------

    async def open(self) -> None:
        """Open and start the stream: at ``rate``, else at the device's own.

        Raises:
            DeviceNotFound: no such output device.
            DeviceFailed: it cannot be opened at either rate, or PortAudio is stuck.
        """
        backend, spec = self.backend, self.device

        def open_blocking() -> tuple[OutputHandle, DeviceInfo, int]:
            info = resolve_output(backend, spec)
            rates = list(dict.fromkeys(r for r in (self.rate, info.rate) if r > 0))
            for attempt, rate in enumerate(rates, 1):
                self.ring = PcmRing(
                    max(1, round(self.capacity_s * rate)), self.stats, on_empty=self.emptied
                )
                try:
                    handle = backend.open_output(
                        device=info.index,
                        samplerate=rate,
                        channels=1,
                        blocksize=rate * self.block_ms // 1000,
                        callback=self.callback,
                        finished_callback=self.finished_callback,
                    )
                except DeviceFailed as exc:
                    if attempt < len(rates):
                        continue
                    tried = " or ".join(str(r) for r in rates)
                    raise DeviceFailed(
                        f"cannot play on {info.name!r} (mono, {tried} Hz): {exc}; fix: choose "
                        "'default' or 'pulse', which convert rates and channels"
                    ) from exc
                try:
                    handle.start()
                except BaseException:
                    quiet_close(handle, stop=False, actor="playback")
                    raise
                return handle, info, rate
            raise AssertionError("unreachable: at least one rate is tried")

        handle, info, rate = await self.calls(
            open_blocking,
            "opening the output device",
            lambda r: quiet_close(r[0], stop=False, actor="playback"),
        )
        self.handle = handle
        self.converter = Pcm16Converter(rate)
        self.stats.device, self.stats.rate = info, rate
        log.info("playback.opened", device=info.name, rate=rate, capacity_s=self.capacity_s)

    async def watch(self) -> None:
        """Poll for a device loss; on one, stop playback and return."""
        stats = self.stats
        calls, last_progress = stats.callbacks, trio.current_time()
        while True:
            now, handle = trio.current_time(), self.handle
            if stats.callbacks != calls:
                calls, last_progress = stats.callbacks, now
            cause = None
            if self.finished:
                cause = "finished"
            elif handle is not None:
                try:
                    if not handle.active and not handle.stopped:
                        cause = "inactive"
                except DeviceFailed as exc:
                    cause = f"error: {exc}"
            stall = self.stall_timeout_s
            if cause is None and stall is not None and now - last_progress > stall:
                cause = "stalled"
            if cause is not None:
                await self.lose(cause)
                return
            self.attention = trio.Event()
            with trio.move_on_after(self.watch_interval_s):
                await self.attention.wait()

    async def lose(self, cause: str) -> None:
        stats = self.stats
        stats.lost = cause
        self.idle.set()
        dropped = self.ring.clear() if self.ring is not None else 0
        stats.discarded_frames += dropped
        name = stats.device.name if stats.device else str(self.device)
        log.warning(
            "playback.device_lost",
            device=name,
            cause=cause,
            dropped_s=round(dropped / max(stats.rate, 1), 3),
            note="playback stops; transcription goes on",
        )
        dead, self.handle = self.handle, None
        # PortAudio stuck on the dead stream: logged, and we go on
        await close_stream(self.calls, dead, stop=False, what="closing it", actor="playback")

    async def close(self, *, graceful: bool) -> None:
        """Stop (``graceful``: after PortAudio played what it holds) and close; shielded."""
        self.stopping = True
        handle, self.handle = self.handle, None
        await close_stream(
            self.calls,
            handle,
            stop=graceful,
            what="closing the device",
            actor="playback",
            shield=True,
        )
