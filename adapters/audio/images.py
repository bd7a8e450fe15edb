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
The ffmpeg jobs themselves live in :mod:`adapters.audio.ffmpeg_pictures`.

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
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, Self, final

import trio

from engine.errors import InputError

from .ffmpeg_pictures import FIX_FFMPEG, Tools, VideoReader, encode_still, probe_file

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
_JPEG_MAGIC: Final = b"\xff\xd8\xff"


class ImageFrame(NamedTuple):
    """One picture: its media time (seconds since the file's start) and the JPEG."""

    at_s: float
    jpeg: bytes


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
        video: VideoReader | None = None,
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
        picture = await self._video.next()
        if picture is None:
            raise StopAsyncIteration
        return ImageFrame(*picture)

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
        raise InputError(f"{name} needs ffmpeg to become a JPEG picture; {FIX_FFMPEG}")
    tools = Tools(ffmpeg, ffprobe)
    probe = await probe_file(name, tools, timeout_s)
    if not probe.streams:
        raise InputError(f"{name} has no picture or video stream; fix: pass an image or a video")
    fmt = probe.format.format_name
    if fmt == "image2" or fmt.endswith("_pipe") or probe.streams[0].disposition.attached_pic:
        jpeg = await encode_still(name, tools, height, max_bytes, timeout_s)
        return ImageFeed(name, "image", fps, None, still=jpeg)
    duration = float(probe.format.duration) if probe.format.duration else None
    video = VideoReader(name, tools, fps, height, max_bytes, timeout_s)
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
