"""Making JPEG pictures with ffmpeg: probing a file, encoding a still to fit, sampling a video.

The jobs behind :func:`~adapters.audio.images.open_image_feed`:

* :func:`probe_file` asks ffprobe for the file's first video stream and its container;
* :func:`encode_still` makes one JPEG that fits ``max_bytes``: quality 5 first, then
  lower qualities (:data:`QUALITIES`), then half the height;
* :class:`VideoReader` runs *one* ffmpeg sampling a video at ``fps`` into an MJPEG
  pipe, split into pictures on JPEG markers (:class:`~adapters.audio.jpeg.JpegSplitter`).

Memory is bounded: pictures are read from the pipe one at a time, while ffmpeg
blocks on the full pipe. Every wait on ffmpeg has a deadline of ``timeout_s``;
every failure is a one-line :class:`~engine.errors.InputError` naming the fix.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import PurePath
from typing import TYPE_CHECKING, Final, final

import msgspec
import trio

from adapters.children import open_child, run_child
from engine.errors import InputError

from .jpeg import JpegSplitter

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FIX_FFMPEG", "QUALITIES", "Probe", "Tools", "VideoReader", "encode_still", "probe_file"]

#: mjpeg ``-q:v`` values tried in turn (2 is best, 31 smallest).
QUALITIES: Final = (5, 10, 20, 31)
FIX_FFMPEG: Final = "fix: apt-get install ffmpeg"
_READ_BYTES: Final = 1 << 16


class Tools(msgspec.Struct, frozen=True):
    """Where ffmpeg and ffprobe are."""

    ffmpeg: str
    ffprobe: str


class _Disposition(msgspec.Struct):
    attached_pic: int = 0


class _Stream(msgspec.Struct):
    codec_name: str = ""
    disposition: _Disposition = msgspec.field(default_factory=_Disposition)


class _Format(msgspec.Struct):
    format_name: str = ""
    duration: str | None = None


class Probe(msgspec.Struct):
    """What ffprobe says of a file's first video stream and its container."""

    streams: list[_Stream] = msgspec.field(default_factory=list)
    format: _Format = msgspec.field(default_factory=_Format)


async def _run(
    cmd: list[str],
    what: str,
    timeout_s: float,
    stdin: bytes | None = None,
    failed: Callable[[str], str] | None = None,
) -> bytes:
    """Run a short ffmpeg/ffprobe job; its stdout, or InputError naming ``what``
    (``failed`` makes the message when it exits non-zero, from its last stderr line)."""
    try:
        with trio.fail_after(timeout_s):
            done = await run_child(cmd, input=stdin)
    except OSError as exc:
        raise InputError(f"cannot run {cmd[0]} ({exc}); {FIX_FFMPEG}") from None
    except trio.TooSlowError:
        raise InputError(
            f"{what} took longer than {timeout_s:g} s; fix: use a smaller file"
        ) from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        detail = lines[-1].strip() if lines else f"exit code {done.returncode}"
        if failed is not None:
            raise InputError(failed(detail))
        raise InputError(f"{what} failed ({detail}); fix: check that the file opens in a viewer")
    return done.stdout


async def probe_file(name: str, tools: Tools, timeout_s: float) -> Probe:
    cmd = [tools.ffprobe, "-v", "error", "-of", "json", "-select_streams", "v:0"]
    cmd += ["-show_entries", "stream=codec_name:stream_disposition=attached_pic"]
    cmd += ["-show_entries", "format=format_name,duration", f"file:{name}"]

    def failed(detail: str) -> str:
        return (
            f"{name} is not an image or a video (ffprobe: {detail}); fix: pass a picture or video"
        )

    out = await _run(cmd, f"reading {name} as an image or video", timeout_s, failed=failed)
    try:
        return msgspec.json.decode(out, type=Probe)
    except msgspec.DecodeError:
        raise InputError(f"ffprobe printed no usable description of {name}") from None


def _scale(height: int | None, *, half: bool = False) -> str:
    """Scale down to ``height`` lines (None: keep), never up; ``half``: then halve."""
    lines = "ih" if height is None else f"min({height},ih)"
    if half:
        lines = f"trunc({lines}/4)*2"
    return f"scale=w=-2:h='{lines}'"


