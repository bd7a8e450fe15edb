"""The image feed: JPEGs as they are, stills converted, videos sampled, errors in one line.

Fixtures are made once per module with ffmpeg's lavfi sources (a PNG, JPEGs, a
3-second test video); tests that need a misbehaving ffmpeg use small shell scripts
in its place, and run on the autojump clock so their deadlines pass at once.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import deadline

from adapters.audio.images import MAX_IMAGE_BYTES, ImageFrame, open_image_feed
from adapters.audio.jpeg import JpegSplitter
from engine.errors import InputError

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg not installed; fix: apt-get install ffmpeg",
)


def lavfi(out: Path, source: str, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source, *args, str(out)],
        check=True,
        timeout=120,  # real time: encoding the fixtures
    )
    return out


@pytest.fixture(name="media", scope="module")
def _media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    testsrc = "testsrc=size=640x480:rate=10"
    noise = "nullsrc=s=1600x1200:r=10,geq=random(1)*255:128:128"
    return {
        "png": lavfi(d / "still.png", testsrc, "-frames:v", "1"),
        "jpg": lavfi(d / "small.jpg", testsrc, "-frames:v", "1"),
        "big_jpg": lavfi(d / "noise.jpg", noise, "-frames:v", "1", "-q:v", "2"),
        "mp4": lavfi(d / "clip.mp4", testsrc, "-t", "3", "-pix_fmt", "yuv420p"),
        "hd": lavfi(
            d / "hd.mp4", "testsrc=size=1280x720:rate=10", "-t", "1", "-pix_fmt", "yuv420p"
        ),
        "noisy": lavfi(
            d / "noisy.mp4",
            "nullsrc=s=640x480:r=2,geq=random(1)*255:128:128",
            *("-t", "2", "-pix_fmt", "yuv420p", "-preset", "ultrafast"),
        ),
        "wav": lavfi(d / "tone.wav", "sine=d=1"),
    }


def size_of(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's SOF segment."""
    pos = 2
    while pos < len(jpeg):
        marker, length = jpeg[pos + 1], int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(jpeg[pos + 5 : pos + 7], "big")
            return int.from_bytes(jpeg[pos + 7 : pos + 9], "big"), height
        pos += 2 + length
    raise AssertionError("no SOF segment")


def is_jpeg(data: bytes, limit: int = MAX_IMAGE_BYTES) -> bool:
    return data.startswith(b"\xff\xd8\xff") and data.endswith(b"\xff\xd9") and len(data) <= limit


async def collect(path: Path, **options: object) -> tuple[str, list[ImageFrame]]:
    async with open_image_feed(path, **options) as feed:  # type: ignore[arg-type]
        return feed.kind, [frame async for frame in feed]


def no_tools(_name: str) -> str | None:
    return None


