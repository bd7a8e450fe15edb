"""A task's uplink audio: container handling, silence detection, and the bounded queue.

:class:`TaskAudio` is pure (no trio): it turns received binary frames into
mono int16 PCM for the recognizer. With ``format: "wav"`` it parses and strips a
RIFF header from the first bytes (``Recognition.call(file)`` sends the raw file),
and passes headerless data through unchanged, as clients streaming "wav" often
send bare PCM. An odd trailing byte is carried to the next frame so samples never
split.

:class:`AudioQueue` is the per-task buffer between the connection's reader and
its recognizer task: bounded in bytes, never blocking the producer.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from typing import TYPE_CHECKING, Final

import numpy as np
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AudioFormatError", "AudioQueue", "TaskAudio"]

_MAX_HEADER: Final = 1 << 16
_PCM_FORMATS: Final = frozenset({1, 0xFFFE})  # WAVE_FORMAT_PCM, WAVE_FORMAT_EXTENSIBLE


class AudioFormatError(ValueError):
    """The audio does not match the declared format (maps to ``UNSUPPORTED_FORMAT``)."""


class TaskAudio:
    """Turns one task's binary frames into PCM and keeps its audio clock.

    Args:
        audio_format: ``"pcm"`` or ``"wav"``.
        sample_rate: the rate declared in ``run-task``.
    """

    def __init__(self, audio_format: str, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._header: bytearray | None = bytearray() if audio_format == "wav" else None
        self._carry = b""
        self.pcm_bytes = 0

    @property
    def duration_ms(self) -> int:
        """Milliseconds of PCM received so far (the task's audio clock)."""
        return self.pcm_bytes * 1000 // (2 * self.sample_rate)

    @property
    def billed_seconds(self) -> int:
        """Seconds of audio received, rounded up (``usage.duration``)."""
        return math.ceil(self.pcm_bytes / (2 * self.sample_rate))

    def push(self, data: bytes) -> bytes:
        """Take one binary frame; return the whole samples it completes (maybe ``b""``).

        Raises:
            AudioFormatError: a WAV header that is not 16-bit mono PCM at the
                declared rate, or that never ends.
        """
        if self._header is not None:
            self._header += data
            parsed = _parse_wav_header(self._header, self.sample_rate)
            if parsed is None:
                if len(self._header) > _MAX_HEADER:
                    raise AudioFormatError(
                        "Failed to decode audio: no data chunk in the WAV header"
                    )
                return b""
            data = bytes(self._header[parsed:])
            self._header = None
        if self._carry:
            data = self._carry + data
        if len(data) % 2:
            data, self._carry = data[:-1], data[-1:]
        else:
            self._carry = b""
        self.pcm_bytes += len(data)
        return data

    @staticmethod
    def rms(pcm: bytes) -> float:
        """Root-mean-square level of int16 PCM (0.0 for no samples)."""
        if not pcm:
            return 0.0
        # One dot product: np.mean's Python-level overhead cost more than the sum itself
        # (this runs on every received frame).
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        return math.sqrt(float(samples.dot(samples)) / len(samples))


def _parse_wav_header(buf: bytearray, sample_rate: int) -> int | None:
    """Offset of the first PCM byte, 0 if ``buf`` is not RIFF at all, None if incomplete."""
    if len(buf) < 12:
        return 0 if buf[:4] != b"RIFF"[: len(buf)] else None
    if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
        return 0
    pos = 12
    fmt_seen = False
    while pos + 8 <= len(buf):
        chunk_id = bytes(buf[pos : pos + 4])
        (size,) = struct.unpack_from("<I", buf, pos + 4)
        body = pos + 8
        if chunk_id == b"data":
            if not fmt_seen:
                raise AudioFormatError("Failed to decode audio: WAV data chunk before fmt chunk")
            return body
        if body + size > len(buf):
            return None
        if chunk_id == b"fmt ":
            _check_fmt(bytes(buf[body : body + size]), sample_rate)
            fmt_seen = True
        pos = body + size + (size & 1)
    return None


def _check_fmt(fmt: bytes, sample_rate: int) -> None:
    if len(fmt) < 16:
        raise AudioFormatError("Failed to decode audio: truncated WAV fmt chunk")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag not in _PCM_FORMATS or bits != 16:
        raise AudioFormatError(f"wav must be 16-bit PCM (format tag {tag}, {bits} bits)")
    if channels != 1:
        raise AudioFormatError(f"wav must be mono, not {channels} channels")
    if rate != sample_rate:
        raise AudioFormatError(
            f"wav header says {rate} Hz but run-task sample_rate is {sample_rate}"
        )


class AudioQueue:
    """Audio waiting for the recognizer; bounded in bytes, never blocks the producer.

    ``put_nowait`` refuses (returns False) instead of blocking, so the
    connection's reader keeps reading and answering pings; ``close`` marks the
    end of the task's audio (``finish-task``).
    """

    def __init__(self, limit_bytes: int) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit_bytes
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()
        self._wake_at = 1  # bytes queued that wake the waiting getter (its min_bytes)
        self._inline: Callable[[], bool] | None = None  # the waiting getter's inline consumer
        self._kicked = False

    @property
    def queued_bytes(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        """True once the task's audio has ended (``finish-task`` received)."""
        return self._closed

    def put_nowait(self, pcm: bytes) -> bool:
        """Queue ``pcm``; False if it would exceed the bound (nothing is queued). Not a checkpoint."""
        if self._closed:
            raise trio.ClosedResourceError("the task's audio has ended")
        if self._size + len(pcm) > self._limit:
            return False
        if pcm:
            self._chunks.append(pcm)
            self._size += len(pcm)
            if self._size >= self._wake_at:
                inline = self._inline
                if inline is None or not inline():
                    self._lot.unpark_all()
        return True

    def take_nowait(self, max_bytes: int) -> bytes:
        """Queued chunks joined up to about ``max_bytes`` (``b""`` if none); not a checkpoint.

        For the inline consumer of :meth:`get`; a single chunk larger than ``max_bytes``
        comes out whole.
        """
        chunks = self._chunks
        if len(chunks) == 1:  # the common case: the frame just put
            chunk = chunks.popleft()
            self._size -= len(chunk)
            return chunk
        if not chunks:
            return b""
        parts = [chunks.popleft()]
        total = len(parts[0])
        while self._chunks and total + len(self._chunks[0]) <= max_bytes:
            chunk = self._chunks.popleft()
            parts.append(chunk)
            total += len(chunk)
        self._size -= total
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def kick(self) -> None:
        """Wake the waiting getter now, whatever is queued: its :meth:`get` returns
        ``b""`` if nothing is (its inline consumer left it work). Not a checkpoint."""
        self._kicked = True
        self._lot.unpark_all()

    def close(self) -> None:
        """End of audio: ``get`` drains what is queued, then returns None. Idempotent."""
        self._closed = True
        self._lot.unpark_all()

    async def get(
        self, max_bytes: int, min_bytes: int = 1, *, inline: Callable[[], bool] | None = None
    ) -> bytes | None:
        """Wait for audio; return whole queued chunks joined up to about ``max_bytes``.

        Waits until at least ``min_bytes`` are queued (the getter is not woken
        before), or the queue is closed: then what is left comes out. Returns None
        once the queue is closed and empty. A single chunk larger than
        ``max_bytes`` is returned whole.

        Args:
            inline: while this waits, :meth:`put_nowait` calls ``inline()`` in the
                producer's task instead of waking it, once ``min_bytes`` are queued;
                it consumes with :meth:`take_nowait` and returns True, or returns
                False having done nothing (the getter is woken as usual). If it
                leaves work for the getter, it calls :meth:`kick`: this returns
                ``b""`` when nothing is queued then.
        """
        min_bytes = max(min(min_bytes, max_bytes), 1)
        parked = False
        while self._size < min_bytes and not self._closed and not self._kicked:
            self._wake_at = min_bytes
            self._inline = inline
            try:
                await self._lot.park()
            finally:
                self._wake_at = 1
                self._inline = None
            parked = True
        self._kicked = False
        if not parked:
            await trio.lowlevel.checkpoint()
        if not self._chunks:
            return b"" if not self._closed else None
        return self.take_nowait(max_bytes)
