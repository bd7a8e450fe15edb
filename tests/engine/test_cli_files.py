"""``steno transcribe``'s file plumbing: the lengths the console's progress needs, the processes."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import soundfile

from engine.cli import _shard
from engine.cli.files import file_durations
from engine.config import Secret, SessionConfig
from engine.errors import ConfigError
from engine.pipeline import FileStreamConfig
from engine.ratelimit import RATE_SHARE_VAR


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


class TestPlanProcesses:
    """How many worker processes a run gets (``--processes`` and its default)."""

    @pytest.fixture(autouse=True)
    def _eight_cores(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_shard, "usable_cores", lambda: 8)
        monkeypatch.delenv(RATE_SHARE_VAR, raising=False)

    @pytest.mark.parametrize(
        ("streams", "expected"), [(1, 1), (2, 1), (16, 1), (17, 2), (40, 3), (64, 4), (5000, 8)]
    )
    def test_default_one_process_per_16_streams_up_to_the_cores(
        self, streams: int, expected: int
    ) -> None:
        """A few files stay in this process; more fill the cores, 16 streams a process."""
        assert _shard.plan_processes(None, streams, "paraformer") == expected

    def test_asked_for_is_capped_by_streams_and_the_burst(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Never more processes than streams, nor than the family's burst can feed."""
        assert _shard.plan_processes(4, 100, "paraformer") == 4
        assert _shard.plan_processes(4, 3, "paraformer") == 3
        assert _shard.plan_processes(10**20, 1000, "paraformer") == 20
        assert _shard.plan_processes(50, 1000, "gummy") == 10
        monkeypatch.setenv(RATE_SHARE_VAR, "0.1")
        assert _shard.plan_processes(8, 100, "paraformer") == 2

    @pytest.mark.parametrize("value", [0, -1])
    def test_below_one_is_a_usage_error(self, value: int) -> None:
        with pytest.raises(ConfigError, match="--processes must be at least 1"):
            _shard.plan_processes(value, 10, "paraformer")

    def test_a_bad_share_is_a_usage_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(RATE_SHARE_VAR, "lots")
        with pytest.raises(ConfigError, match=RATE_SHARE_VAR):
            _shard.plan_processes(None, 10, "paraformer")
