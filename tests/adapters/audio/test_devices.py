"""The device layer: listing, resolving ``--device``, lazy PortAudio, and the fake backend."""

from __future__ import annotations

import builtins
import types
from typing import Any

import numpy as np
import pytest

from adapters.audio import devices
from adapters.audio.devices import (
    DeviceFailed,
    DeviceNotFound,
    SoundDeviceBackend,
    format_device_table,
    list_devices,
    load_backend,
    reinitialize,
    resolve_input,
    resolve_output,
)
from adapters.audio.fakeportaudio import FAKE_MIC, FakeBackend, FakeStatus
from engine.errors import ConfigError, InputError

MACHINE = [
    {**FAKE_MIC, "index": 0, "name": "HDA Intel PCH: ALC892 Analog (hw:0,0)"},
    {**FAKE_MIC, "index": 1, "name": "HDMI out", "max_input_channels": 0, "max_output_channels": 8},
    {**FAKE_MIC, "index": 2, "name": "USB Audio Mic (hw:1,0)", "default_samplerate": 44100.0},
    {**FAKE_MIC, "index": 3, "name": "pulse", "hostapi": 1, "max_input_channels": 32},
]


def machine(default_input: int = 3) -> FakeBackend:
    return FakeBackend(MACHINE, default_input=default_input, default_output=1)


class TestListDevices:
    def test_inputs_and_outputs_with_rate_channels_and_defaults(self) -> None:
        """Every device comes back with index, name, host API, channels, native rate."""
        backend = machine()
        backend.query_hostapis = lambda: [{"name": "ALSA"}, {"name": "OSS"}]  # type: ignore[method-assign]
        found = list_devices(backend)
        assert [d.index for d in found] == [0, 1, 2, 3]
        usb = found[2]
        assert (usb.name, usb.rate, usb.input_channels, usb.hostapi) == (
            "USB Audio Mic (hw:1,0)",
            44100,
            2,
            "ALSA",
        )
        assert [d.is_input for d in found] == [True, False, True, True]
        assert found[3].default_input and found[3].hostapi == "OSS"
        assert found[1].default_output and not found[1].default_input

    def test_table_lists_inputs_then_outputs_and_marks_defaults(self) -> None:
        """``steno devices`` prints two sections; ``*`` marks the defaults."""
        table = format_device_table(list_devices(machine()))
        inputs, outputs = table.split("output devices:")
        assert "USB Audio Mic (hw:1,0)  (ALSA, 44100 Hz, 2 ch)" in inputs
        assert "* " + "  3  pulse" in inputs and "HDMI" not in inputs
        assert "*   1  HDMI out  (ALSA, 48000 Hz, 8 ch)" in outputs

    def test_table_says_none(self) -> None:
        """No devices at all is said, not left blank."""
        assert format_device_table([]).count("(none)") == 2


class TestResolveInput:
    @pytest.mark.parametrize(
        ("spec", "index"),
        [
            (None, 3),
            (2, 2),
            ("2", 2),
            (" pulse ", 3),
            ("PULSE", 3),
            ("usb", 2),
            ("ALC892", 0),
        ],
    )
    def test_finds_by_default_index_name_or_unique_substring(
        self, spec: str | int | None, index: int
    ) -> None:
        """None, an index, an exact name or a unique substring pick one input."""
        assert resolve_input(machine(), spec).index == index

    def test_exact_name_beats_substring(self) -> None:
        """``pulse`` picks the device named exactly so, not one containing it."""
        backend = FakeBackend(
            [
                {**FAKE_MIC, "index": 0, "name": "pulse monitor"},
                {**FAKE_MIC, "index": 1, "name": "pulse"},
            ]
        )
        assert resolve_input(backend, "pulse").index == 1

    def test_missing_name_lists_the_inputs(self) -> None:
        """One clear error names what was asked, every input that exists, and the fix."""
        with pytest.raises(DeviceNotFound) as info:
            resolve_input(machine(), "blue yeti")
        message = str(info.value)
        assert "no input device matching 'blue yeti'" in message
        assert "0: 'HDA Intel PCH: ALC892 Analog (hw:0,0)'" in message
        assert "2: 'USB Audio Mic (hw:1,0)'; 3: 'pulse'" in message
        assert "HDMI" not in message and "fix: --device" in message
        assert isinstance(info.value, ConfigError)

    @pytest.mark.parametrize("spec", [1, 9, "9"])
    def test_output_only_or_unknown_index_is_an_error(self, spec: str | int) -> None:
        """An index that is not an input is refused the same way."""
        with pytest.raises(
            DeviceNotFound, match=r"no input device with index \d; the input devices"
        ):
            resolve_input(machine(), spec)

    def test_ambiguous_substring_is_an_error(self) -> None:
        """A substring matching two inputs asks for a full name or an index."""
        with pytest.raises(DeviceNotFound, match=r"matches several input devices.*hw:0,0.*hw:1,0"):
            resolve_input(machine(), "hw:")

    def test_no_devices_at_all(self) -> None:
        """With nothing to list (no sound card), the error says so and how to fix it."""
        backend = machine()
        backend.unplug()
        reinitialize(backend)
        with pytest.raises(DeviceNotFound, match="no input devices at all; fix: plug in"):
            resolve_input(backend, None)

    def test_no_default_input(self) -> None:
        """No default input but some inputs: the error lists them."""
        with pytest.raises(DeviceNotFound, match="no default input device; the input devices"):
            resolve_input(machine(default_input=-1), None)


