"""The fake PortAudio backend behaves as the real one was measured to."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from audio_helpers import machine

from adapters.audio.backend import DeviceFailed
from adapters.audio.devices import reinitialize
from adapters.audio.fakeportaudio import FakeBackend, FakeStatus


class TestFakeOutput:
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
