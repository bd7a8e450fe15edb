"""The benchmark's speech: a ~20 s tone-coded script, as PCM or a WAV file, and its scoring.

Every design of a ramp step streams the same file from its start, so every stream
must get exactly the script's sentences back as finals ("every final right"): the
scripted simulator recognizer decodes tone-coded words from the audio alone
(``adapters.recognizers.tonecode``), whatever the client design.
"""

from __future__ import annotations

import collections
import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from adapters.recognizers.tonecode import synthesize

RATE: Final = 16000
MODEL: Final = "paraformer-realtime-v2"
#: Eleven sentences of the tone vocabulary: about 20 s of audio with the default timings.
FULL: Final[tuple[str, ...]] = (
    "good morning",
    "the weather today is sunny",
    "the train leaves at seven",
    "thank you",
    "the meeting is in room two",
    "we have a new project budget",
    "will it rain tomorrow evening",
    "yes please stop",
    "hello world",
    "what time is the next train",
    "they are there today",
)
#: Two short sentences, about 2.6 s: the smoke test's clip.
QUICK: Final[tuple[str, ...]] = ("good morning", "thank you")
SCRIPTS: Final[dict[str, tuple[str, ...]]] = {"full": FULL, "quick": QUICK}
_STRIP = str.maketrans("", "", string.punctuation.replace("'", ""))


def speech(script: str = "full", rate: int = RATE) -> npt.NDArray[np.int16]:
    """A script (a key of :data:`SCRIPTS`) as 16-bit mono samples."""
    return synthesize(list(SCRIPTS[script]), rate)


def frames(frame_samples: int, script: str = "full", rate: int = RATE) -> list[bytes]:
    """A script as little-endian PCM frames, the last one padded with silence."""
    samples = speech(script, rate)
    pad = -len(samples) % frame_samples
    pcm = np.concatenate([samples, np.zeros(pad, dtype=np.int16)]).astype("<i2").tobytes()
    step = frame_samples * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def write_wav(path: Path, script: str = "full", rate: int = RATE) -> float:
    """Write a script as a 16-bit mono WAV file; return its duration in seconds."""
    import soundfile

    samples = speech(script, rate)
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return len(samples) / rate


def words(text: str) -> tuple[str, ...]:
    """A sentence as lower-case words without punctuation (how finals are compared)."""
    return tuple(text.translate(_STRIP).lower().split())


def score(finals: Iterable[Sequence[str]], streams: int, script: str = "full") -> dict[str, Any]:
    """Compare each stream's final texts with a script.

    ``right`` counts finals that match a script sentence not matched yet (a multiset
    match per stream); ``wrong`` the other finals; a stream is ``all right`` when its
    finals are exactly the script, in order. Streams that reported nothing count as
    having no finals.
    """
    expected = [words(s) for s in SCRIPTS[script]]
    right = wrong = all_right = seen = 0
    for texts in finals:
        seen += 1
        got = [words(t) for t in texts]
        matched = collections.Counter(got) & collections.Counter(expected)
        n = sum(matched.values())
        right += n
        wrong += len(got) - n
        all_right += got == expected
    return {
        "finals_expected": streams * len(expected),
        "finals_right": right,
        "finals_wrong": wrong,
        "streams_all_right": all_right,
        "streams_reported": seen,
        "every_final_right": all_right == streams,
    }
