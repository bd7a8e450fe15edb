"""The translated voice of the realtime endpoint — a synthetic stand-in, not speech.

The simulator cannot speak. Where livetranslate sends the translation as 24 kHz
16-bit mono PCM (``response.audio.delta``, DASHSCOPE.md §5.3), the simulator
sends a **clearly synthetic** signal instead: each unit of the translation (a
word, or one CJK character) becomes a soft tone burst of :data:`TONE_MS`
followed by :data:`GAP_MS` of silence, so the audio lasts
:data:`UNIT_MS` × units — proportional to the translation's length, as speech
would be. A unit's pitch comes from a CRC of its text, so the same translation
always gives the same bytes.

:class:`VoiceStream` speaks a translation as it grows: a unit is spoken once
it is settled (``text``, not ``stash``), and the PCM leaves in chunks of
:data:`CHUNK_MS` (the last one of a response may be shorter).
"""

from __future__ import annotations

import re
import zlib
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "CHUNK_MS",
    "GAP_MS",
    "TONE_MS",
    "UNIT_MS",
    "VOICE_RATE",
    "VoiceStream",
    "synthesize",
    "units",
]

VOICE_RATE: Final = 24000
"""Sample rate of the output audio (16-bit mono little-endian)."""
TONE_MS: Final = 180
GAP_MS: Final = 60
UNIT_MS: Final = TONE_MS + GAP_MS
CHUNK_MS: Final = 200
"""Audio per ``response.audio.delta`` (9 600 bytes)."""
_BYTES_PER_MS: Final = VOICE_RATE * 2 // 1000
_AMPLITUDE: Final = 0.2 * 32767
_RAMP_MS: Final = 10
_BASE_HZ: Final = 220.0
_STEP_HZ: Final = 20.0
_PITCHES: Final = 24

_CJK: Final = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNIT = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


def units(text: str) -> list[str]:
    """The spoken units of ``text``: CJK characters one by one, other words whole.

    Pure punctuation is not spoken.
    """
    return [unit for unit in _UNIT.findall(text) if any(c.isalnum() for c in unit)]


def _burst(unit: str) -> npt.NDArray[np.float64]:
    frequency = _BASE_HZ + _STEP_HZ * (zlib.crc32(unit.encode()) % _PITCHES)
    n = VOICE_RATE * TONE_MS // 1000
    t = np.arange(n) / VOICE_RATE
    tone = np.sin(2 * np.pi * frequency * t)
    ramp = VOICE_RATE * _RAMP_MS // 1000
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    tone[:ramp] *= fade
    tone[-ramp:] *= fade[::-1]
    gap = np.zeros(VOICE_RATE * GAP_MS // 1000)
    return np.concatenate((tone * _AMPLITUDE, gap))


def synthesize(spoken: list[str]) -> bytes:
    """The stand-in voice of ``spoken`` units: ``UNIT_MS`` of PCM per unit."""
    if not spoken:
        return b""
    signal = np.concatenate([_burst(unit) for unit in spoken])
    return bytes(np.round(signal).astype("<i2").tobytes())


class VoiceStream:
    """Speaks one response's translation as it is settled, in chunks."""

    def __init__(self) -> None:
        self.spoken = 0
        """Units spoken so far."""
        self._pending = b""
        self.total_bytes = 0
        """PCM bytes handed out so far."""

    @property
    def duration_ms(self) -> int:
        return self.total_bytes // _BYTES_PER_MS

    def say(self, text: str, *, final: bool) -> list[bytes]:
        """Speak the units of ``text`` not spoken yet; the whole chunks ready (all if ``final``).

        Units already spoken stay spoken if a later ``text`` revises them, as an
        interpreter cannot take back what it said.
        """
        said = units(text)
        if len(said) > self.spoken:
            self._pending += synthesize(said[self.spoken :])
            self.spoken = len(said)
        size = CHUNK_MS * _BYTES_PER_MS
        cut = len(self._pending) if final else len(self._pending) - len(self._pending) % size
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        chunks = [ready[i : i + size] for i in range(0, len(ready), size)]
        self.total_bytes += len(ready)
        return chunks
