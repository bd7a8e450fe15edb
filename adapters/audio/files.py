"""Audio files as async sources of mono float32 blocks.

:func:`open_audio_source` checks the file up front (exists, not empty, really audio,
8–48 kHz) and raises :class:`~engine.errors.InputError` with a one-line message naming
the cause and the fix, so a bad input fails before any streaming starts. It then yields
blocks of ``block_frames`` mono float32 samples (the channel average) at the file's own
rate; the last block may be shorter. :meth:`AudioSource.read_pcm16` reads mono int16
instead, in blocks as large as the caller likes (a paced capture reads a second or
two per thread hop and slices frames out of it).

Two decoders, chosen by extension:

* **soundfile** (libsndfile: WAV, FLAC, OGG, AIFF, …) reads in a worker thread, one
  block per :func:`trio.to_thread.run_sync` call; 16-bit PCM is read as int16 (no
  float round trip) when asked for int16, and the downmix runs in that thread too,
  batched with every other stream's int16 reads (:mod:`adapters.audio._batchread`).
* **ffmpeg** (mp3, m4a, mp4, webm and other containers) is probed with ``ffprobe`` and
  decoded by an ``ffmpeg`` subprocess writing f32le at the native rate and channel
  count; downmixing happens here, never in ffmpeg, so both decoders mix alike. A file
  libsndfile rejects falls back to ffmpeg when ffmpeg can probe it (:mod:`adapters.audio._ffmpeg`).

The executable lookup (``find_tool``, default :func:`shutil.which`) is injectable, so
tests can simulate a machine without ffmpeg.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
from pathlib import PurePath
from typing import TYPE_CHECKING, Final, NoReturn, Self, final

import numpy as np
import soundfile as sf
import trio

from adapters.audio._batchread import current_read_batcher
from adapters.audio._decode import MAX_RATE as MAX_RATE
from adapters.audio._decode import MIN_RATE as MIN_RATE
from adapters.audio._decode import SourceInfo as SourceInfo
from adapters.audio._decode import block_size, check_rate, no_audio, not_audio
from adapters.audio._ffmpeg import ToolFinder as ToolFinder
from adapters.audio._ffmpeg import find_ffmpeg, open_ffmpeg
from adapters.audio.pcm import to_mono_float32, to_mono_pcm16
from engine.errors import InputError

if TYPE_CHECKING:
    from types import TracebackType

    from numpy.typing import NDArray

    from adapters.audio._decode import Frames, Reader

__all__ = [
    "FFMPEG_EXTENSIONS",
    "MAX_RATE",
    "MIN_RATE",
    "AudioSource",
    "SourceInfo",
    "ToolFinder",
    "open_audio_source",
]

#: Extensions that always go through ffmpeg (libsndfile cannot read these containers;
#: it can read mp3, but ffmpeg handles its padding and odd headers better).
FFMPEG_EXTENSIONS: Final = frozenset(
    {".mp3", ".m4a", ".m4b", ".mp4", ".aac", ".webm", ".mkv", ".mka", ".mov", ".wma", ".amr"}
    | {".3gp", ".avi", ".ac3", ".flv"}
)


@final
class AudioSource:
    """An open audio file: an async iterator of mono float32 blocks (read-only arrays).

    Made by :func:`open_audio_source`; not constructed directly. Use it as an async
    context manager, or call :meth:`aclose`.

    Cancellation:
        Cancelling ``__anext__`` loses no audio: the next call continues where it
        stopped (a soundfile read finishes its block in the thread first).
    """

    def __init__(
        self,
        info: SourceInfo,
        reader: Reader,
        block_frames: int,
        first: Frames | None = None,
        *,
        end_error: InputError | None = None,
    ) -> None:
        self.info: Final = info
        self.path: Final = info.path
        self.rate: Final = info.rate
        self.channels: Final = info.channels  # of the file; blocks are always mono
        self.duration_s: Final = info.duration_s  # None when the container does not say
        self._reader = reader
        self._block_frames = block_frames
        self._pending = first
        self._done = False
        # Raised once, after the last block: the file ended early (a truncated WAV).
        self._end_error = end_error

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Frames:
        if self._pending is not None:
            frames, self._pending = self._pending, None
        elif self._done:
            self._stop()
        else:
            frames = await self._reader.read(self._block_frames)
        if len(frames) < self._block_frames:
            self._done = True
            if len(frames) == 0:
                self._stop()
        return to_mono_float32(frames)

    async def read_pcm16(self, frames: int, *, gather_s: float = 0.0) -> NDArray[np.int16]:
        """Up to ``frames`` mono int16 samples (a new array); empty at the end.

        ``gather_s``: how long the read may wait to share its worker-thread hop with
        other streams' reads (:mod:`adapters.audio._batchread`; a file read by
        libsndfile; 0: at once).

        Fewer than ``frames`` can come before the end too (the first block an
        ffmpeg probe read). After the end, a file cut short raises its
        :class:`InputError` once; later calls return empty. Do not mix with
        iterating the source. Cancellation: like ``__anext__``.
        """
        if frames <= 0:
            raise ValueError(f"frames must be positive, got {frames}")
        if self._pending is not None:
            first, self._pending = self._pending, None
            if len(first) < self._block_frames:
                self._done = True
            if len(first):
                return to_mono_pcm16(first)
        if self._done:
            error, self._end_error = self._end_error, None
            if error is not None:
                raise error
            return _NO_PCM
        read_pcm16 = getattr(self._reader, "read_pcm16", None)
        if read_pcm16 is not None:
            pcm: NDArray[np.int16] = await read_pcm16(frames, gather_s=gather_s)
        else:
            pcm = to_mono_pcm16(await self._reader.read(frames))
        if len(pcm) < frames:
            self._done = True
            if len(pcm) == 0:
                return await self.read_pcm16(frames, gather_s=gather_s)
        return pcm

    def _stop(self) -> NoReturn:
        error, self._end_error = self._end_error, None
        if error is not None:
            raise error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Release the file or kill the decoder. Idempotent; safe while cancelled."""
        self._done = True
        self._pending = None
        self._end_error = None
        await self._reader.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_audio_source(
    path: str | os.PathLike[str],
    *,
    block_frames: int | None = None,
    block_ms: int = 100,
    find_tool: ToolFinder = shutil.which,
) -> AudioSource:
    """Open and validate an audio file.

    Args:
        path: The file.
        block_frames: Frames per yielded block; default ``rate * block_ms // 1000``.
        block_ms: Block length when ``block_frames`` is not given.
        find_tool: Looks up ``ffmpeg``/``ffprobe``; returns a path or None.

    Raises:
        InputError: Missing, empty, not audio, corrupt, rate outside 8–48 kHz, or
            needing ffmpeg when it is not installed. A WAV file cut short (its header
            promises more audio than the file holds) opens, yields what is there, and
            then raises ``InputError`` from the iteration instead of ending quietly.
        ValueError: A non-positive ``block_frames`` or ``block_ms``.

    Resource handling:
        On success the caller owns the source (an open file or a running ffmpeg)
        and must :meth:`AudioSource.aclose` it. On error or cancellation nothing is
        left open.
    """
    if (block_frames is not None and block_frames <= 0) or block_ms <= 0:
        raise ValueError(f"blocks must be positive, got {block_frames=} {block_ms=}")
    name = str(path)
    ext = PurePath(name).suffix.lower()
    try:
        # Every blocking step in one worker-thread hop, batched with other files' opens
        # and reads (a run of hundreds of files opens them all at once).
        st, snd, refused, declared = await current_read_batcher().run_sync(
            functools.partial(_open_local, name, ext)
        )
    except FileNotFoundError:
        raise InputError(f"audio file not found: {name}; fix: check the path") from None
    except OSError as exc:
        raise InputError(
            f"cannot read {name} ({exc.strerror}); fix: check the path and its permissions"
        ) from None
    if st.st_size == 0:
        raise InputError(f"{name} is empty (0 bytes); fix: pass a file that contains audio")

    if ext in FFMPEG_EXTENSIONS:
        tools = find_ffmpeg(find_tool)
        if tools is None:
            raise InputError(f"{name} needs ffmpeg to decode {ext}; fix: apt-get install ffmpeg")
        return AudioSource(*await open_ffmpeg(name, tools, block_frames, block_ms))
    if snd is None:
        reason = getattr(refused, "error_string", "") or str(refused)
        tools = find_ffmpeg(find_tool)
        if tools is None:
            raise not_audio(name, f"libsndfile: {reason}") from None
        opened = await open_ffmpeg(name, tools, block_frames, block_ms, why=f"libsndfile: {reason}")
        return AudioSource(*opened)
    try:
        rate, channels, frames = int(snd.samplerate), int(snd.channels), int(snd.frames)
        if frames == 0:
            raise no_audio(name)
        check_rate(name, rate)
    except BaseException:
        snd.close()
        raise
    source_info = SourceInfo(name, rate, channels, frames / rate, "soundfile")
    block = block_size(rate, block_frames, block_ms)
    cut_short = None
    # More than 10 ms missing: sloppy writers that round the data size are not flagged.
    if declared is not None and declared - frames > rate // 100:
        cut_short = InputError(
            f"{name} is cut short: its header promises {declared / rate:.3f} s of audio but "
            f"the file ends after {frames / rate:.3f} s (only that much was sent); "
            "fix: copy or export the file again"
        )
    return AudioSource(source_info, _SoundFileReader(snd, name), block, end_error=cut_short)


