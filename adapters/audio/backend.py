"""The audio backend interface: the PortAudio calls the engine makes, and their errors.

The engine talks to PortAudio only through :class:`AudioBackend` (capture) and
:class:`OutputBackend` (playback), a handful of calls named after sounddevice's.
:class:`~adapters.audio.portaudio.SoundDeviceBackend` is the real one (both) and
tests pass a fake with the same calls (:mod:`adapters.audio.fakeportaudio`), so
most tests need no device. Backends raise only our errors: a PortAudio failure
is :class:`DeviceFailed`, a device that does not exist is :class:`DeviceNotFound`.

Measured PortAudio behaviour this is built on (``/work/shared/research/AUDIO.md``):
the device list is read once at initialisation, so a device that appears later is
invisible until a re-initialisation, which also closes *every* open stream in the
process; a stream whose device died never recovers and must be closed, never
restarted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import ConfigError, InputError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "AudioBackend",
    "CallbackStatus",
    "DeviceFailed",
    "DeviceNotFound",
    "DeviceQueries",
    "InputCallback",
    "InputHandle",
    "OutputBackend",
    "OutputCallback",
    "OutputHandle",
    "OutputStatus",
]


# Errors (subclasses of the engine's families, so callers may catch either)


class DeviceNotFound(ConfigError):
    """No input (or output) device matches what was asked for (the message lists those
    that exist)."""


class DeviceFailed(InputError):
    """PortAudio failed: a device could not be opened, or it went away."""


# The backend interface


class CallbackStatus(Protocol):
    """The status flags PortAudio hands the input callback (sounddevice's CallbackFlags)."""

    @property
    def input_overflow(self) -> bool: ...

    @property
    def input_underflow(self) -> bool: ...


#: ``callback(indata, frames, time_info, status)``, called on PortAudio's own thread with
#: ``indata`` float32 of shape (frames, channels), valid only during the call.
InputCallback = Callable[["NDArray[np.float32]", int, Any, CallbackStatus], None]


class InputHandle(Protocol):
    """An open input stream (sounddevice's ``InputStream``)."""

    @property
    def active(self) -> bool: ...

    @property
    def stopped(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class OutputStatus(Protocol):
    """The status flag PortAudio hands the output callback (sounddevice's CallbackFlags)."""

    @property
    def output_underflow(self) -> bool: ...


#: ``callback(outdata, frames, time_info, status)``, called on PortAudio's own thread;
#: it must fill ``outdata`` (``frames`` × channels int16 samples, as bytes) completely.
OutputCallback = Callable[[memoryview, int, Any, OutputStatus], None]


class OutputHandle(InputHandle, Protocol):
    """An open output stream (sounddevice's ``RawOutputStream``): the same calls, and
    the output latency."""

    @property
    def latency(self) -> float:
        """Seconds from the callback filling a block to the block being heard."""
        ...


class DeviceQueries(Protocol):
    """The device-listing calls every backend has. Each blocks (call it from a thread)
    and raises only :class:`DeviceFailed`."""

    def query_devices(self) -> Sequence[Mapping[str, Any]]:
        """Every device, as sounddevice's dicts (``name``, ``index``, ``hostapi``,
        ``max_input_channels``, ``max_output_channels``, ``default_samplerate``)."""
        ...

    def query_hostapis(self) -> Sequence[Mapping[str, Any]]: ...

    def default_input(self) -> int:
        """The default input's index, or -1 when there is none."""
        ...

    def default_output(self) -> int: ...


class AudioBackend(DeviceQueries, Protocol):
    """The PortAudio calls capture makes. Every method blocks (call it from a thread)
    and raises only :class:`DeviceFailed` for PortAudio failures."""

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
        """Open (not start) a float32 callback input stream."""
        ...

    def reinitialize(self) -> None:
        """Terminate and re-initialise PortAudio (re-reads the device list; closes every
        open stream of the process)."""
        ...


class OutputBackend(DeviceQueries, Protocol):
    """The PortAudio calls playback makes: blocking, raising only :class:`DeviceFailed`."""

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
        """Open (not start) an int16 callback output stream."""
        ...
