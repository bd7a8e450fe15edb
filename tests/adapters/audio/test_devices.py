"""Device listing, ``--device`` resolution and the ``steno devices`` table."""

from __future__ import annotations

import pytest
from audio_helpers import machine

from adapters.audio.backend import DeviceNotFound
from adapters.audio.devices import (
    format_device_table,
    list_devices,
    reinitialize,
    resolve_input,
    resolve_output,
)
from adapters.audio.fakeportaudio import FAKE_MIC, FakeBackend
from engine.errors import ConfigError


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