async def encode_still(
    name: str,
    tools: Tools,
    height: int | None,
    max_bytes: int,
    timeout_s: float,
    *,
    pipe: bytes = b"",
) -> bytes:
    """One JPEG of ``name`` (or of the JPEG ``pipe``) that fits ``max_bytes``: quality
    steps down, then the height halves."""
    source = ["-f", "jpeg_pipe", "-i", "pipe:0"] if pipe else ["-nostdin", "-i", f"file:{name}"]
    ladder = [(_scale(height), q) for q in QUALITIES]
    ladder.append((_scale(height, half=True), QUALITIES[-1]))
    size = 0
    for scale, quality in ladder:
        cmd = [tools.ffmpeg, "-hide_banner", "-v", "error", *source]
        cmd += ["-frames:v", "1", "-vf", scale, "-q:v", str(quality)]
        cmd += ["-f", "image2pipe", "-c:v", "mjpeg", "pipe:1"]
        jpeg = await _run(cmd, f"converting {name} to JPEG", timeout_s, stdin=pipe or None)
        size = len(jpeg)
        if not jpeg.startswith(b"\xff\xd8"):
            raise InputError(f"ffmpeg made no picture of {name}; fix: check the file")
        if size <= max_bytes:
            return jpeg
    raise InputError(
        f"{name}: even the smallest JPEG is {size} bytes (limit {max_bytes}); "
        f"fix: pass a smaller or simpler picture"
    )


@final
class VideoReader:
    """One ffmpeg sampling a video at ``fps`` into an MJPEG pipe.

    :meth:`start` fails at once for a video ffmpeg cannot decode; :meth:`next`
    gives ``(at_s, jpeg)`` pictures in order, each within ``max_bytes``.

    Resource handling:
        :meth:`aclose` kills ffmpeg and closes its pipes (shielded, bounded).
    """

    def __init__(
        self, name: str, tools: Tools, fps: float, height: int, max_bytes: int, timeout_s: float
    ) -> None:
        self.name, self.tools = name, tools
        self.rate = Fraction(fps).limit_denominator(1001)  # exact for ffmpeg and for times
        self.height, self.max_bytes, self.timeout_s = height, max_bytes, timeout_s
        self.splitter = JpegSplitter(max_picture_bytes=max(32 * max_bytes, 1 << 24))
        self.ready: list[bytes] = []
        self.count = 0
        self.proc: trio.Process | None = None
        self.eof = False

    async def start(self) -> None:
        # -v fatal keeps stderr to a line or two, so its pipe never fills while stdout flows.
        cmd = [self.tools.ffmpeg, "-nostdin", "-hide_banner", "-v", "fatal"]
        cmd += ["-i", f"file:{self.name}", "-map", "0:v:0"]
        cmd += ["-vf", f"fps={self.rate},{_scale(self.height)}", "-q:v", str(QUALITIES[0])]
        cmd += ["-f", "image2pipe", "-c:v", "mjpeg", "pipe:1"]
        try:
            self.proc = await open_child(cmd)  # its own process group (adapters.children)
        except OSError as exc:
            raise InputError(f"cannot run {self.tools.ffmpeg} ({exc}); {FIX_FFMPEG}") from None
        try:
            first = await self.next()  # a video ffmpeg cannot decode fails at open
            if first is None:
                raise InputError(
                    f"ffmpeg found no picture in {self.name}; fix: check that the video plays"
                )
            self.ready.insert(0, first[1])
            self.count -= 1
        except BaseException:
            await self.aclose()
            raise

    async def next(self) -> tuple[float, bytes] | None:
        """The next picture and its media time; None at the video's end."""
        while not self.ready and not self.eof:
            await self._read()
        if not self.ready:
            return None
        jpeg = self.ready.pop(0)
        if len(jpeg) > self.max_bytes:
            jpeg = await encode_still(
                self.name, self.tools, None, self.max_bytes, self.timeout_s, pipe=jpeg
            )
        at_s = float(self.count / self.rate)
        self.count += 1
        return at_s, jpeg

    async def _read(self) -> None:
        proc = self.proc
        assert proc is not None
        assert proc.stdout is not None
        try:
            with trio.fail_after(self.timeout_s):
                chunk = await proc.stdout.receive_some(_READ_BYTES)
        except trio.TooSlowError:
            raise InputError(
                f"ffmpeg gave no picture of {self.name} within {self.timeout_s:g} s; "
                "fix: check that the video plays, or raise the timeout"
            ) from None
        if not chunk:
            self.eof = True
            await self._check_exit()
            return
        try:
            self.ready += self.splitter.feed(chunk)
        except ValueError as exc:
            raise InputError(f"ffmpeg's pictures of {self.name} are broken ({exc})") from None

    async def _check_exit(self) -> None:
        proc = self.proc
        assert proc is not None
        assert proc.stderr is not None
        stderr = bytearray()
        with trio.move_on_after(self.timeout_s):
            while len(stderr) < _READ_BYTES and (chunk := await proc.stderr.receive_some()):
                stderr += chunk
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
        if proc.returncode not in (0, None):
            lines = stderr.decode(errors="replace").strip().splitlines()
            detail = lines[-1].strip() if lines else f"exit code {proc.returncode}"
            raise InputError(
                f"ffmpeg could not decode {self.name} ({detail}); "
                f"fix: check that it plays, e.g. `ffmpeg -i {PurePath(self.name).name} -f null -`"
            )

    async def aclose(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    await pipe.aclose()
            with trio.move_on_after(5):  # a killed process exits at once; never hang here
                await proc.wait()
