"""The mic actor's PortAudio streams and the hand-off of their blocks into trio.

:class:`MicStreams` owns the device side of capture (see the theory of
operation in :mod:`engine.actors.mic`): it opens a stream per *generation*,
takes PortAudio's callbacks on its own thread and hands every block to trio
with ``TrioToken.run_sync_soon`` (never blocking), places accepted blocks
exactly on the timeline (:class:`~fractions.Fraction` seconds) in the bounded
drop-oldest :class:`~engine.actors._handoff.Handoff`, and fills outages with
holes. The mic actor supervises it (loss, recovery, stop) and pumps the
hand-off downstream.

Callbacks of older generations are stale and ignored; a new stream's blocks
wait in ``early`` until its position on the timeline is fixed
(:meth:`MicStreams.open_segment`).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import TYPE_CHECKING, Any, final

import structlog
import trio

from adapters.audio.backend import DeviceNotFound
from adapters.audio.devices import resolve_input
from adapters.audio.pcm import to_mono_float32
from engine.actors._devicecalls import quiet_close
from engine.actors._handoff import Audio, Handoff

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from adapters.audio.backend import AudioBackend, CallbackStatus, InputHandle
    from adapters.audio.devices import DeviceInfo
    from engine.actors._handoff import BoundedCalls, Hole

__all__ = ["MicStats", "MicStreams"]

log = structlog.get_logger("steno.mic")


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


@final
class MicStreams:
    """The input streams of one mic actor, one generation at a time.

    Args:
        backend: PortAudio.
        calls: the actor's bounded PortAudio calls.
        device: a name, an index, or None for the default input.
        max_channels: open at most this many channels.
        block_ms: audio per callback (0: PortAudio chooses).
        buffer_ms: the hand-off queue's bound.
    """

    def __init__(
        self,
        backend: AudioBackend,
        calls: BoundedCalls,
        *,
        device: str | int | None,
        max_channels: int,
        block_ms: int,
        buffer_ms: int,
    ) -> None:
        self.backend, self.calls = backend, calls
        self.max_channels, self.block_ms = max_channels, block_ms
        self.token = trio.lowlevel.current_trio_token()
        self.stats = MicStats()
        self.handoff = Handoff(Fraction(buffer_ms, 1000))
        self.spec: str | int | None = device
        self.handle: InputHandle | None = None
        self.gen = 0  # generation of the current stream; older callbacks are stale
        self.segment_open = False  # the position of the current stream is known
        self.early: list[NDArray[np.float32]] = []  # its blocks that came before that
        self.rate = 0
        self.position = Fraction(0)  # end of the audio accepted so far (seconds)
        self.last_audio_t = 0.0
        self.finished_gen = -1
        self.stop_requested = False
        self.attention = trio.Event()  # wakes the watcher
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

    # --- trio ------------------------------------------------------------------

    async def open(self, *, reinit: bool) -> None:
        """Open and start a new stream as a new generation (its position not yet fixed).

        Raises:
            DeviceNotFound: no such input (after one re-initialisation, unless ``reinit``).
            DeviceFailed: it cannot be opened, or PortAudio is stuck.
        """
        self.gen += 1
        self.segment_open, self.early = False, []
        gen, backend = self.gen, self.backend
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
            channels = min(info.input_channels, self.max_channels)
            handle = backend.open_input(
                device=info.index,
                samplerate=info.rate,
                channels=channels,
                blocksize=info.rate * self.block_ms // 1000,
                callback=functools.partial(self.callback, gen),
                finished_callback=functools.partial(self.finished, gen),
            )
            try:
                handle.start()
            except BaseException:
                quiet_close(handle, stop=False, actor="mic")
                raise
            return handle, info, channels

        handle, info, channels = await self.calls(
            open_blocking,
            "opening the device",
            lambda r: quiet_close(r[0], stop=False, actor="mic"),
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

    def retire(self) -> None:
        """Give the current stream up: its callbacks are stale from now on (not a checkpoint)."""
        self.gen += 1

    def detach(self) -> InputHandle | None:
        """The current stream's handle, which the caller now closes (None: no stream)."""
        handle, self.handle = self.handle, None
        return handle

    def fill_outage(self, hole: Hole) -> None:
        """Queue ``hole`` (silence downstream) and move the timeline past it."""
        self.position = hole.end
        self.handoff.put_hole(hole)
        self.wake.set()
