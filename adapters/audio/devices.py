"""Audio devices: listing them, resolving ``--device``, and the ``steno devices`` table.

Everything here goes through a backend's :class:`~adapters.audio.backend.DeviceQueries`
(the real PortAudio one, :mod:`adapters.audio.portaudio`, or the fake), so it
never imports PortAudio itself. PortAudio reads the device list once at
initialisation: a device that appears later is invisible until
:func:`reinitialize`, which also closes *every* open stream in the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

import msgspec

from .backend import DeviceNotFound

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .backend import AudioBackend, DeviceQueries

__all__ = [
    "DeviceInfo",
    "format_device_table",
    "list_devices",
    "reinitialize",
    "resolve_input",
    "resolve_output",
]


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
