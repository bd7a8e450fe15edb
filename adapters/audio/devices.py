"""Audio devices through PortAudio (sounddevice), behind a small injectable backend.

File work never needs PortAudio, so ``sounddevice`` is imported only by
:func:`load_backend`; without Debian's ``libportaudio2`` that import raises
``OSError``, which becomes a :class:`~engine.errors.ConfigError` naming the fix.

The engine talks to PortAudio only through :class:`AudioBackend` (capture) and
:class:`OutputBackend` (playback), a handful of calls named after sounddevice's:
:class:`SoundDeviceBackend` is the real one (both) and tests pass a fake with the same
calls (``adapters.audio.fakeportaudio``), so most tests need no device. Backends
raise only our errors: a PortAudio failure is :class:`DeviceFailed`, a device that
does not exist is :class:`DeviceNotFound`.

Measured PortAudio behaviour this is built on (``/work/shared/research/AUDIO.md``):
the device list is read once at initialisation, so a device that appears later is
invisible until :func:`reinitialize`, which also closes *every* open stream in the
process; a stream whose device died never recovers and must be closed, never
restarted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, final

import msgspec

from engine.errors import ConfigError, InputError, map_exceptions

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "AudioBackend",
    "CallbackStatus",
    "DeviceFailed",
    "DeviceInfo",
    "DeviceNotFound",
    "DeviceQueries",
    "InputCallback",
    "InputHandle",
    "OutputBackend",
    "OutputCallback",
    "OutputHandle",
    "OutputStatus",
    "SoundDeviceBackend",
    "format_device_table",
    "list_devices",
    "load_backend",
    "reinitialize",
    "resolve_input",
    "resolve_output",
]

PORTAUDIO_FIX: Final = "fix: apt-get install libportaudio2"


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


# Device information


class DeviceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One PortAudio device.

    Attributes:
        index: PortAudio's index (it can change when PortAudio re-initialises).
        name: the device's name, as ``--device`` accepts it.
        hostapi: the host API's name (``ALSA``, ``OSS``, …).
        input_channels, output_channels: the maximum channel counts.
        rate: the device's native (default) sample rate.
        default_input, default_output: whether it is the system default.
    """

    index: int
    name: str
    hostapi: str
    input_channels: int
    output_channels: int
    rate: int
    default_input: bool = False
    default_output: bool = False

    @property
    def is_input(self) -> bool:
        return self.input_channels > 0

    @property
    def is_output(self) -> bool:
        return self.output_channels > 0


def list_devices(backend: DeviceQueries) -> list[DeviceInfo]:
    """Every device the backend knows, inputs and outputs, in PortAudio's order."""
    hostapis = [str(h.get("name", "?")) for h in backend.query_hostapis()]
    default_in, default_out = backend.default_input(), backend.default_output()
    devices = []
    for position, raw in enumerate(backend.query_devices()):
        index = int(raw.get("index", position))
        api = int(raw.get("hostapi", -1))
        devices.append(
            DeviceInfo(
                index=index,
                name=str(raw["name"]),
                hostapi=hostapis[api] if 0 <= api < len(hostapis) else "?",
                input_channels=int(raw.get("max_input_channels", 0)),
                output_channels=int(raw.get("max_output_channels", 0)),
                rate=round(float(raw.get("default_samplerate", 0.0))),
                default_input=index == default_in,
                default_output=index == default_out,
            )
        )
    return devices


def resolve_input(backend: DeviceQueries, device: str | int | None) -> DeviceInfo:
    """The input device ``device`` names: None is the default input, an int (or a string
    of digits) an index, any other string a name (exact, case-insensitive, else a unique
    substring).

    Raises:
        DeviceNotFound: no such input device (or an ambiguous name); the message lists
            the inputs that exist and the fix.
    """
    return _resolve(backend, device, "input")


def resolve_output(backend: DeviceQueries, device: str | int | None) -> DeviceInfo:
    """The output device ``device`` names, resolved like :func:`resolve_input`.

    Raises:
        DeviceNotFound: no such output device (or an ambiguous name); the message lists
            the outputs that exist and the fix.
    """
    return _resolve(backend, device, "output")


# How to fix a missing device, and how to name another one, per direction.
_NONE_FIX: Final = {
    "input": "plug in or enable a microphone",
    "output": "plug in or enable speakers or headphones",
}
_PICK_FIX: Final = {"input": "--device with {}", "output": "pick {} for playback"}


def _resolve(
    backend: DeviceQueries, device: str | int | None, kind: Literal["input", "output"]
) -> DeviceInfo:
    usable = [d for d in list_devices(backend) if (d.is_input if kind == "input" else d.is_output)]
    if device is None:
        found = [d for d in usable if (d.default_input if kind == "input" else d.default_output)]
        what = f"no default {kind} device"
    elif isinstance(device, int) or device.strip().isdigit():
        found = [d for d in usable if d.index == int(device)]
        what = f"no {kind} device with index {int(device)}"
    else:
        wanted = device.strip().casefold()
        found = [d for d in usable if d.name.casefold() == wanted] or [
            d for d in usable if wanted in d.name.casefold()
        ]
        what = f"no {kind} device matching {device!r}"
        if len(found) > 1:
            names = ", ".join(repr(d.name) for d in found)
            raise DeviceNotFound(
                f"{device!r} matches several {kind} devices ({names}); fix: "
                + _PICK_FIX[kind].format("a full name or an index")
                + " (steno devices lists them)"
            )
    if found:
        return found[0]
    if not usable:
        raise DeviceNotFound(
            f"{what}: PortAudio sees no {kind} devices at all; fix: {_NONE_FIX[kind]} "
            "(or start PulseAudio; see tools/pulse-ci.sh) and check `steno devices`"
        )
    listing = "; ".join(f"{d.index}: {d.name!r}" for d in usable)
    raise DeviceNotFound(
        f"{what}; the {kind} devices are {listing}; fix: "
        + _PICK_FIX[kind].format("one of these names or indexes")
    )


