"""``steno transcribe``'s file plumbing: the lengths the console's progress needs."""

from __future__ import annotations

import pathlib

import numpy as np
import soundfile

from engine.cli.files import file_durations
from engine.config import Secret, SessionConfig
from engine.pipeline import FileStreamConfig


def _config(path: pathlib.Path, stream: str) -> FileStreamConfig:
    session = SessionConfig(
        stream=stream, model="paraformer-realtime-v2", url="ws://127.0.0.1:1", api_key=Secret("k")
    )
    return FileStreamConfig(path=str(path), session=session)


def test_durations_from_headers_and_none_for_what_cannot_be_read(tmp_path: pathlib.Path) -> None:
    wav = tmp_path / "a.wav"
    soundfile.write(wav, np.zeros(24000, dtype=np.int16), 16000)
    garbage = tmp_path / "b.wav"
    garbage.write_bytes(b"not audio at all")
    configs = [
        _config(wav, "a"),
        _config(garbage, "b"),
        _config(tmp_path / "missing.wav", "c"),
        _config(tmp_path, "d"),  # a directory
    ]
    assert file_durations(configs) == {"a": 1.5}
