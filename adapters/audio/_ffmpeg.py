"""The ffmpeg decoder: containers libsndfile cannot read (mp3, m4a, mp4, webm, …).

:func:`open_ffmpeg` probes the file with ``ffprobe`` (rate, channels, duration),
then spawns ``ffmpeg`` writing f32le at the native rate and channel count to a
pipe; :class:`FfmpegReader` reads it in blocks. Downmixing is not ffmpeg's job:
:class:`~adapters.audio.files.AudioSource` mixes both decoders' output alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, final

import msgspec
import numpy as np
import trio

from adapters.audio._decode import SourceInfo, block_size, check_rate, no_audio, not_audio
from adapters.children import open_child, run_child
from engine.errors import InputError

if TYPE_CHECKING:
    from adapters.audio._decode import Frames

__all__ = ["FfmpegReader", "ToolFinder", "Tools", "find_ffmpeg", "open_ffmpeg"]

_READ_BYTES: Final = 1 << 16

ToolFinder = Callable[[str], str | None]
"""Looks up an executable (``ffmpeg``, ``ffprobe``): its path, or None."""


class Tools(msgspec.Struct, frozen=True):
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


def find_ffmpeg(find_tool: ToolFinder) -> Tools | None:
    ffmpeg, ffprobe = find_tool("ffmpeg"), find_tool("ffprobe")
    """Both tools, or None if either is missing."""
    return None if ffmpeg is None or ffprobe is None else Tools(ffmpeg, ffprobe)


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


async def open_ffmpeg(
    name: str, tools: Tools, block: int | None, block_ms: int, *, why: str = ""
) -> tuple[SourceInfo, FfmpegReader, int, Frames]:
    """Probe ``name`` with ffprobe, start ffmpeg decoding it, and decode the first block.

    Args:
        name: the file (already checked to exist and be readable).
        tools: where ffmpeg and ffprobe are.
        block, block_ms: frames per block, or its length (see :func:`~adapters.audio._decode.block_size`).
        why: a reason an earlier decoder gave up, shown if ffprobe fails too.

    Returns:
        What was learned, the running decoder, its block size and its first block,
        so a file ffmpeg cannot decode fails here, at open.

    Raises:
        InputError: ffprobe or ffmpeg cannot run, or find no audio, or a rate
            outside 8–48 kHz.

    Resource handling:
        On success the caller owns the reader (the ffmpeg process) and must
        ``aclose`` it; on error or cancellation the process is gone.
    """
    probe_cmd = [tools.ffprobe, "-v", "error", "-select_streams", "a:0", "-of", "json"]
    # "file:" so a name with a colon or a leading dash is never read as a protocol or option.
    url = f"file:{name}"
    probe_cmd += ["-show_entries", "stream=sample_rate,channels,duration:format=duration", url]
    try:
        done = await run_child(probe_cmd)
    except OSError as exc:
        raise InputError(
            f"cannot run {tools.ffprobe} ({exc}); fix: apt-get install ffmpeg"
        ) from None
    if done.returncode != 0:
        raise not_audio(name, why or f"ffprobe: {_last_line(done.stderr)}")
    try:
        probe = msgspec.json.decode(done.stdout, type=_Probe)
        stream = probe.streams[0] if probe.streams else None
        rate = int(float(stream.sample_rate)) if stream else 0
    except (msgspec.DecodeError, ValueError):
        raise not_audio(name, "ffprobe printed no usable description") from None
    if stream is None:
        raise InputError(f"{name} has no audio stream; fix: pass a file with an audio track")
    channels = stream.channels
    if channels <= 0:
        raise not_audio(name, "ffprobe found no channels")
    check_rate(name, rate)
    duration = stream.duration or probe.format.duration
    info = SourceInfo(name, rate, channels, float(duration) if duration else None, "ffmpeg")

    # -v fatal keeps stderr to a line or two, so its pipe never fills while we read stdout.
    cmd = [tools.ffmpeg, "-nostdin", "-hide_banner", "-v", "fatal", "-i", url, "-map", "0:a:0"]
    cmd += ["-ac", str(channels), "-ar", str(rate), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    try:
        proc = await open_child(cmd)  # its own process group: we stop it (adapters.children)
    except OSError as exc:
        raise InputError(
            f"cannot run {tools.ffmpeg} ({exc}); fix: apt-get install ffmpeg"
        ) from None
    reader = FfmpegReader(proc, channels, name)
    frames = block_size(rate, block, block_ms)
    try:
        # Decode the first block now, so a file ffmpeg cannot decode fails at open.
        first = await reader.read(frames)
        if len(first) == 0:
            raise no_audio(name)
    except BaseException:
        await reader.aclose()
        raise
    return info, reader, frames, first


@final
class FfmpegReader:
    """ffmpeg's f32le stdout as ``(frames × channels)`` blocks; its exit status checked at EOF."""

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