def _open_local(
    name: str, ext: str
) -> tuple[os.stat_result, sf.SoundFile | None, Exception | None, int | None]:
    """The blocking steps of :func:`open_audio_source`, in one call (run it in a thread).

    A stat and a readability check; then, for a non-empty file libsndfile may read
    (not an ffmpeg extension), libsndfile's open and a WAV header's promised frames.

    Returns:
        the stat, the open file (None: not tried, or refused), libsndfile's refusal,
        the promised frames (None: unknown).

    Raises:
        OSError: from the stat or the open (missing, no permission).
        InputError: a directory, or not a regular file (a pipe would block the open).
    """
    st = os.stat(name)
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{name} is a directory; fix: pass the path of an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            f"{name} is not a regular file (a pipe or device); fix: save the audio to a file"
        )
    with open(name, "rb"):
        pass  # readable: later failures are about the content, not the permissions
    if st.st_size == 0 or ext in FFMPEG_EXTENSIONS:
        return st, None, None, None
    try:
        snd = sf.SoundFile(name)
    except (sf.SoundFileError, RuntimeError) as exc:
        return st, None, exc, None
    try:
        wav = snd.format in ("WAV", "WAVEX")
        declared = _declared_wav_frames(name, int(snd.channels)) if wav else None
    except BaseException:
        snd.close()
        raise
    return st, snd, None, declared