class TestLoadBackend:
    def test_missing_portaudio_is_a_config_error_naming_the_package(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``import sounddevice`` raising OSError (no libportaudio2) names apt-get install."""
        real_import = builtins.__import__

        def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", fake_import)
        with pytest.raises(
            ConfigError, match=r"PortAudio library not found.*apt-get install libportaudio2"
        ):
            load_backend()

    def test_missing_sounddevice_names_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the sounddevice package the fix is the ``audio`` extra."""
        monkeypatch.setitem(__import__("sys").modules, "sounddevice", None)
        with pytest.raises(ConfigError, match=r"pip install 'stenograph\[audio\]'"):
            load_backend()

    def test_real_portaudio_loads(self) -> None:
        """On this machine (libportaudio2 installed) the real backend loads and lists."""
        pytest.importorskip("sounddevice", exc_type=OSError)
        backend = load_backend()
        assert isinstance(list_devices(backend), list)
        assert isinstance(backend.default_input(), int)


class _PortAudioError(Exception):
    pass


def fake_sd(**overrides: Any) -> types.SimpleNamespace:
    """A stand-in for the sounddevice module (to test the real backend's wrapping)."""
    calls: list[str] = []

    def fail(*_a: Any, **_k: Any) -> Any:
        raise _PortAudioError("Error querying device -1")

    class Stream:
        active, stopped = True, False

        def __init__(self, **kwargs: Any) -> None:
            calls.append(f"open {kwargs['device']} {kwargs['samplerate']} {kwargs['dtype']}")

        def start(self) -> None:
            calls.append("start")

        def stop(self) -> None:
            raise _PortAudioError("Stream is stopped")

        def close(self) -> None:
            calls.append("close")

    sd = types.SimpleNamespace(
        PortAudioError=_PortAudioError,
        query_devices=lambda: [dict(FAKE_MIC)],
        query_hostapis=lambda: [{"name": "ALSA"}],
        default=types.SimpleNamespace(device=[0, None]),
        InputStream=Stream,
        RawOutputStream=Stream,
        _terminate=lambda: calls.append("terminate"),
        _initialize=lambda: calls.append("initialize"),
        calls=calls,
        fail=fail,
    )
    for key, value in overrides.items():
        setattr(sd, key, value)
    return sd


class TestSoundDeviceBackend:
    def test_calls_go_through_and_defaults_read(self) -> None:
        """Listing, defaults, opening float32 streams and re-initialising reach sounddevice."""
        sd = fake_sd()
        backend = SoundDeviceBackend(sd)
        assert (backend.default_input(), backend.default_output()) == (0, -1)
        handle = backend.open_input(
            device=0,
            samplerate=48000,
            channels=2,
            blocksize=4800,
            callback=lambda *a: None,
            finished_callback=lambda: None,
        )
        handle.start()
        assert handle.active and not handle.stopped
        handle.close()
        backend.reinitialize()
        assert sd.calls == ["open 0 48000 float32", "start", "close", "terminate", "initialize"]

    def test_portaudio_errors_become_device_failed(self) -> None:
        """No PortAudioError escapes the adapter: it is DeviceFailed (an InputError)."""
        sd = fake_sd()
        sd.query_devices = sd.fail
        sd.InputStream = sd.fail
        backend = SoundDeviceBackend(sd)
        with pytest.raises(DeviceFailed, match="Error querying device -1") as info:
            backend.query_devices()
        assert isinstance(info.value, InputError)
        assert isinstance(info.value.__cause__, _PortAudioError)
        with pytest.raises(DeviceFailed):
            backend.open_input(
                device=0,
                samplerate=1,
                channels=1,
                blocksize=0,
                callback=lambda *a: None,
                finished_callback=lambda: None,
            )

    def test_stream_errors_become_device_failed(self) -> None:
        """Errors of an open stream's calls are mapped too."""
        backend = SoundDeviceBackend(fake_sd())
        handle = backend.open_input(
            device=0,
            samplerate=8000,
            channels=1,
            blocksize=0,
            callback=lambda *a: None,
            finished_callback=lambda: None,
        )
        with pytest.raises(DeviceFailed, match="Stream is stopped"):
            handle.stop()


class TestResolveOutput:
    @pytest.mark.parametrize(("spec", "index"), [(None, 1), (1, 1), ("1", 1), ("hdmi", 1)])
    def test_finds_by_default_index_or_name(self, spec: str | int | None, index: int) -> None:
        """Outputs resolve like inputs: default, index, or a unique substring."""
        assert resolve_output(machine(), spec).index == index

    @pytest.mark.parametrize("spec", [0, "usb"])
    def test_an_input_only_device_is_not_an_output(self, spec: str | int) -> None:
        """An input-only device is refused, and the message lists only the outputs."""
        with pytest.raises(DeviceNotFound, match="the output devices are 1: 'HDMI out'; fix: pick"):
            resolve_output(machine(), spec)

    def test_no_outputs_at_all(self) -> None:
        """With no output device, the fix says to plug in speakers or headphones."""
        with pytest.raises(
            DeviceNotFound, match="no output devices at all; fix: plug in or enable"
        ):
            resolve_output(FakeBackend(), None)


class TestOutputStreams:
    def test_real_backend_opens_an_int16_raw_stream(self) -> None:
        """open_output reaches RawOutputStream (int16) and hands the callback a memoryview."""
        got: list[Any] = []
        sd = fake_sd()

        class Raw:
            active, stopped = True, False

            def __init__(self, **kwargs: Any) -> None:
                got.append(kwargs)

            def start(self) -> None: ...

            def close(self) -> None: ...

        sd.RawOutputStream = Raw
        handle = SoundDeviceBackend(sd).open_output(
            device=1,
            samplerate=24000,
            channels=1,
            blocksize=480,
            callback=lambda out, frames, _t, _s: got.append((type(out), frames, len(out))),
            finished_callback=lambda: None,
        )
        kwargs = got[0]
        assert (kwargs["dtype"], kwargs["samplerate"], kwargs["channels"]) == ("int16", 24000, 1)
        kwargs["callback"](bytearray(8), 4, None, None)
        assert got[1] == (memoryview, 4, 8)
        handle.close()

    def test_real_backend_maps_output_errors(self) -> None:
        """A PortAudio error opening an output is DeviceFailed."""
        sd = fake_sd()
        sd.RawOutputStream = sd.fail
        with pytest.raises(DeviceFailed, match="Error querying device -1"):
            SoundDeviceBackend(sd).open_output(
                device=0,
                samplerate=24000,
                channels=1,
                blocksize=0,
                callback=lambda *a: None,
                finished_callback=lambda: None,
            )

    def test_fake_output_pulls_and_dies_as_measured(self) -> None:
        """pull runs the callback while active; unplugging leaves it inactive, not stopped,
        with finished called once; an input-only device cannot be opened for output."""
        backend = machine()
        finished: list[int] = []
        flags: list[bool] = []

        def callback(out: memoryview, frames: int, _t: Any, status: Any) -> None:
            out[:] = b"\x01\x00" * frames
            flags.append(status.output_underflow)

        stream = backend.open_output(
            device=1,
            samplerate=24000,
            channels=1,
            blocksize=0,
            callback=callback,
            finished_callback=lambda: finished.append(1),
        )
        assert backend.output.pull(2) is None  # not started
        stream.start()
        assert backend.output.pull(2, FakeStatus(output_underflow=True)) == b"\x01\x00" * 2
        assert bytes(backend.output.played) == b"\x01\x00" * 2 and flags == [True]
        backend.unplug()
        assert (stream.active, stream.stopped, finished) == (False, False, [1])
        stream.close()
        assert finished == [1]
        backend.replug()
        with pytest.raises(DeviceFailed, match="-9993"):
            backend.open_output(
                device=0,
                samplerate=24000,
                channels=1,
                blocksize=0,
                callback=callback,
                finished_callback=lambda: None,
            )


class TestFakeBackend:
    def test_behaves_as_measured(self) -> None:
        """Loss: inactive, not stopped, finished fires once; the list stays cached until a
        re-init, which closes every stream; a gone device cannot be opened."""
        backend = FakeBackend()
        finished: list[int] = []
        got: list[int] = []

        def open_() -> Any:
            return backend.open_input(
                device=0,
                samplerate=48000,
                channels=2,
                blocksize=4800,
                callback=lambda data, frames, _t, _s: got.append(frames),
                finished_callback=lambda: finished.append(1),
            )

        stream = open_()
        stream.start()
        assert backend.stream.feed(np.zeros((10, 2), np.float32)) and got == [10]
        backend.unplug()
        assert (stream.active, stream.stopped, finished) == (False, False, [1])
        assert not backend.stream.feed(np.zeros((10, 2), np.float32))
        assert [d["name"] for d in backend.query_devices()] == ["fake mic"]  # cached
        with pytest.raises(DeviceFailed, match="-9993"):
            open_()
        reinitialize(backend)
        assert backend.query_devices() == [] and backend.default_input() == -1
        assert stream.closed and finished == [1]
        backend.replug()
        assert backend.query_devices() == []  # still the list read while it was gone
        reinitialize(backend)
        open_().start()
        assert len(backend.streams) == 2 and backend.reinits == 2


def test_module_does_not_import_sounddevice() -> None:
    """File work never loads PortAudio: the module imports it only in load_backend."""
    assert "sounddevice" not in vars(devices)