def script(tmp_path: Path, name: str, body: str) -> Callable[[str], str | None]:
    """A stand-in for ffmpeg and ffprobe: ``<name>-ffmpeg`` / ``<name>-ffprobe`` scripts."""
    paths = {}
    for tool in ("ffmpeg", "ffprobe"):
        path = tmp_path / f"{name}-{tool}"
        text = (
            body if tool == "ffmpeg" else 'echo \'{"streams":[{}],"format":{"format_name":"mov"}}\''
        )
        path.write_text(f"#!/bin/sh\n{text}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        paths[tool] = str(path)
    return paths.get


class TestStills:
    @deadline(30)
    async def test_small_jpeg_is_used_as_is_without_ffmpeg(self, media: dict[str, Path]) -> None:
        """A JPEG under the limit comes back byte for byte, once, at 0.0."""
        kind, frames = await collect(media["jpg"], find_tool=no_tools)
        assert kind == "jpeg" and frames == [(0.0, media["jpg"].read_bytes())]

    @deadline(60)
    async def test_png_is_converted_to_a_480_line_jpeg(self, media: dict[str, Path]) -> None:
        """Another format becomes one JPEG (never upscaled: 480 lines stay 480)."""
        kind, frames = await collect(media["png"], height=720)
        assert kind == "image" and len(frames) == 1 and frames[0].at_s == 0.0
        assert is_jpeg(frames[0].jpeg) and size_of(frames[0].jpeg) == (640, 480)

    @deadline(60)
    async def test_too_large_jpeg_is_scaled_and_fits(self, media: dict[str, Path]) -> None:
        """A 1.4 MB JPEG is re-encoded at 480 lines and under the limit."""
        assert media["big_jpg"].stat().st_size > MAX_IMAGE_BYTES
        kind, [frame] = await collect(media["big_jpg"])
        assert kind == "image" and is_jpeg(frame.jpeg) and size_of(frame.jpeg) == (640, 480)

    @deadline(60)
    async def test_quality_steps_down_until_it_fits(self, media: dict[str, Path]) -> None:
        """A tight limit is met by lower quality, then by half the height."""
        _, [frame] = await collect(media["big_jpg"], max_bytes=40_000)
        assert is_jpeg(frame.jpeg, 40_000) and size_of(frame.jpeg)[1] in (480, 240)

    @deadline(60)
    async def test_impossible_limit_is_one_clear_error(self, media: dict[str, Path]) -> None:
        """When nothing fits, the error gives the smallest size and the fix."""
        with pytest.raises(InputError, match=r"smallest JPEG is \d+ bytes \(limit 1024\); fix:"):
            await collect(media["big_jpg"], max_bytes=1024)


class TestVideo:
    @deadline(60)
    @pytest.mark.parametrize(
        ("fps", "times"), [(1.0, [0.0, 1.0, 2.0]), (2.0, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])]
    )
    async def test_frames_at_the_chosen_rate(
        self, media: dict[str, Path], fps: float, times: list[float]
    ) -> None:
        """A 3 s video gives ``3 * fps`` JPEGs at ``k / fps`` seconds."""
        kind, frames = await collect(media["mp4"], fps=fps)
        assert kind == "video" and [f.at_s for f in frames] == times
        assert all(is_jpeg(f.jpeg) and size_of(f.jpeg) == (640, 480) for f in frames)
        assert len({f.jpeg for f in frames}) == len(frames)  # the picture moves

    @deadline(60)
    async def test_hd_video_is_scaled_to_480_lines(self, media: dict[str, Path]) -> None:
        """720p comes down to 480 lines, keeping the aspect ratio."""
        _, frames = await collect(media["hd"])
        assert [size_of(f.jpeg) for f in frames] == [(854, 480)]

    @deadline(60)
    async def test_oversized_frames_are_encoded_again(self, media: dict[str, Path]) -> None:
        """Frames over the limit are re-encoded smaller; every one fits."""
        _, frames = await collect(media["noisy"], max_bytes=30_000)
        assert len(frames) == 2 and all(is_jpeg(f.jpeg, 30_000) for f in frames)

    @deadline(60)
    async def test_info_and_early_close_stop_ffmpeg(self, media: dict[str, Path]) -> None:
        """The feed knows the duration; leaving after one frame kills ffmpeg."""
        async with open_image_feed(media["mp4"]) as feed:
            assert (feed.kind, feed.fps, feed.duration_s) == ("video", 1.0, 3.0)
            proc = feed._video.proc  # type: ignore[union-attr]
            assert proc is not None
            first = await feed.__anext__()
        assert first.at_s == 0.0 and proc.returncode is not None
        with pytest.raises(StopAsyncIteration):
            await feed.__anext__()

    @deadline(30)
    async def test_a_hanging_ffmpeg_meets_the_deadline(
        self, tmp_path: Path, media: dict[str, Path]
    ) -> None:
        """No picture within ``timeout_s`` is an InputError, and ffmpeg is killed.

        Real time (0.3 s): the wait is on a real process, which the autojump clock
        would skip past even while it works."""
        tools = script(tmp_path, "hang", "exec sleep 600")
        start = trio.current_time()
        with pytest.raises(InputError, match=r"no picture of .* within 0.3 s; fix:"):
            await collect(media["mp4"], find_tool=tools, timeout_s=0.3)
        assert trio.current_time() - start < 10

    @deadline(30)
    async def test_ffmpeg_failing_part_way(self, tmp_path: Path, media: dict[str, Path]) -> None:
        """Pictures before the failure are yielded, then the error names ffmpeg's reason."""
        jpg = media["jpg"]
        tools = script(tmp_path, "crash", f"cat {jpg} {jpg}; echo 'boom: corrupt' >&2; exit 1")
        got: list[float] = []

        async def read_all() -> None:
            async with open_image_feed(media["mp4"], find_tool=tools) as feed:
                async for frame in feed:
                    got.append(frame.at_s)

        with pytest.raises(InputError, match=r"could not decode .*\(boom: corrupt\); fix:"):
            await read_all()
        assert got == [0.0, 1.0]


