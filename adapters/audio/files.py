"""Audio files as async sources of mono float32 blocks.

:func:`open_audio_source` checks the file up front (exists, not empty, really audio,
8–48 kHz) and raises :class:`~engine.errors.InputError` with a one-line message naming
the cause and the fix, so a bad input fails before any streaming starts. It then yields
blocks of ``block_frames`` mono float32 samples (the channel average) at the file's own
rate; the last block may be shorter.

Two decoders, chosen by extension:

* **soundfile** (libsndfile: WAV, FLAC, OGG, AIFF, …) reads in a worker thread, one
  block per :func:`trio.to_thread.run_sync` call.
* **ffmpeg** (mp3, m4a, mp4, webm and other containers) is probed with ``ffprobe`` and
  decoded by an ``ffmpeg`` subprocess writing f32le at the native rate and channel
  count; downmixing happens here, never in ffmpeg, so both decoders mix alike. A file
  libsndfile rejects falls back to ffmpeg when ffmpeg can probe it.

The executable lookup (``find_tool``, default :func:`shutil.which`) is injectable, so
tests can simulate a machine without ffmpeg.
"""

from __future__ import annotations

import functools
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import PurePath
from typing import TYPE_CHECKING, Final, Literal, NoReturn, Protocol, Self, TypeAlias, final

import msgspec
import numpy as np
import soundfile as sf
import trio

from adapters.audio.pcm import to_mono_float32
from engine.errors import InputError

if TYPE_CHECKING:
    import os
    from types import TracebackType

    from numpy.typing import NDArray

__all__ = [
    "FFMPEG_EXTENSIONS",
    "MAX_RATE",
    "MIN_RATE",
    "AudioSource",
    "SourceInfo",
    "ToolFinder",
    "open_audio_source",
]

MIN_RATE: Final = 8000
MAX_RATE: Final = 48000
#: Extensions that always go through ffmpeg (libsndfile cannot read these containers;
#: it can read mp3, but ffmpeg handles its padding and odd headers better).
FFMPEG_EXTENSIONS: Final = frozenset(
    {".mp3", ".m4a", ".m4b", ".mp4", ".aac", ".webm", ".mkv", ".mka", ".mov", ".wma", ".amr"}
    | {".3gp", ".avi", ".ac3", ".flv"}
)
_READ_BYTES: Final = 1 << 16

ToolFinder = Callable[[str], str | None]
Frames: TypeAlias = "NDArray[np.float32]"


class SourceInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What was learned about an audio file when it was opened."""

    path: str
    rate: int
    channels: int
    duration_s: float | None
    decoder: Literal["soundfile", "ffmpeg"]


class _Reader(Protocol):
    async def read(self, frames: int) -> Frames:
        """Up to ``frames`` frames, shape ``(n, channels)``; fewer only at the end."""
        ...

    async def aclose(self) -> None: ...


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
        reader: _Reader,
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
    try:
        st = await trio.Path(name).stat()
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name} is a directory; fix: pass the path of an audio file")
        if not stat.S_ISREG(st.st_mode):  # a pipe would block the open below for ever
            raise InputError(
                f"{name} is not a regular file (a pipe or device); fix: save the audio to a file"
            )
        async with await trio.open_file(name, "rb"):
            pass  # readable: later failures are about the content, not the permissions
    except FileNotFoundError:
        raise InputError(f"audio file not found: {name}; fix: check the path") from None
    except OSError as exc:
        raise InputError(
            f"cannot read {name} ({exc.strerror}); fix: check the path and its permissions"
        ) from None
    if st.st_size == 0:
        raise InputError(f"{name} is empty (0 bytes); fix: pass a file that contains audio")

    ext = PurePath(name).suffix.lower()
    if ext in FFMPEG_EXTENSIONS:
        tools = _find_ffmpeg(find_tool)
        if tools is None:
            raise InputError(f"{name} needs ffmpeg to decode {ext}; fix: apt-get install ffmpeg")
        return await _open_ffmpeg(name, tools, block_frames, block_ms)
    try:
        snd = await trio.to_thread.run_sync(sf.SoundFile, name)
    except (sf.SoundFileError, RuntimeError) as exc:
        reason = getattr(exc, "error_string", "") or str(exc)
        tools = _find_ffmpeg(find_tool)
        if tools is None:
            raise _not_audio(name, f"libsndfile: {reason}") from None
        return await _open_ffmpeg(name, tools, block_frames, block_ms, why=f"libsndfile: {reason}")
    try:
        rate, channels, frames = int(snd.samplerate), int(snd.channels), int(snd.frames)
        if frames == 0:
            raise _no_audio(name)
        _check_rate(name, rate)
        declared = None
        if snd.format in ("WAV", "WAVEX"):
            declared = await trio.to_thread.run_sync(_declared_wav_frames, name, channels)
    except BaseException:
        snd.close()
        raise
    source_info = SourceInfo(name, rate, channels, frames / rate, "soundfile")
    block = _block(rate, block_frames, block_ms)
    cut_short = None
    # More than 10 ms missing: sloppy writers that round the data size are not flagged.
    if declared is not None and declared - frames > rate // 100:
        cut_short = InputError(
            f"{name} is cut short: its header promises {declared / rate:.3f} s of audio but "
            f"the file ends after {frames / rate:.3f} s (only that much was sent); "
            "fix: copy or export the file again"
        )
    return AudioSource(source_info, _SoundFileReader(snd, name), block, end_error=cut_short)


def _block(rate: int, block_frames: int | None, block_ms: int) -> int:
    return block_frames if block_frames is not None else max(1, rate * block_ms // 1000)


def _check_rate(name: str, rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        stem = PurePath(name).stem
        raise InputError(
            f"{name} is {rate} Hz; Stenograph needs 8–48 kHz; "
            f"fix: resample it, e.g. `ffmpeg -i {name} -ar 16000 {stem}-16k.wav`"
        )


def _no_audio(name: str) -> InputError:
    return InputError(f"{name} has no audio (0 frames); fix: pass a file that contains audio")


def _not_audio(name: str, reason: str) -> InputError:
    return InputError(
        f"{name} is not audio or its header is corrupt ({reason}); "
        f"fix: check that it plays, or convert it, e.g. `ffmpeg -i {name} {PurePath(name).stem}-converted.wav`"
    )


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
            raise _not_audio(self._name, f"libsndfile: {exc}") from exc
        return data

    async def aclose(self) -> None:
        # Closing a local file does not block meaningfully; not a checkpoint.
        self._snd.close()


# --------------------------------------------------------------------- ffmpeg


class _Tools(msgspec.Struct, frozen=True):
    ffmpeg: str
    ffprobe: str


class _ProbeStream(msgspec.Struct):
    sample_rate: str = "0"
    channels: int = 0
    duration: str | None = None


class _ProbeFormat(msgspec.Struct):
    duration: str | None = None


class _Probe(msgspec.Struct):
    streams: list[_ProbeStream] = msgspec.field(default_factory=list)
    format: _ProbeFormat = msgspec.field(default_factory=_ProbeFormat)


def _find_ffmpeg(find_tool: ToolFinder) -> _Tools | None:
    ffmpeg, ffprobe = find_tool("ffmpeg"), find_tool("ffprobe")
    return None if ffmpeg is None or ffprobe is None else _Tools(ffmpeg, ffprobe)


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


async def _open_ffmpeg(
    name: str, tools: _Tools, block_frames: int | None, block_ms: int, *, why: str = ""
) -> AudioSource:
    probe_cmd = [tools.ffprobe, "-v", "error", "-select_streams", "a:0", "-of", "json"]
    # "file:" so a name with a colon or a leading dash is never read as a protocol or option.
    url = f"file:{name}"
    probe_cmd += ["-show_entries", "stream=sample_rate,channels,duration:format=duration", url]
    try:
        done = await trio.run_process(
            probe_cmd, capture_stdout=True, capture_stderr=True, check=False
        )
    except OSError as exc:
        raise InputError(
            f"cannot run {tools.ffprobe} ({exc}); fix: apt-get install ffmpeg"
        ) from None
    if done.returncode != 0:
        raise _not_audio(name, why or f"ffprobe: {_last_line(done.stderr)}")
    try:
        probe = msgspec.json.decode(done.stdout, type=_Probe)
        stream = probe.streams[0] if probe.streams else None
        rate = int(float(stream.sample_rate)) if stream else 0
    except (msgspec.DecodeError, ValueError):
        raise _not_audio(name, "ffprobe printed no usable description") from None
    if stream is None:
        raise InputError(f"{name} has no audio stream; fix: pass a file with an audio track")
    channels = stream.channels
    if channels <= 0:
        raise _not_audio(name, "ffprobe found no channels")
    _check_rate(name, rate)
    duration = stream.duration or probe.format.duration
    info = SourceInfo(name, rate, channels, float(duration) if duration else None, "ffmpeg")

    # -v fatal keeps stderr to a line or two, so its pipe never fills while we read stdout.
    cmd = [tools.ffmpeg, "-nostdin", "-hide_banner", "-v", "fatal", "-i", url, "-map", "0:a:0"]
    cmd += ["-ac", str(channels), "-ar", str(rate), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    try:
        proc = await trio.lowlevel.open_process(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise InputError(
            f"cannot run {tools.ffmpeg} ({exc}); fix: apt-get install ffmpeg"
        ) from None
    reader = _FfmpegReader(proc, channels, name)
    block = _block(rate, block_frames, block_ms)
    try:
        # Decode the first block now, so a file ffmpeg cannot decode fails at open.
        first = await reader.read(block)
        if len(first) == 0:
            raise _no_audio(name)
    except BaseException:
        await reader.aclose()
        raise
    return AudioSource(info, reader, block, first)


@final
class _FfmpegReader:
    def __init__(self, proc: trio.Process, channels: int, name: str) -> None:
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._proc = proc
        self._stdout = proc.stdout
        self._stderr = proc.stderr
        self._channels = channels
        self._name = name
        self._buf = bytearray()
        self._eof = False

    async def read(self, frames: int) -> Frames:
        frame_bytes = 4 * self._channels
        want = frames * frame_bytes
        while len(self._buf) < want and not self._eof:
            chunk = await self._stdout.receive_some(max(_READ_BYTES, want - len(self._buf)))
            if chunk:
                self._buf += chunk
            else:
                await self._check_exit()
                self._eof = True
        n = min(len(self._buf), want) // frame_bytes * frame_bytes
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return np.frombuffer(data, dtype="<f4").reshape(-1, self._channels)

    async def _check_exit(self) -> None:
        stderr = bytearray()
        while chunk := await self._stderr.receive_some(_READ_BYTES):
            stderr += chunk
        code = await self._proc.wait()
        if code != 0:
            detail = _last_line(bytes(stderr)) or f"exit code {code}"
            raise InputError(
                f"ffmpeg could not decode {self._name} ({detail}); "
                f"fix: check that it plays, e.g. `ffmpeg -i {self._name} out.wav`"
            )

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self._proc.returncode is None:
                self._proc.kill()
            await self._stdout.aclose()
            await self._stderr.aclose()
            await self._proc.wait()