def reinitialize(backend: AudioBackend) -> None:
    """Re-read the device list (``sd._terminate(); sd._initialize()``).

    Resource handling: this closes every PortAudio stream open in the process.
    """
    backend.reinitialize()


def format_device_table(devices: Sequence[DeviceInfo]) -> str:
    """The ``steno devices`` listing: inputs, then outputs; ``*`` marks the defaults."""
    lines: list[str] = []
    for title, kind in (("input devices", "in"), ("output devices", "out")):
        rows = [d for d in devices if (d.is_input if kind == "in" else d.is_output)]
        lines.append(f"{title}:")
        if not rows:
            lines.append("  (none)")
        for d in rows:
            default = d.default_input if kind == "in" else d.default_output
            channels = d.input_channels if kind == "in" else d.output_channels
            lines.append(
                f"{'*' if default else ' '} {d.index:>3}  {d.name}  "
                f"({d.hostapi}, {d.rate} Hz, {channels} ch)"
            )
    return "\n".join(lines) + "\n"


# The real backend


def load_backend() -> SoundDeviceBackend:
    """Import sounddevice (and with it PortAudio) now.

    Raises:
        ConfigError: sounddevice or the PortAudio library is not installed.
    """
    try:
        import sounddevice
    except OSError as exc:  # the wheel is there, libportaudio.so.2 is not
        raise ConfigError(
            f"live audio needs the PortAudio library ({exc}); {PORTAUDIO_FIX}"
        ) from None
    except ImportError:
        raise ConfigError(
            "live audio needs the sounddevice package; fix: pip install 'stenograph[audio]'"
        ) from None
    return SoundDeviceBackend(sounddevice)


@final
class SoundDeviceBackend:
    """:class:`AudioBackend` on the ``sounddevice`` module. Made by :func:`load_backend`."""

    def __init__(self, sd: Any) -> None:
        self._sd = sd
        self._errors: Mapping[type[BaseException], type[DeviceFailed]] = {
            sd.PortAudioError: DeviceFailed,
            ValueError: DeviceFailed,  # sounddevice's "No input device matching …"
        }

    def query_devices(self) -> Sequence[Mapping[str, Any]]:
        with map_exceptions(self._errors):
            return list(self._sd.query_devices())

    def query_hostapis(self) -> Sequence[Mapping[str, Any]]:
        with map_exceptions(self._errors):
            return list(self._sd.query_hostapis())

    def default_input(self) -> int:
        return self._default(0)

    def default_output(self) -> int:
        return self._default(1)

    def _default(self, which: int) -> int:
        with map_exceptions(self._errors):
            value = self._sd.default.device[which]
        return -1 if value is None else int(value)

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
        with map_exceptions(self._errors):
            stream: InputHandle = self._sd.InputStream(
                device=device,
                samplerate=samplerate,
                channels=channels,
                dtype="float32",
                blocksize=blocksize,
                callback=callback,
                finished_callback=finished_callback,
            )
        return _MappedHandle(stream, self._errors)

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
        def raw_callback(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
            callback(memoryview(outdata), frames, time_info, status)  # cffi buffer → bytes

        with map_exceptions(self._errors):
            stream: OutputHandle = self._sd.RawOutputStream(
                device=device,
                samplerate=samplerate,
                channels=channels,
                dtype="int16",
                blocksize=blocksize,
                callback=raw_callback,
                finished_callback=finished_callback,
            )
        return _MappedHandle(stream, self._errors)

    def reinitialize(self) -> None:
        with map_exceptions(self._errors):
            self._sd._terminate()
            self._sd._initialize()


@final
class _MappedHandle:
    """A stream (input or output) whose PortAudio errors come out as :class:`DeviceFailed`."""

    def __init__(
        self, stream: InputHandle, errors: Mapping[type[BaseException], type[DeviceFailed]]
    ) -> None:
        self._stream = stream
        self._errors = errors

    @property
    def active(self) -> bool:
        with map_exceptions(self._errors):
            return bool(self._stream.active)

    @property
    def stopped(self) -> bool:
        with map_exceptions(self._errors):
            return bool(self._stream.stopped)

    @property
    def latency(self) -> float:
        with map_exceptions(self._errors):
            return float(getattr(self._stream, "latency", 0.0))

    def start(self) -> None:
        with map_exceptions(self._errors):
            self._stream.start()

    def stop(self) -> None:
        with map_exceptions(self._errors):
            self._stream.stop()

    def close(self) -> None:
        with map_exceptions(self._errors):
            self._stream.close()
