"""Preparing media for batch transcription: any video or audio → 16 kHz mono Opus (Ogg).

The batch service fetches files by URL and bills and limits by size and length;
the vendor's recommended preprocessing is to upload the audio track only, as
16 kHz mono Opus. :func:`prepare_file` runs ffmpeg for one input::

    ffmpeg -i IN -map 0:a:0 -vn -ac 1 -ar 16000 -c:a libopus -b:a 32k
           -application voip -f ogg -progress pipe:1 OUT

It reports progress for long files from ffmpeg's ``-progress`` key=value blocks
(:class:`ProgressParser`, pure), against the duration ``ffprobe`` reports.
Output goes to a ``.part`` file that is renamed into place only when ffmpeg
succeeded, so a crash or Ctrl-C never leaves half a file under the final name.
Without ffmpeg, or with an ffmpeg lacking libopus, it fails with one line naming
the fix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec
import trio

from adapters.children import open_child, run_child
from engine.errors import InputError

__all__ = ["PrepareProgress", "Prepared", "ProgressParser", "ffmpeg_command", "prepare_file"]

RATE: Final = 16000
_READ: Final = 1 << 14
_STDERR_KEEP: Final = 4096

ToolFinder = Callable[[str], str | None]


class PrepareProgress(msgspec.Struct, frozen=True):
    """How far one conversion got: seconds of output written, of ``total_s`` (if known)."""

    source: str
    done_s: float
    total_s: float | None
    finished: bool = False

    @property
    def fraction(self) -> float | None:
        if self.finished:
            return 1.0
        if not self.total_s:
            return None
        return min(1.0, self.done_s / self.total_s)


class Prepared(msgspec.Struct, frozen=True):
    """One prepared file."""

    source: str
    output: str
    duration_s: float | None
    size_bytes: int


class ProgressParser:
    """ffmpeg ``-progress`` output → seconds done, one value per finished block (pure).

    Blocks are ``key=value`` lines ending with ``progress=continue`` or
    ``progress=end``; the time is ``out_time_us`` (or ``out_time_ms``, which
    ffmpeg also gives in microseconds), ``N/A`` before the first packet.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._us: int | None = None
        self.ended = False

    def feed(self, data: bytes) -> list[float]:
        """Take a chunk of stdout; return the seconds done at each block it completed."""
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        done: list[float] = []
        for raw in lines:
            key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
            if key in ("out_time_us", "out_time_ms"):
                with contextlib.suppress(ValueError):
                    self._us = int(value)
            elif key == "progress":
                done.append(max(0, self._us or 0) / 1e6)
                self.ended = self.ended or value == "end"
        return done


def ffmpeg_command(ffmpeg: str, source: str, output: str, *, bitrate_kbps: int = 32) -> list[str]:
    """The ffmpeg command line of one conversion (``file:`` so no name is read as an option)."""
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-v",
        "error",
        "-y",
        "-i",
        f"file:{source}",
        "-map",
        "0:a:0",
        "-vn",
        "-sn",
        "-dn",
        "-ac",
        "1",
        "-ar",
        str(RATE),
        "-c:a",
        "libopus",
        "-b:a",
        f"{bitrate_kbps}k",
        "-application",
        "voip",
        "-f",
        "ogg",
        "-progress",
        "pipe:1",
        f"file:{output}",
    ]