class TestErrors:
    @pytest.mark.parametrize(
        ("make", "message"),
        [
            (
                lambda d: d / "missing.png",
                r"image file not found: .*missing.png; fix: check the path",
            ),
            (lambda d: d, r"is a directory; fix:"),
            (
                lambda d: (d / "empty.png", (d / "empty.png").write_bytes(b""))[0],
                r"is empty .*fix:",
            ),
            (
                lambda d: (d / "notes.txt", (d / "notes.txt").write_text("hello"))[0],
                r"notes.txt is not an image or a video .*fix:",
            ),
        ],
    )
    async def test_bad_files(
        self, tmp_path: Path, make: Callable[[Path], Path], message: str
    ) -> None:
        """Missing, a directory, empty, not a picture: one line with the fix."""
        with pytest.raises(InputError, match=message) as info:
            await collect(make(tmp_path))
        assert "\n" not in str(info.value)

    async def test_audio_only_has_no_picture(self, media: dict[str, Path]) -> None:
        """A file without a picture stream says so."""
        with pytest.raises(InputError, match="has no picture or video stream; fix:"):
            await collect(media["wav"])

    async def test_no_ffmpeg(self, media: dict[str, Path]) -> None:
        """Converting without ffmpeg names the package to install."""
        with pytest.raises(
            InputError, match=r"still.png needs ffmpeg .*fix: apt-get install ffmpeg"
        ):
            await collect(media["png"], find_tool=no_tools)

    @pytest.mark.parametrize("fps", [0.0, -1.0, 2.5])
    async def test_rate_out_of_range(self, media: dict[str, Path], fps: float) -> None:
        """The protocol allows at most 2 pictures per second."""
        with pytest.raises(ValueError, match="fps"):
            await collect(media["mp4"], fps=fps)


class TestJpegSplitter:
    def test_splits_at_eoi_whatever_the_chunking(self, media: dict[str, Path]) -> None:
        """Concatenated JPEGs with junk between them come out whole, fed byte by byte or at once."""
        one = media["jpg"].read_bytes()
        stream = b"junk" + one + one + b"\x00\xff" + one
        for step in (1, 7, 4096, len(stream)):
            splitter = JpegSplitter(1 << 20)
            out: list[bytes] = []
            for at in range(0, len(stream), step):
                out += splitter.feed(stream[at : at + step])
            assert out == [one, one, one] and splitter.pending == 0

    def test_stuffed_bytes_and_restart_markers_are_not_boundaries(self) -> None:
        """FF 00 and RSTn inside scan data do not end the picture."""
        header = b"\xff\xd8" + b"\xff\xdb\x00\x04\xff\xd9"  # a DQT whose body looks like EOI
        scan = b"\xff\xda\x00\x02" + b"\x12\xff\x00\x34\xff\xd3\x56\xff\xff\xd9"
        splitter = JpegSplitter(1 << 20)
        assert splitter.feed(header + scan + b"\xff\xd8") == [header + scan]
        assert splitter.pending == 2

    def test_runaway_picture_is_an_error(self) -> None:
        """A picture that never ends cannot grow past the bound."""
        splitter = JpegSplitter(1000)
        splitter.feed(b"\xff\xd8\xff\xda\x00\x02")
        with pytest.raises(ValueError, match="larger than 1000 bytes"):
            splitter.feed(b"\x11" * 2000)
