"""A deterministic recognizer for tests and load tests: an energy VAD plus a labeler.

The VAD classifies 10 ms frames of the sample stream as speech (mean power above
``threshold_dbfs``) or silence. A sentence starts at the first speech frame and ends
once ``max_sentence_silence_ms`` of silence follow its last speech frame (the hangover).
Inside a sentence, each run of speech frames is a *piece*; when a piece closes the
labeler may extend the sentence's words (a partial), and when the sentence ends it
gives the final words.

Frames are cut from the sample stream, not from the chunks, so results do not depend
on how the audio is chunked. With the tone labeler they do not depend on where the task
started either: a replay from a sentence boundary gives the same sentences.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Final, Protocol

import msgspec
import numpy as np
import numpy.typing as npt
import trio

from engine.errors import LocalProtocolError

from ._levels import LevelCache, frame_energies
from .base import Hypothesis, RecognizedWord
from .tonecode import DecodeCache, ToneLabeler
from .transcript import TranscriptLabeler

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "Labeler",
    "ScriptedRecognizer",
    "ScriptedSession",
    "ScriptedStream",
    "ToneLabeler",
    "TranscriptLabeler",
    "VadConfig",
]

Samples = npt.NDArray[np.int16]
_FULL_SCALE: Final = 32768.0


_NO_SAMPLES: Final[Samples] = np.zeros(0, np.int16)
_NO_SAMPLES.flags.writeable = False  # shared by every stream: nothing pending


class VadConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Energy VAD settings of a :class:`ScriptedRecognizer`."""

    threshold_dbfs: float = -40.0
    """A frame is speech when its RMS is at least this loud (dB below full scale)."""
    max_sentence_silence_ms: int = 700
    """A sentence ends after this much silence (must exceed the pauses between words)."""
    min_speech_ms: int = 30
    """Sentences with less speech than this are dropped as clicks."""
    frame_ms: int = 10

    def __post_init__(self) -> None:
        if self.frame_ms <= 0 or self.max_sentence_silence_ms < self.frame_ms:
            raise ValueError("need frame_ms > 0 and max_sentence_silence_ms >= frame_ms")


class Labeler(Protocol):
    """Turns the pieces of one sentence into words; one instance per session."""

    needs_audio: bool
    """Whether :meth:`heard` wants the samples (else it gets an empty array)."""

    def heard(
        self, begin_ms: int, end_ms: int, samples: Samples, samples_begin_ms: float
    ) -> list[RecognizedWord]:
        """A piece ``[begin_ms, end_ms)`` closed; return the sentence's words so far.

        ``samples`` hold the piece plus up to one VAD frame either side and start at
        ``samples_begin_ms``. Times are ms on the session timeline.
        """
        ...

    def finish(self, begin_ms: int, end_ms: int, *, keep: bool) -> list[RecognizedWord]:
        """The sentence ``[begin_ms, end_ms)`` ended: its final words; reset for the next.

        ``keep=False`` drops it (too little speech): return nothing, consume nothing.
        """
        ...


