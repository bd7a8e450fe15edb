"""A fake PortAudio for tests: devices that can be unplugged and replugged.

:class:`FakeBackend` implements :class:`~adapters.audio.backend.AudioBackend` and
:class:`~adapters.audio.backend.OutputBackend` the way the real one was measured to
behave (``/work/shared/research/AUDIO.md``): the device
list is cached until :meth:`FakeBackend.reinitialize`; a lost device's stream goes
inactive without being stopped and calls ``finished_callback``; opening a device that
is gone raises :class:`~adapters.audio.backend.DeviceFailed`. Tests drive the audio
callback by hand with :meth:`FakeInputStream.feed`, and pull played audio out of an
output stream with :meth:`FakeOutputStream.pull` (house rule R15: test helpers
ship with the package, so adapters written by others can be tested the same way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, final

import msgspec

from adapters.audio.backend import DeviceFailed

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import numpy as np
    from numpy.typing import NDArray

    from adapters.audio.backend import (
        CallbackStatus,
        InputCallback,
        InputHandle,
        OutputCallback,
        OutputHandle,
        OutputStatus,
    )

__all__ = [
    "FAKE_MIC",
    "FAKE_SPEAKER",
    "FakeBackend",
    "FakeInputStream",
    "FakeOutputStream",
    "FakeStatus",
]


FAKE_MIC: Final[Mapping[str, Any]] = {
    "name": "fake mic",
    "index": 0,
    "hostapi": 0,
    "max_input_channels": 2,
    "max_output_channels": 0,
    "default_samplerate": 48000.0,
}

FAKE_SPEAKER: Final[Mapping[str, Any]] = {
    "name": "fake speaker",
    "index": 1,
    "hostapi": 0,
    "max_input_channels": 0,
    "max_output_channels": 2,
    "default_samplerate": 48000.0,
}


class FakeStatus(msgspec.Struct, frozen=True):
    """The callback's status flags, for :meth:`FakeInputStream.feed` and
    :meth:`FakeOutputStream.pull`."""

    input_overflow: bool = False
    input_underflow: bool = False
    output_underflow: bool = False


class _FakeStream:
    """What both fake streams do as measured: ``stop``/``close`` call ``finished_callback``
    once (if the stream ever started), and a device loss (:meth:`die`) leaves ``active``
    False and ``stopped`` False."""

    def __init__(
        self,
        *,
        device: int,
        samplerate: int,
        channels: int,
        blocksize: int,
        finished_callback: Callable[[], None],
    ) -> None:
        self.device, self.samplerate, self.channels = device, samplerate, channels
        self.blocksize = blocksize
        self._finished_callback = finished_callback
        self._active = self._stopped = False
        self.started = self.closed = self._finished = False

    @property
    def active(self) -> bool:
        return self._active

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self) -> None:
        if self.closed:
            raise DeviceFailed("Stream is closed [PaErrorCode -9988]")
        self._active, self._stopped, self.started = True, False, True

    def stop(self) -> None:
        if self._active:
            self._active, self._stopped = False, True
        self._finish()

    def close(self) -> None:
        self.stop()
        self.closed = True

    def die(self, *, finished: bool = True) -> None:
        """The device went away: the stream goes inactive (not stopped); PortAudio calls
        ``finished_callback`` unless ``finished`` is False."""
        self._active = False
        if finished:
            self._finish()

    def _finish(self) -> None:
        if self.started and not self._finished:
            self._finished = True
            self._finished_callback()


@final
class FakeInputStream(_FakeStream):
    """A fake ``InputStream``: :meth:`feed` calls the callback (only while active)."""

    def __init__(
        self,
        *,
        device: int,
        samplerate: int,
        channels: int,
        blocksize: int,
        callback: InputCallback,
        finished_callback: Callable[[], None],
    ) -> None:
        super().__init__(
            device=device,
            samplerate=samplerate,
            channels=channels,
            blocksize=blocksize,
            finished_callback=finished_callback,
        )
        self._callback = callback

    def feed(self, block: NDArray[np.float32], status: CallbackStatus | None = None) -> bool:
        """Deliver ``block`` (frames × channels) as the callback; False when not active."""
        if not self._active:
            return False
        self._callback(block, len(block), None, status or FakeStatus())
        return True


@final
class FakeOutputStream(_FakeStream):
    """A fake ``RawOutputStream`` (int16): :meth:`pull` asks the callback for audio, the
    way PortAudio does when it needs the next block."""

    def __init__(
        self,
        *,
        device: int,
        samplerate: int,
        channels: int,
        blocksize: int,
        callback: OutputCallback,
        finished_callback: Callable[[], None],
    ) -> None:
        super().__init__(
            device=device,
            samplerate=samplerate,
            channels=channels,
            blocksize=blocksize,
            finished_callback=finished_callback,
        )
        self._callback = callback
        self.played = bytearray()  # everything the callback wrote, in order
        self.latency = 0.02

    def pull(self, frames: int, status: OutputStatus | None = None) -> bytes | None:
        """Run the callback for ``frames`` frames and return what it wrote (also appended
        to :attr:`played`); None when the stream is not active."""
        if not self._active:
            return None
        out = bytearray(frames * self.channels * 2)
        self._callback(memoryview(out), frames, None, status or FakeStatus())
        self.played += out
        return bytes(out)

    def _finish(self) -> None:
        if self.started and not self._finished:
            self._finished = True
            self._finished_callback()


@final
class FakeBackend:
    """A fake :class:`AudioBackend`: devices that can be unplugged and replugged, with
    PortAudio's cached device list (a replugged device is listed only after
    :meth:`reinitialize`, or if the list was read while it was present)."""

    def __init__(
        self,
        devices: Sequence[Mapping[str, Any]] = (FAKE_MIC,),
        *,
        default_input: int = 0,
        default_output: int = -1,
    ) -> None:
        self.devices = [dict(d) for d in devices]
        self.present = True
        self.listed = list(self.devices)
        self.streams: list[FakeInputStream] = []
        self.output_streams: list[FakeOutputStream] = []
        self.reinits = 0
        self.fail_opens = 0  # the next N opens fail
        self.refused_rates: set[int] = set()  # output opens at these rates fail
        self._default_input, self._default_output = default_input, default_output

    @property
    def stream(self) -> FakeInputStream:
        """The newest stream."""
        return self.streams[-1]

    @property
    def output(self) -> FakeOutputStream:
        """The newest output stream."""
        return self.output_streams[-1]

    def query_devices(self) -> Sequence[Mapping[str, Any]]:
        return list(self.listed)

    def query_hostapis(self) -> Sequence[Mapping[str, Any]]:
        return [{"name": "ALSA"}]

    def default_input(self) -> int:
        return self._default_input if self.listed else -1

    def default_output(self) -> int:
        return self._default_output if self.listed else -1

    def open_input(
        self,
        *,
        device: int,
        samplerate: int,
        channels: int,
        blocksize: int,
        callback: InputCallback,
        finished_callback: Callable[[], None],
    ) -> InputHandle:
        listed = any(int(d["index"]) == device for d in self.listed)
        if self.fail_opens > 0 or not self.present or not listed:
            self.fail_opens = max(0, self.fail_opens - 1)
            raise DeviceFailed(
                "Error opening InputStream: Illegal combination of I/O devices [PaErrorCode -9993]"
            )
        stream = FakeInputStream(
            device=device,
            samplerate=samplerate,
            channels=channels,
            blocksize=blocksize,
            callback=callback,
            finished_callback=finished_callback,
        )
        self.streams.append(stream)
        return stream

    def open_output(
        self,
        *,
        device: int,
        samplerate: int,
        channels: int,
        blocksize: int,
        callback: OutputCallback,
        finished_callback: Callable[[], None],
    ) -> OutputHandle:
        outputs = [d for d in self.listed if int(d.get("max_output_channels", 0)) > 0]
        listed = any(int(d["index"]) == device for d in outputs)
        if self.fail_opens > 0 or not self.present or not listed:
            self.fail_opens = max(0, self.fail_opens - 1)
            raise DeviceFailed(
                "Error opening RawOutputStream: Illegal combination of I/O devices "
                "[PaErrorCode -9993]"
            )
        if samplerate in self.refused_rates:
            raise DeviceFailed(
                "Error opening RawOutputStream: Invalid sample rate [PaErrorCode -9997]"
            )
        stream = FakeOutputStream(
            device=device,
            samplerate=samplerate,
            channels=channels,
            blocksize=blocksize,
            callback=callback,
            finished_callback=finished_callback,
        )
        self.output_streams.append(stream)
        return stream

    def reinitialize(self) -> None:
        for stream in self._all_streams():
            if not stream.closed:
                stream.close()
        self.listed = list(self.devices) if self.present else []
        self.reinits += 1

    def unplug(self, *, finished: bool = True) -> None:
        """The device vanishes; every active stream dies."""
        self.present = False
        for stream in self._all_streams():
            if stream.active:
                stream.die(finished=finished)

    def replug(self) -> None:
        self.present = True

    def _all_streams(self) -> list[FakeInputStream | FakeOutputStream]:
        return [*self.streams, *self.output_streams]
