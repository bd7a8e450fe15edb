"""The translated voice as a WAV file: every ``TranslatedAudio`` chunk, back to back.

The file is 16-bit mono PCM at ``rate`` (24 kHz, the livetranslate model's voice).
Chunks at another rate are resampled to it with soxr, one continuous resampler per
response (see :class:`~adapters.audio.resample.Pcm16Converter`), rather than refused:
a voice in the wrong pitch or a dropped output would be worse than a resampled one.
Responses follow each other without added silence, so the file's time is *speech
time*, not stream time.

Crash safety: the 44-byte header is written at open (declaring no audio) and
rewritten with the true sizes after every chunk, in one ``pwrite`` within the first
page. Audio goes first, then the header, so at any instant the header declares at
most the audio that is on disk. If the process dies, the file is a valid WAV holding
every chunk whose :meth:`VoiceWavSink.write` returned; a chunk being written at that
moment may lie beyond the declared size, where readers (libsndfile, ffmpeg) ignore
it. A failed write is truncated away before the error propagates. :meth:`close`
fsyncs; before that the data is as durable as the page cache (a power cut can lose
the tail, like every sink).

Size: a RIFF size field is 32 bits, so one WAV holds at most about 4 GiB (24.8 hours
at 24 kHz). A 24/7 stream therefore rolls over to ``<stem>-002.wav``,
``<stem>-003.wav``, … (:attr:`VoiceWavSink.paths`), each a complete WAV; the chunk
that crosses the limit is split exactly, so the parts concatenate to the whole.
"""

from __future__ import annotations

import contextlib
import os
import struct
from typing import TYPE_CHECKING, Final

from adapters.audio.resample import Pcm16Converter
from engine.events import TranslatedAudio

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from engine.events import Event

__all__ = ["HEADER_BYTES", "MAX_DATA_BYTES", "VoiceWavSink", "wav_header"]

HEADER_BYTES: Final = 44
#: The most audio bytes one WAV can declare (the RIFF size, 36 + data, must fit in 32
#: bits), rounded down to whole samples.
MAX_DATA_BYTES: Final = (0xFFFFFFFF - 36) & ~1
_OPEN_FLAGS: Final = (
    os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


def wav_header(data_bytes: int, rate: int) -> bytes:
    """The canonical 44-byte header of a mono 16-bit PCM WAV with ``data_bytes`` of audio."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,  # fmt chunk size
        1,  # PCM
        1,  # channels
        rate,
        rate * 2,  # bytes per second
        2,  # bytes per frame
        16,  # bits per sample
        b"data",
        data_bytes,
    )


class _Part:
    """One WAV file of the sequence: its descriptor and how much audio it holds."""

    def __init__(self, path: Path, rate: int) -> None:
        self.path = path
        self.rate = rate
        self.data_bytes = 0
        self.fd: int | None = os.open(path, _OPEN_FLAGS, 0o644)
        try:
            self.put_header()
        except BaseException:
            self.close()
            raise

    def append(self, pcm: bytes | memoryview) -> None:
        """Write ``pcm`` after the audio, then declare it; truncate it away on failure."""
        assert self.fd is not None
        end = HEADER_BYTES + self.data_bytes
        view = memoryview(pcm)
        done = 0
        try:
            while done < len(view):
                done += os.pwrite(self.fd, view[done:], end + done)
        except BaseException:
            if done:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, end)
            raise
        self.data_bytes += done
        self.put_header()

    def put_header(self) -> None:
        assert self.fd is not None
        header = wav_header(self.data_bytes, self.rate)
        if os.pwrite(self.fd, header, 0) != len(header):
            raise OSError(f"{self.path}: short write of the WAV header")

    def close(self) -> None:
        """fsync and close; the descriptor is released even when fsync fails."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class VoiceWavSink:
    """Writes :class:`~engine.events.TranslatedAudio` into a 16-bit mono WAV at ``rate``.

    Every other event is ignored. The file is created (truncated) by the constructor,
    as a valid WAV with no audio; missing parent directories are created. Called from
    the renderer's worker thread, one call at a time (not thread-safe).

    Args:
        path: the WAV file (later parts go beside it, see the module docstring).
        rate: the file's sample rate; chunks at other rates are resampled to it.
        max_data_bytes: audio bytes per file before rolling over (default: the WAV
            limit, about 4 GiB); rounded down to whole samples.

    Raises:
        OSError: from the constructor, :meth:`write` and :meth:`close`.
        ValueError: :meth:`write` after :meth:`close`, or a chunk with a rate that is
            not positive.
    """

    def __init__(
        self, path: Path, *, rate: int = 24000, max_data_bytes: int = MAX_DATA_BYTES
    ) -> None:
        if not 2 <= max_data_bytes <= MAX_DATA_BYTES:
            raise ValueError(f"max_data_bytes must be 2..{MAX_DATA_BYTES}, got {max_data_bytes}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rate: Final = rate
        self._converter = Pcm16Converter(rate)
        self._max = max_data_bytes & ~1
        self._part: _Part | None = _Part(path, rate)
        self.paths: list[Path] = [path]
        self.frames = 0  # audio frames written, over all parts

    @property
    def path(self) -> Path:
        """The first file."""
        return self.paths[0]

    @property
    def closed(self) -> bool:
        return self._part is None

    @property
    def seconds(self) -> float:
        """Audio written so far, in seconds."""
        return self.frames / self.rate

    def touches_file(self, events: Sequence[Event]) -> bool:
        return any(isinstance(e, TranslatedAudio) for e in events)

    def write(self, event: Event) -> None:
        """Append the chunk's audio (resampled when its rate differs); ignore other events."""
        if not isinstance(event, TranslatedAudio):
            return
        if self._part is None:
            raise ValueError(f"{self.path}: write to a closed sink")
        self._append(self._converter.convert(event.pcm, event.rate, event.response_id))

    def close(self) -> None:
        """Write the resampler's tail, fix the header, fsync and close. Idempotent.

        The file is released even when a write fails; the error then propagates.
        """
        if self._part is None:
            return
        try:
            self._append(self._converter.flush())
        finally:
            part, self._part = self._part, None
            if part is not None:
                part.close()

    def _append(self, pcm: bytes) -> None:
        view = memoryview(pcm)
        while view:
            part = self._part
            assert part is not None
            if part.data_bytes >= self._max:
                part = self._roll_over(part)
            take = min(len(view), self._max - part.data_bytes)
            part.append(view[:take])
            self.frames += take // 2
            view = view[take:]

    def _roll_over(self, full: _Part) -> _Part:
        first = self.paths[0]
        path = first.with_name(f"{first.stem}-{len(self.paths) + 1:03d}{first.suffix}")
        full.close()
        self._part = None
        part = _Part(path, self.rate)
        self._part = part
        self.paths.append(path)
        return part

    def __repr__(self) -> str:
        return f"VoiceWavSink({str(self.path)!r})"