class ScriptedStream:
    """The synchronous core of a scripted session (no I/O, no clock).

    ``feed`` accepts any chunking of int16 LE mono PCM, including odd byte counts.
    """

    def __init__(
        self,
        sample_rate: int,
        labeler: Labeler,
        vad: VadConfig,
        levels: LevelCache | None = None,
    ) -> None:
        self._rate = sample_rate
        self._frame = sample_rate * vad.frame_ms // 1000
        if self._frame < 1:
            raise ValueError(f"sample rate {sample_rate} Hz is too low")
        self._frame_bytes = 2 * self._frame
        self._labeler = labeler
        self._needs_audio = labeler.needs_audio
        self._levels = levels if levels is not None else LevelCache()
        self._vad = vad
        self._threshold = self._frame * (_FULL_SCALE * 10 ** (vad.threshold_dbfs / 20)) ** 2
        self._hangover = -(-vad.max_sentence_silence_ms // vad.frame_ms)  # in frames
        self._odd_byte = b""
        self._pending: Samples = _NO_SAMPLES
        self._pos = 0  # sample index of the first pending sample
        # The labeler's audio from sample _audio_pos on, in the pieces fed (joined only when
        # a piece closes: a concatenation per feed cost more than the VAD's arithmetic).
        self._chunks: list[bytes] = []  # int16 LE PCM (joined as bytes: cheaper than arrays)
        self._audio_pos = 0
        self._in_sentence = self._in_speech = self._flushed = False
        self._sentence_begin = self._piece_begin = self._speech_end = 0  # sample indexes
        self._silent_frames = self._speech_frames = 0
        self._index = 0
        self._partial = ""
        # level()'s measurement (the VAD frames' energies), kept for the feed() of the very
        # same bytes object
        self._measured: tuple[bytes, Sequence[float]] | None = None

    def level(self, pcm: bytes) -> float | None:
        """The RMS of ``pcm`` (int16 units), measured as the VAD will measure it; pure.

        For a caller that needs the level of audio it is about to :meth:`feed` (the
        simulator's silence timers): when ``pcm`` is whole VAD frames that the stream
        would cut on their own (nothing pending, an even byte count), the RMS comes from
        the VAD frames' energies, and a :meth:`feed` of this same bytes object next uses
        them instead of measuring again. The sums are exact, so the RMS is what a direct
        computation gives. Otherwise None: measure it elsewhere.

        Chunks measured before (by any stream sharing this one's
        :class:`~._levels.LevelCache`) are looked up, not measured again.
        """
        if not self._measurable(pcm):
            return None
        energies = self._levels.energies(pcm, self._frame)
        self._measured = (pcm, energies)
        return math.sqrt(sum(energies) / (len(pcm) >> 1))

    def _measurable(self, pcm: bytes) -> bool:
        """Whether ``pcm`` would be cut into whole VAD frames on its own."""
        size = len(pcm)
        return (
            size > 0
            and size % self._frame_bytes == 0
            and not self._odd_byte
            and not len(self._pending)
        )

    def feed(self, pcm: bytes) -> list[Hypothesis]:
        """Add audio; return the partials and finals it completed, in order."""
        if self._flushed:
            raise LocalProtocolError("feed() after flush(): the session's audio has ended")
        measured, self._measured = self._measured, None
        if measured is not None and measured[0] is pcm:
            # level() measured this very chunk, and no feed came since (each one clears
            # the measurement): the stream can still cut it on its own.
            return self._feed_frames(pcm, measured[1])
        if self._measurable(pcm):  # whole VAD frames, nothing pending: the common case
            return self._feed_frames(pcm, self._levels.energies(pcm, self._frame))
        # This runs per received frame in the simulator, for thousands of sessions: few
        # numpy calls (each costs more than its arithmetic on 10 VAD frames), no copies.
        data = self._odd_byte + pcm if self._odd_byte else pcm
        even = len(data) & ~1
        self._odd_byte = data[even:] if even != len(data) else b""
        x: Samples = np.frombuffer(data, "<i2", count=even // 2)
        if len(self._pending):
            x = np.concatenate((self._pending, x))
        frame = self._frame
        n = len(x) // frame
        if n * frame == len(x):  # whole VAD frames (a 100 ms client frame): nothing left over
            frames, self._pending = x, _NO_SAMPLES
        else:
            frames, self._pending = x[: n * frame], x[n * frame :]
        if n == 0:
            return []
        energies = frame_energies(frames, frame)
        return self._feed_frames(frames.tobytes() if self._needs_audio else b"", energies)

    def _feed_frames(self, frames: bytes, energies: Sequence[float]) -> list[Hypothesis]:
        """The VAD and labeler over whole VAD frames (``frames``: their PCM, or ``b""``
        when the labeler needs no audio), given their energies."""
        frame = self._frame
        n = len(energies)
        base, self._pos = self._pos, self._pos + n * frame
        if self._needs_audio:
            self._chunks.append(frames)
        threshold = self._threshold
        out: list[Hypothesis] = []
        # Runs of speech and of silence, one comparison per VAD frame; most chunks are
        # one run (min and max in C tell, without the loop).
        kind = energies[0] >= threshold
        first = 0
        one_run = min(energies) >= threshold if kind else max(energies) < threshold
        for i in range(1, 1 if one_run else n):
            if (energies[i] >= threshold) is not kind:
                if kind:
                    self._on_speech(base + first * frame, base + i * frame, out)
                else:
                    self._on_silence(base + first * frame, i - first, out)
                kind = not kind
                first = i
        if kind:
            self._on_speech(base + first * frame, base + n * frame, out)
        elif self._in_sentence:  # silence outside a sentence changes nothing
            self._on_silence(base + first * frame, n - first, out)
        if not self._in_sentence:  # keep one frame of lead-in padding for the next piece
            self._trim(self._pos - frame)
        return out

    def flush(self) -> list[Hypothesis]:
        """End of audio: close any open sentence and return its final. Idempotent."""
        out: list[Hypothesis] = []
        if not self._flushed:
            self._flushed = True
            if self._in_speech:
                self._close_piece(self._pos, out)
            if self._in_sentence:
                self._end_sentence(out)
        return [h for h in out if h.final]

    def _on_speech(self, begin: int, end: int, out: list[Hypothesis]) -> None:
        if not self._in_sentence:
            self._in_sentence = True
            self._sentence_begin = begin
            self._speech_frames = 0
        if not self._in_speech:
            self._in_speech = True
            self._piece_begin = begin
        self._silent_frames = 0
        self._speech_frames += (end - begin) // self._frame
        self._speech_end = end

    def _on_silence(self, begin: int, frames: int, out: list[Hypothesis]) -> None:
        if self._in_speech:
            self._close_piece(begin, out)
        if self._in_sentence:
            self._silent_frames += frames
            if self._silent_frames >= self._hangover:
                self._end_sentence(out)

    def _close_piece(self, end: int, out: list[Hypothesis]) -> None:
        self._in_speech = False
        pad_begin = max(self._piece_begin - self._frame, self._audio_pos)
        lo, hi = pad_begin - self._audio_pos, end + self._frame - self._audio_pos
        words = self._labeler.heard(
            self._ms(self._piece_begin),
            self._ms(end),
            self._joined()[lo:hi],
            pad_begin * 1000 / self._rate,
        )
        self._trim(end)
        text = " ".join(w.text for w in words)
        if words and text != self._partial:
            self._partial = text
            begin_ms = words[0].begin_ms
            out.append(Hypothesis(self._index, begin_ms, None, text, tuple(words)))

    def _end_sentence(self, out: list[Hypothesis]) -> None:
        self._in_sentence = False
        self._partial = ""
        keep = self._speech_frames * self._vad.frame_ms >= self._vad.min_speech_ms
        begin_ms, end_ms = self._ms(self._sentence_begin), self._ms(self._speech_end)
        words = self._labeler.finish(begin_ms, end_ms, keep=keep)
        if words:
            text = " ".join(w.text for w in words)
            first, last = words[0].begin_ms, words[-1].end_ms
            out.append(Hypothesis(self._index, first, last, text, tuple(words), final=True))
            self._index += 1

    def _joined(self) -> Samples:
        """The labeler's audio as one array (from sample ``_audio_pos`` on)."""
        chunks = self._chunks
        if len(chunks) != 1:
            self._chunks = chunks = [b"".join(chunks)]
        return np.frombuffer(chunks[0], "<i2")

    def _trim(self, keep_from: int) -> None:
        """Forget the labeler's audio before sample ``keep_from``."""
        drop = keep_from - self._audio_pos
        if drop <= 0:
            return
        drop <<= 1  # in bytes
        chunks = self._chunks
        while chunks and len(chunks[0]) <= drop:
            drop -= len(chunks.pop(0))
        if chunks and drop:
            chunks[0] = chunks[0][drop:]
        self._audio_pos = keep_from

    def _ms(self, sample: int) -> int:
        return round(sample * 1000 / self._rate)


class ScriptedSession:
    """A :class:`~.base.RecognizerSession` around a :class:`ScriptedStream`.

    Every async method is a checkpoint and does all its work synchronously (no
    threads); :meth:`feed_nowait` is ``feed`` without the checkpoint, for a caller
    that checkpoints anyway (the simulator's task loop).
    """

    def __init__(self, stream: ScriptedStream) -> None:
        self._stream = stream
        # The stream's own methods (one call less per frame for the simulator):
        self.feed_nowait: Callable[[bytes], list[Hypothesis]] = stream.feed
        """What :meth:`feed` returns, computed now (not a checkpoint)."""
        self.level_nowait: Callable[[bytes], float | None] = stream.level
        """:meth:`ScriptedStream.level`: the RMS of audio about to be fed, or None."""

    async def feed(self, pcm: bytes) -> list[Hypothesis]:
        await trio.lowlevel.checkpoint()
        return self._stream.feed(pcm)

    async def flush(self) -> list[Hypothesis]:
        await trio.lowlevel.checkpoint()
        return self._stream.flush()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class ScriptedRecognizer:
    """A deterministic :class:`~.base.Recognizer`: energy VAD plus a labeler per session.

    Build it with :meth:`tone` or :meth:`transcript`, or pass any labeler factory.
    ``language`` is ignored.
    """

    def __init__(
        self,
        labeler: Callable[[int], Labeler],
        *,
        vad: VadConfig | None = None,
        name: str = "scripted",
    ) -> None:
        self.name = name
        self._labeler = labeler
        self._vad = vad if vad is not None else VadConfig()
        # Shared by every session: looped audio is measured once per distinct chunk.
        self._levels = LevelCache()

    @classmethod
    def tone(cls, *, vad: VadConfig | None = None) -> ScriptedRecognizer:
        """Recognize tone-coded audio made by :func:`.tonecode.synthesize`.

        The sessions share one :class:`~.tonecode.DecodeCache`: a load test's looped
        audio is decoded once per distinct burst, not once per session.
        """
        cache = DecodeCache()
        return cls(functools.partial(ToneLabeler, cache=cache), vad=vad, name="scripted-tone")

    @classmethod
    def transcript(
        cls, sentences: Sequence[str], *, vad: VadConfig | None = None, ms_per_word: int = 300
    ) -> ScriptedRecognizer:
        """Label the k-th speech segment of every session with ``sentences[k]``."""
        known = list(sentences)
        return cls(
            lambda _rate: TranscriptLabeler(known, ms_per_word=ms_per_word),
            vad=vad,
            name="scripted-transcript",
        )

    def stream(self, sample_rate: int) -> ScriptedStream:
        """A synchronous session core, for pure tests and benchmarks."""
        return ScriptedStream(sample_rate, self._labeler(sample_rate), self._vad, self._levels)

    async def open_session(self, *, sample_rate: int, language: str | None) -> ScriptedSession:
        await trio.lowlevel.checkpoint()
        return ScriptedSession(self.stream(sample_rate))

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