_NO_PCM: Final = np.zeros(0, dtype="<i2")
_NO_PCM.flags.writeable = False

# ------------------------------------------------------------------ soundfile

_WAV_HEAD_BYTES: Final = 1 << 16
# PCM, IEEE float, A-law, µ-law, extensible: one frame is exactly block_align bytes.
_WAV_FRAME_FORMATS: Final = frozenset({0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE})


def _declared_wav_frames(name: str, channels: int) -> int | None:
    """The frames a RIFF/WAVE header promises in its ``data`` chunk, or None if unknown.

    Unknown: not a plain RIFF/WAVE, a compressed format, a streaming writer's
    placeholder size (0 or 0xFFFFFFFF), or no ``data`` chunk in the first 64 KiB.
    Blocking (reads the file head); call it in a thread.
    """
    try:
        with open(name, "rb") as f:
            head = f.read(_WAV_HEAD_BYTES)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    frame_bytes = None
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt " and size >= 16 and body + 16 <= len(head):
            tag = int.from_bytes(head[body : body + 2], "little")
            align = int.from_bytes(head[body + 12 : body + 14], "little")
            bits = int.from_bytes(head[body + 14 : body + 16], "little")
            if tag in _WAV_FRAME_FORMATS and align == channels * ((bits + 7) // 8) and align:
                frame_bytes = align
        elif chunk == b"data":
            if frame_bytes is None or size in (0, 0xFFFFFFFF):
                return None
            return size // frame_bytes
        pos = body + size + (size & 1)
    return None


@final
class _SoundFileReader:
    def __init__(self, snd: sf.SoundFile, name: str) -> None:
        self._snd = snd
        self._name = name

    async def read(self, frames: int) -> Frames:
        read = functools.partial(self._snd.read, frames, dtype="float32", always_2d=True)
        try:
            data: Frames = await trio.to_thread.run_sync(read)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise not_audio(self._name, f"libsndfile: {exc}") from exc
        return data

    async def read_pcm16(self, frames: int, *, gather_s: float = 0.0) -> NDArray[np.int16]:
        """Up to ``frames`` mono int16 frames, read and mixed in a worker thread (in a
        batch with the other streams' reads: one thread hop for all of them; it may
        wait ``gather_s`` for them)."""
        read = functools.partial(self._read_pcm16, frames)
        try:
            pcm: NDArray[np.int16] = await current_read_batcher().run_sync(read, gather_s=gather_s)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise not_audio(self._name, f"libsndfile: {exc}") from exc
        return pcm

    def _read_pcm16(self, frames: int) -> NDArray[np.int16]:
        # 16-bit PCM reads as int16 directly; anything else as float32 then quantized
        # like float_to_pcm16 (libsndfile's own float -> int16 scales by 32767).
        dtype = "int16" if self._snd.subtype == "PCM_16" else "float32"
        return to_mono_pcm16(self._snd.read(frames, dtype=dtype, always_2d=True))

    async def aclose(self) -> None:
        # Closing a local file does not block meaningfully; not a checkpoint.
        self._snd.close()
