"""Smoke test of tools/bench/simulator.py: a tiny step runs end to end and its JSON is whole.

No performance thresholds (the numbers are read by people, not asserted).

# real-time: a real simulator process and real sockets, bounded by the subprocess timeout.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tools.bench.simulator import _frames, audio_frames, client_frame

ROOT = pathlib.Path(__file__).resolve().parents[2]


def unmasked(frame: bytes) -> bytes:
    """The payload of one short-header masked client frame."""
    n = frame[1] & 0x7F
    head = 2 if n < 126 else 4
    key, data = frame[head : head + 4], frame[head + 4 :]
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


class TestFrames:
    def test_client_frames_are_masked_binary(self) -> None:
        payload = os.urandom(3203)
        frame = client_frame(payload)
        assert frame[0] == 0x82
        assert frame[1] & 0x80
        assert unmasked(frame) == payload

    def test_audio_is_whole_frames(self) -> None:
        frames = audio_frames(100)
        assert all(len(unmasked(f)) == 3200 for f in frames)
        pcm = np.frombuffer(b"".join(unmasked(f) for f in frames), "<i2")
        assert np.abs(pcm).max() > 1000  # tone-coded speech, not silence

    def test_server_frames_are_split_whole(self) -> None:
        buf = bytearray(b"\x81\x03abc\x82\x7e\x00\x80" + b"x" * 128 + b"\x81\x05ab")
        assert _frames(buf) == [(1, b"abc"), (2, b"x" * 128)]
        assert buf == b"\x81\x05ab"  # the incomplete frame waits for more bytes


@pytest.mark.slow
def test_a_tiny_ramp_runs(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "sim.json"
    args = ["--sessions", "2", "3", "--duration", "1", "--settle", "0", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "tools.bench.simulator", *args, "--sim-cpu", "--client-cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("| sessions | sim µs/frame |")
    result = json.loads(out.read_text())
    assert [step["sessions"] for step in result["steps"]] == [2, 3]
    for step in result["steps"]:
        n = step["sessions"]
        assert step["frames"] == n * 10
        assert step["events"]["task-started"] == n
        assert step["events"]["task-finished"] == n
        assert step["failed"] == {}
        assert step["unfinished"] == 0
        # 20–30 frames cost the simulator about a millisecond: below the 10 ms tick of the
        # CPU time the bench reads from /proc, so it may read 0
        assert step["sim_us_per_frame"] >= 0
