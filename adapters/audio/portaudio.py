"""The real audio backend: PortAudio through the ``sounddevice`` module.

File work never needs PortAudio, so ``sounddevice`` is imported only by
:func:`load_backend`; without Debian's ``libportaudio2`` that import raises
``OSError``, which becomes a :class:`~engine.errors.ConfigError` naming the fix.
Every call of the backend and of its streams maps sounddevice's errors to
:class:`~adapters.audio.backend.DeviceFailed` through one table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, final

from engine.errors import ConfigError, map_exceptions

from .backend import DeviceFailed

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from .backend import InputCallback, InputHandle, OutputCallback, OutputHandle

__all__ = ["PORTAUDIO_FIX", "SoundDeviceBackend", "load_backend"]

PORTAUDIO_FIX: Final = "fix: apt-get install libportaudio2"


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
