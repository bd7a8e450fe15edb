"""The real backend: lazy PortAudio, and sounddevice's calls and errors mapped."""

from __future__ import annotations

import builtins
import types
from typing import Any

import pytest

from adapters.audio import portaudio
from adapters.audio.backend import DeviceFailed
from adapters.audio.devices import list_devices
from adapters.audio.fakeportaudio import FAKE_MIC
from adapters.audio.portaudio import SoundDeviceBackend, load_backend
from engine.errors import ConfigError, InputError


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


def test_module_does_not_import_sounddevice() -> None:
    """File work never loads PortAudio: the module imports it only in load_backend."""
    assert "sounddevice" not in vars(portaudio)
