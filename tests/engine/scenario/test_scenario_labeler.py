"""The embedded simulator's labels: every sentence of every demo file, wherever a task starts."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import soundfile as sf
import soxr

from engine.scenario.labeler import learn, recognizer

AUDIO = pathlib.Path(__file__).resolve().parents[3] / "scenarios" / "audio"
NAMES = ("numbers", "weather", "meeting")


def pcm(name: str, rate: int) -> np.ndarray:
    x, r = sf.read(AUDIO / f"{name}.wav", dtype="float32")
    if x.ndim == 2:
        x = x.mean(axis=1)
    return (np.clip(soxr.resample(x, r, rate), -1, 1) * 32767).astype(np.int16)


def reference(name: str) -> list[str]:
    return (AUDIO / f"{name}.txt").read_text().splitlines()


@pytest.mark.parametrize("rate", [16000, 8000])
def test_sentences_are_recognized_by_sound(rate: int) -> None:
    """One table for three files; tasks starting at odd offsets (a replay) get the right text."""
    table = [s for name in NAMES for s in learn(pcm(name, rate), rate, reference(name))]
    rec = recognizer({rate: table})
    for name in NAMES:
        audio, ref = pcm(name, rate), reference(name)
        for offset_s in (0.0, 0.0023, 0.137, 4.0):
            stream = rec.stream(rate)
            data = audio[round(offset_s * rate) :].tobytes()
            hyps = [h for i in range(0, len(data), 3200) for h in stream.feed(data[i : i + 3200])]
            finals = [h.text for h in [*hyps, *stream.flush()] if h.final]
            assert finals == ref[len(ref) - len(finals) :], (name, offset_s)
            assert len(finals) >= len(ref) - (1 if offset_s >= 4.0 else 0)


def test_unknown_audio_is_labelled_unknown() -> None:
    """A sentence no file taught gets 'unknown' words, not another file's text."""
    rate = 16000
    table = learn(pcm("numbers", rate), rate, reference("numbers"))
    stream = recognizer({rate: table}).stream(rate)
    data = pcm("meeting", rate).tobytes()
    finals = [h.text for h in [*stream.feed(data), *stream.flush()] if h.final]
    assert finals and all(set(t.split()) == {"unknown"} for t in finals)
