"""Pictures for livetranslate's video context: JPEGs of at most 500 KB, at most 2 per second.

The realtime protocol takes ``input_image_buffer.append`` with one JPEG (≤ 500 KB
before base64, ≤ 2 images per second, 480p or 720p recommended).
:func:`open_image_feed` turns a file into such JPEGs, each with its media time:

* a **JPEG** of at most ``max_bytes`` is used as it is (no ffmpeg needed): one
  picture at 0.0;
* any **other still** (PNG, WebP, BMP, a too-large JPEG, a cover picture) is
  converted by ffmpeg, scaled down to ``height`` lines (never up): one picture at 0.0;
* a **video** is sampled at ``fps`` (default 1, at most 2) by *one* ffmpeg process
  piping MJPEG to stdout; the pipe is split into pictures on JPEG markers
  (:class:`~adapters.audio.jpeg.JpegSplitter`), and picture *k* is at ``k / fps`` seconds of the video.

Every picture fits ``max_bytes``: ffmpeg encodes at quality 5 first; a picture that
is still too large is encoded again at lower qualities (then at half the height).

Memory is bounded: pictures are read from the pipe one at a time, while ffmpeg
blocks on the full pipe until the consumer asks for the next; nothing else is
buffered. The feed does not pace itself in real time: the consumer sends each
picture when its stream reaches ``at_s``. Every wait (ffprobe, an encode, the next
picture, ffmpeg's exit) has a deadline of ``timeout_s``.

Errors a user can cause (a missing, unreadable or unrecognisable file, no ffmpeg, a
timeout) are one-line :class:`~engine.errors.InputError` messages naming the fix.
"""

from __future__ import annotations

import contextlib
import shutil
import stat
import subprocess
from fractions import Fraction
from pathlib import PurePath
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, Self, final

import msgspec
import trio

from adapters.audio.jpeg import JpegSplitter
from engine.errors import InputError

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable

__all__ = [
    "MAX_FPS",
    "MAX_IMAGE_BYTES",
    "ImageFeed",
    "ImageFrame",
    "open_image_feed",
]

MAX_IMAGE_BYTES: Final = 500_000
MAX_FPS: Final = 2.0
#: mjpeg ``-q:v`` values tried in turn (2 is best, 31 smallest).
QUALITIES: Final = (5, 10, 20, 31)
_READ_BYTES: Final = 1 << 16
_JPEG_MAGIC: Final = b"\xff\xd8\xff"
_FIX_FFMPEG: Final = "fix: apt-get install ffmpeg"


class ImageFrame(NamedTuple):
    """One picture: its media time (seconds since the file's start) and the JPEG."""

    at_s: float
    jpeg: bytes


# ---------------------------------------------------------------- opening


class _Tools(msgspec.Struct, frozen=True):
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


class _Probe(msgspec.Struct):
    streams: list[_Stream] = msgspec.field(default_factory=list)
    format: _Format = msgspec.field(default_factory=_Format)


@final
class ImageFeed:
    """An open picture source: an async iterator of :class:`ImageFrame`.

    Made by :func:`open_image_feed`; not constructed directly.

    Attributes:
        path: the file.
        kind: ``jpeg`` (used as is), ``image`` (converted still) or ``video``.
        fps: pictures per second of media time (videos).
        duration_s: the video's duration when the container says it, else None.

    Cancellation:
        Cancelling ``__anext__`` may lose the picture being read; the feed should
        then be closed.
    """

    def __init__(
        self,
        path: str,
        kind: Literal["jpeg", "image", "video"],
        fps: float,
        duration_s: float | None,
        *,
        still: bytes | None = None,
        video: _VideoReader | None = None,
    ) -> None:
        self.path: Final = path
        self.kind: Final = kind
        self.fps: Final = fps
        self.duration_s: Final = duration_s
        self._still = still
        self._video = video

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ImageFrame:
        if self._still is not None:
            jpeg, self._still = self._still, None
            return ImageFrame(0.0, jpeg)
        if self._video is None:
            raise StopAsyncIteration
        frame = await self._video.next()
        if frame is None:
            raise StopAsyncIteration
        return frame

    async def aclose(self) -> None:
        """Stop ffmpeg (if any). Idempotent; safe while cancelled."""
        self._still = None
        video, self._video = self._video, None
        if video is not None:
            await video.aclose()


@contextlib.asynccontextmanager
async def open_image_feed(
    path: str | os.PathLike[str],
    *,
    fps: float = 1.0,
    height: int = 480,
    max_bytes: int = MAX_IMAGE_BYTES,
    timeout_s: float = 30.0,
    find_tool: Callable[[str], str | None] = shutil.which,
) -> AsyncIterator[ImageFeed]:
    """Open a JPEG, another still image, or a video as a feed of JPEG pictures::

        async with open_image_feed("talk.mp4", fps=1.0) as feed:
            async for at_s, jpeg in feed:
                ...

    Args:
        path: the file.
        fps: pictures per second of a video, ``0 < fps <= 2``.
        height: scale converted pictures down to this many lines (480 or 720).
        max_bytes: the largest JPEG to yield (the protocol's limit by default).
        timeout_s: the deadline of every wait on ffmpeg.
        find_tool: looks up ``ffmpeg``/``ffprobe``; returns a path or None.

    Raises:
        InputError: a missing, unreadable, empty or unrecognisable file, no
            ffmpeg when one is needed, ffmpeg failing or missing a deadline, or a
            picture that cannot be made small enough. Raised at open when the file
            is bad; while iterating when a video breaks part way.
        ValueError: ``fps``, ``height`` or ``max_bytes`` out of range.

    Resource handling:
        ffmpeg runs only while the feed is open; it is killed on exit, error or
        cancellation.
    """
    if not 0 < fps <= MAX_FPS or height < 16 or max_bytes < 1024:
        raise ValueError(f"need 0 < fps <= {MAX_FPS:g}, height >= 16, max_bytes >= 1024")
    feed = await _open(str(path), fps, height, max_bytes, timeout_s, find_tool)
    try:
        yield feed
    finally:
        await feed.aclose()


