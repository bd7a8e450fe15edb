"""Make the demo audio under ``scenarios/audio/`` from known text with flite.

flite voices are recognized by pocketsphinx (espeak-ng voices are not), so these
clips give the embedded simulator real speech to transcribe. Each clip is a few
sentences joined by silence, so the recognizer sees sentence ends. The known
text goes beside each WAV as ``<name>.txt`` (one sentence a line), for WER tests.

Usage: python tools/make_demo_audio.py [OUT_DIR]     (needs: apt-get install flite)
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf
import soxr

# name, flite voice, output rate, channels, sentences
CLIPS: list[tuple[str, str, int, int, list[str]]] = [
    (
        "weather",
        "slt",
        16000,
        1,
        [
            "the weather today is sunny and warm",
            "tomorrow there will be rain in the north",
            "please bring an umbrella to the meeting",
        ],
    ),
    (
        "meeting",
        "rms",
        48000,
        2,
        [
            "good morning everyone and welcome to the meeting",
            "we will review the budget for the next quarter",
            "the project is on time and under budget",
        ],
    ),
    (
        "numbers",
        "awb",
        22050,
        1,
        [
            "the train leaves at seven in the evening",
            "there are twelve people in the room",
        ],
    ),
]

GAP_S = 0.8  # silence between sentences: longer than a VAD sentence end
LEAD_S = 0.3


def synthesize(text: str, voice: str, workdir: pathlib.Path) -> tuple[np.ndarray, int]:
    out = workdir / "s.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True)
    data, rate = sf.read(out, dtype="float32", always_2d=False)
    return np.asarray(data, dtype=np.float32), int(rate)


def make_clip(
    voice: str, rate: int, channels: int, sentences: list[str], workdir: pathlib.Path
) -> np.ndarray:
    parts: list[np.ndarray] = []
    for text in sentences:
        pcm, src_rate = synthesize(text, voice, workdir)
        if src_rate != rate:
            pcm = soxr.resample(pcm, src_rate, rate, quality="HQ").astype(np.float32)
        parts.append(np.zeros(int(GAP_S * rate), dtype=np.float32))
        parts.append(pcm)
    parts.append(np.zeros(int(GAP_S * rate), dtype=np.float32))
    mono = np.concatenate([np.zeros(int(LEAD_S * rate), dtype=np.float32), *parts])
    if channels == 1:
        return mono
    # A stereo clip whose right channel is slightly quieter: downmix must average.
    return np.stack([mono, mono * 0.8], axis=1)


def main(argv: list[str]) -> int:
    if shutil.which("flite") is None:
        print("error: flite is not installed; fix: apt-get install flite", file=sys.stderr)
        return 2
    out_dir = pathlib.Path(argv[1] if len(argv) > 1 else "scenarios/audio")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, voice, rate, channels, sentences in CLIPS:
            clip = make_clip(voice, rate, channels, sentences, pathlib.Path(tmp))
            sf.write(out_dir / f"{name}.wav", clip, rate, subtype="PCM_16")
            (out_dir / f"{name}.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
            print(f"{out_dir / name}.wav  {rate} Hz  {channels} ch  {len(clip) / rate:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
