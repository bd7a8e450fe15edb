"""The realtime endpoint's server VAD: an energy detector over the session's audio.

Pure (no trio, no clock): :class:`EnergyVad` cuts the appended PCM into 10 ms
frames and turns it into speech segments on the **session's audio timeline**
(milliseconds of audio received, as ``audio_start_ms``/``audio_end_ms`` count
them, DASHSCOPE.md §5.3):

* a frame is *loud* when its RMS reaches :func:`rms_threshold` of
  ``turn_detection.threshold``;
* :data:`ONSET_FRAMES` loud frames in a row start a segment (a click does not);
  the segment begins ``prefix_padding_ms`` before the first of them (never
  before the previous segment's end, nor before 0), and that look-back audio
  is the segment's first audio (:class:`Onset`);
* ``silence_duration_ms`` of quiet frames end it: :class:`Offset` at the end of
  that silence, which is part of the segment — as OpenAI's ``server_vad``
  reports ``audio_end_ms`` (the DashScope docs give no definition; a guess).

Chunking does not matter: frames are cut from the sample stream, and an odd
byte or a partial frame waits for the next push.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final, NamedTuple

import numpy as np

__all__ = [
    "FRAME_MS",
    "ONSET_FRAMES",
    "EnergyVad",
    "Offset",
    "Onset",
    "VadEvent",
    "VadSettings",
    "Voice",
    "rms_threshold",
]

FRAME_MS: Final = 10
ONSET_FRAMES: Final = 3
"""Loud frames in a row that start a segment (30 ms)."""
_FULL_SCALE: Final = 32768.0
_DBFS_AT_ZERO: Final = -50.0
_DB_PER_UNIT: Final = 25.0


def rms_threshold(threshold: float) -> float:
    """The int16 RMS level ``turn_detection.threshold`` stands for.

    The service documents only the range (−1.0…1.0; higher is less sensitive,
    default 0.2). The simulator maps it linearly in decibels: 0 is −50 dBFS,
    each unit 25 dB — so the default is −45 dBFS (RMS ≈ 184), −1 is −75 dBFS
    and 1 is −25 dBFS. A guess, chosen so the default hears everything the
    scripted recognizer does (−40 dBFS).
    """
    return _FULL_SCALE * 10 ** ((_DBFS_AT_ZERO + _DB_PER_UNIT * threshold) / 20)


class VadSettings(NamedTuple):
    """``turn_detection`` as the detector needs it."""

    threshold_rms: float
    silence_ms: int
    padding_ms: int


class Onset(NamedTuple):
    """Speech started at ``start_ms``; ``pcm`` is the segment's audio so far (look-back included)."""

    start_ms: int
    pcm: bytes


class Voice(NamedTuple):
    """More audio of the open segment."""

    pcm: bytes


class Offset(NamedTuple):
    """The open segment ended at ``end_ms`` (after its closing silence)."""

    end_ms: int


VadEvent = Onset | Voice | Offset


class EnergyVad:
    """Finds speech segments in one sample rate's PCM (int16 little-endian mono).

    Args:
        sample_rate: of the audio pushed (8000 or 16000).
        settings: thresholds; may be replaced between pushes (:attr:`settings`).
        start_ms: the session time of the first sample (after a rate change).
    """

    def __init__(self, sample_rate: int, settings: VadSettings, *, start_ms: int = 0) -> None:
        self.sample_rate = sample_rate
        self.settings = settings
        self._frame_bytes = sample_rate * FRAME_MS // 1000 * 2
        self._carry = b""
        self._frames = 0  # whole frames pushed
        self._start_ms = start_ms
        self._lookback: deque[bytes] = deque()
        self._run = 0  # loud frames in a row, outside a segment
        self._quiet = 0  # quiet frames in a row, inside a segment
        self.in_speech = False

    @property
    def position_ms(self) -> int:
        """Session time after the last whole frame pushed."""
        return self._start_ms + self._frames * FRAME_MS

    def push(self, pcm: bytes) -> list[VadEvent]:
        """Add audio; the segment events it completes, in order (``Voice`` batched)."""
        data = self._carry + pcm
        whole = len(data) - len(data) % self._frame_bytes
        self._carry = data[whole:]
        if not whole:
            return []
        samples = np.frombuffer(data[:whole], "<i2").astype(np.float64)
        frames = samples.reshape(-1, self._frame_bytes // 2)
        rms = np.sqrt(np.einsum("ij,ij->i", frames, frames) / frames.shape[1])
        loud = (rms >= self.settings.threshold_rms).tolist()
        out: list[VadEvent] = []
        voice: list[bytes] = []
        step = self._frame_bytes
        for i, is_loud in enumerate(loud):
            frame = data[i * step : (i + 1) * step]
            self._frames += 1
            if self.in_speech:
                voice.append(frame)
                self._quiet = 0 if is_loud else self._quiet + 1
                if self._quiet * FRAME_MS >= self.settings.silence_ms:
                    out.append(Voice(b"".join(voice)))
                    voice = []
                    out.append(Offset(self.position_ms))
                    self.in_speech = False
                    self._run = 0
                continue
            self._lookback.append(frame)
            self._run = self._run + 1 if is_loud else 0
            padding = math.ceil(self.settings.padding_ms / FRAME_MS)
            while len(self._lookback) > padding + ONSET_FRAMES:
                self._lookback.popleft()
            if self._run >= ONSET_FRAMES:
                head = list(self._lookback)[-(padding + self._run) :]
                self._lookback.clear()
                out.append(Onset(self.position_ms - len(head) * FRAME_MS, b"".join(head)))
                self.in_speech = True
                self._quiet = 0
        if voice:
            out.append(Voice(b"".join(voice)))
        return out

    def end(self) -> list[VadEvent]:
        """The audio ends (finish, mode or rate change): close an open segment here."""
        self._carry = b""
        self._lookback.clear()
        self._run = 0
        if not self.in_speech:
            return []
        self.in_speech = False
        return [Offset(self.position_ms)]

    def clear(self) -> None:
        """Forget audio not yet in a segment (``input_audio_buffer.clear``); not a segment's."""
        self._lookback.clear()
        self._run = 0