async def _open(
    name: str,
    fps: float,
    height: int,
    max_bytes: int,
    timeout_s: float,
    find_tool: Callable[[str], str | None],
) -> ImageFeed:
    size = await _check_file(name)
    if size <= max_bytes:
        data = await trio.Path(name).read_bytes()
        if data.startswith(_JPEG_MAGIC) and b"\xff\xd9" in data[-1024:]:
            return ImageFeed(name, "jpeg", fps, None, still=data)
    ffmpeg, ffprobe = find_tool("ffmpeg"), find_tool("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise InputError(f"{name} needs ffmpeg to become a JPEG picture; {_FIX_FFMPEG}")
    tools = _Tools(ffmpeg, ffprobe)
    probe = await _probe(name, tools, timeout_s)
    if not probe.streams:
        raise InputError(f"{name} has no picture or video stream; fix: pass an image or a video")
    fmt = probe.format.format_name
    if fmt == "image2" or fmt.endswith("_pipe") or probe.streams[0].disposition.attached_pic:
        jpeg = await _encode_still(name, tools, height, max_bytes, timeout_s)
        return ImageFeed(name, "image", fps, None, still=jpeg)
    duration = float(probe.format.duration) if probe.format.duration else None
    video = _VideoReader(name, tools, fps, height, max_bytes, timeout_s)
    await video.start()
    return ImageFeed(name, "video", fps, duration, video=video)


async def _check_file(name: str) -> int:
    try:
        st = await trio.Path(name).stat()
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name} is a directory; fix: pass the path of an image or a video")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{name} is not a regular file; fix: save the picture to a file")
        async with await trio.open_file(name, "rb"):
            pass
    except FileNotFoundError:
        raise InputError(f"image file not found: {name}; fix: check the path") from None
    except OSError as exc:
        raise InputError(
            f"cannot read {name} ({exc.strerror}); fix: check the path and its permissions"
        ) from None
    if st.st_size == 0:
        raise InputError(f"{name} is empty (0 bytes); fix: pass an image or a video")
    return st.st_size


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
            done = await trio.run_process(
                cmd, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
            )
    except OSError as exc:
        raise InputError(f"cannot run {cmd[0]} ({exc}); {_FIX_FFMPEG}") from None
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


async def _probe(name: str, tools: _Tools, timeout_s: float) -> _Probe:
    cmd = [tools.ffprobe, "-v", "error", "-of", "json", "-select_streams", "v:0"]
    cmd += ["-show_entries", "stream=codec_name:stream_disposition=attached_pic"]
    cmd += ["-show_entries", "format=format_name,duration", f"file:{name}"]

    def failed(detail: str) -> str:
        return (
            f"{name} is not an image or a video (ffprobe: {detail}); fix: pass a picture or video"
        )

    out = await _run(cmd, f"reading {name} as an image or video", timeout_s, failed=failed)
    try:
        return msgspec.json.decode(out, type=_Probe)
    except msgspec.DecodeError:
        raise InputError(f"ffprobe printed no usable description of {name}") from None


def _scale(height: int | None, *, half: bool = False) -> str:
    """Scale down to ``height`` lines (None: keep), never up; ``half``: then halve."""
    lines = "ih" if height is None else f"min({height},ih)"
    if half:
        lines = f"trunc({lines}/4)*2"
    return f"scale=w=-2:h='{lines}'"


async def _encode_still(
    name: str,
    tools: _Tools,
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
class _VideoReader:
    """One ffmpeg sampling a video at ``fps`` into an MJPEG pipe."""

    def __init__(
        self, name: str, tools: _Tools, fps: float, height: int, max_bytes: int, timeout_s: float
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
            self.proc = await trio.lowlevel.open_process(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise InputError(f"cannot run {self.tools.ffmpeg} ({exc}); {_FIX_FFMPEG}") from None
        try:
            first = await self.next()  # a video ffmpeg cannot decode fails at open
            if first is None:
                raise InputError(
                    f"ffmpeg found no picture in {self.name}; fix: check that the video plays"
                )
            self.ready.insert(0, first.jpeg)
            self.count -= 1
        except BaseException:
            await self.aclose()
            raise

    async def next(self) -> ImageFrame | None:
        while not self.ready and not self.eof:
            await self._read()
        if not self.ready:
            return None
        jpeg = self.ready.pop(0)
        if len(jpeg) > self.max_bytes:
            jpeg = await _encode_still(
                self.name, self.tools, None, self.max_bytes, self.timeout_s, pipe=jpeg
            )
        frame = ImageFrame(float(self.count / self.rate), jpeg)
        self.count += 1
        return frame

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
