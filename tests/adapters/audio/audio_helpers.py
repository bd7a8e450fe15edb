"""A fake machine's sound devices, shared by the device and fake-backend tests."""

from __future__ import annotations

from adapters.audio.fakeportaudio import FAKE_MIC, FakeBackend

MACHINE = [
    {**FAKE_MIC, "index": 0, "name": "HDA Intel PCH: ALC892 Analog (hw:0,0)"},
    {**FAKE_MIC, "index": 1, "name": "HDMI out", "max_input_channels": 0, "max_output_channels": 8},
    {**FAKE_MIC, "index": 2, "name": "USB Audio Mic (hw:1,0)", "default_samplerate": 44100.0},
    {**FAKE_MIC, "index": 3, "name": "pulse", "hostapi": 1, "max_input_channels": 32},
]
"""Two inputs, an output-only HDMI device and PulseAudio (on a second host API)."""


def machine(default_input: int = 3) -> FakeBackend:
    """:data:`MACHINE` with ``pulse`` (or ``default_input``) as the default input, HDMI as the output."""
    return FakeBackend(MACHINE, default_input=default_input, default_output=1)