async def prepare_file(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    stem: str | None = None,
    bitrate_kbps: int = 32,
    on_progress: Callable[[PrepareProgress], object] | None = None,
    find_tool: ToolFinder = shutil.which,
) -> Prepared:
    """Convert ``source`` to ``out_dir/<stem>.opus`` (16 kHz mono Opus in Ogg).

    Args:
        source: any file ffmpeg reads (video or audio); its first audio track is used.
        out_dir: created when missing.
        stem: the output name without extension (default: the source's stem).
        bitrate_kbps: Opus bitrate; 32 kbit/s is transparent for speech at 16 kHz.
        on_progress: called after each ffmpeg progress block (about twice a second).
        find_tool: looks up ``ffmpeg``/``ffprobe`` (tests pass one that finds nothing).

    Raises:
        InputError: no ffmpeg (or no libopus), a missing or empty input, no
            audio track, or ffmpeg failing (its last error line is in the message).

    Cancellation:
        ffmpeg is killed and the partial output removed.
    """
    name = os.fspath(source)
    ffmpeg = find_tool("ffmpeg")
    if ffmpeg is None:
        raise InputError(
            "preparing media needs ffmpeg, which is not installed; "
            "fix: apt-get install ffmpeg (or brew install ffmpeg)"
        )
    try:
        st = await trio.Path(name).stat()
    except FileNotFoundError:
        raise InputError(f"input not found: {name}; fix: check the path") from None
    except OSError as exc:
        raise InputError(f"cannot read {name} ({exc.strerror}); fix: check the path") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        raise InputError(f"{name} is not a non-empty regular file; fix: pass a media file")
    total = await _duration(name, find_tool("ffprobe"))
    directory = Path(out_dir)
    try:
        await trio.Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {directory} ({exc.strerror}); fix: check -o") from None
    output = directory / f"{stem or Path(name).stem}.opus"
    part = output.with_name(f".{output.name}.part")
    cmd = ffmpeg_command(ffmpeg, name, str(part), bitrate_kbps=bitrate_kbps)
    try:
        await _run(cmd, name, total, on_progress)
        await trio.Path(part).replace(output)
    finally:
        with trio.CancelScope(shield=True), contextlib.suppress(OSError):
            await trio.Path(part).unlink()
    size = (await trio.Path(output).stat()).st_size
    if on_progress is not None:
        on_progress(PrepareProgress(name, total or 0.0, total, finished=True))
    return Prepared(name, str(output), total, size)


async def _duration(name: str, ffprobe: str | None) -> float | None:
    """The container's duration in seconds (None without ffprobe or when it is unknown)."""
    if ffprobe is None:
        return None
    cmd = [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]
    try:
        done = await run_child([*cmd, f"file:{name}"])
    except OSError:
        return None
    try:
        value = float(done.stdout.decode().strip())
    except ValueError:
        return None
    return value if value > 0 else None


async def _run(
    cmd: list[str],
    name: str,
    total: float | None,
    on_progress: Callable[[PrepareProgress], object] | None,
) -> None:
    try:
        # Its own process group: Ctrl-C and group signals reach only us, and we stop it
        # (adapters.children); without us its progress pipe breaks and it stops too.
        proc = await open_child(cmd)
    except OSError as exc:
        raise InputError(f"cannot run {cmd[0]} ({exc}); fix: apt-get install ffmpeg") from None
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr
    errors = bytearray()
    parser = ProgressParser()

    async def read_stderr() -> None:
        while chunk := await stderr.receive_some(_READ):
            errors.extend(chunk)
            del errors[:-_STDERR_KEEP]

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_stderr)
            while chunk := await stdout.receive_some(_READ):
                for done_s in parser.feed(bytes(chunk)):
                    if on_progress is not None:
                        on_progress(PrepareProgress(name, done_s, total))
        code = await proc.wait()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            await stdout.aclose()
            await stderr.aclose()
    if code != 0:
        text = bytes(errors).decode(errors="replace")
        detail = _last_line(bytes(errors)) or f"exit code {code}"
        if "libopus" in text.lower() or "unknown encoder" in text.lower():
            raise InputError(
                f"this ffmpeg cannot encode Opus ({detail}); fix: install an ffmpeg with libopus"
            )
        if "matches no streams" in text or "does not contain any stream" in text:
            raise InputError(f"{name} has no audio track; fix: pass a file with sound")
        raise InputError(
            f"ffmpeg could not convert {name} ({detail}); fix: check that it plays, "
            f"e.g. `ffplay {name}`"
        )


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""
