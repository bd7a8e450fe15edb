"""``steno prepare``: video or audio → 16 kHz mono Opus for batch upload (ffmpeg, with progress)."""

from __future__ import annotations

import pathlib
import shutil
import sys
from typing import TYPE_CHECKING, Any

from adapters.audio.prepare import PrepareProgress, prepare_file
from engine.cli._common import EXIT_FAILED, EXIT_OK
from engine.cli.batch_files import unique_stems
from engine.errors import ConfigError, InputError

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "prepare"]


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "prepare", help="convert video or audio to 16 kHz mono Opus for batch upload (ffmpeg)"
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="write the .opus files here")
    p.add_argument("--bitrate", type=int, default=32, metavar="KBPS", help="default 32")
    p.set_defaults(func=prepare)


async def prepare(args: argparse.Namespace) -> int:
    if shutil.which("ffmpeg") is None:
        print(
            "steno: error: `steno prepare` needs ffmpeg; fix: apt-get install ffmpeg",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if args.bitrate < 6 or args.bitrate > 256:
        raise ConfigError("--bitrate must be 6–256 kbit/s")
    stems = unique_stems([pathlib.PurePath(p).stem for p in args.inputs])
    tty = sys.stderr.isatty()
    failed = 0
    for path, stem in zip(args.inputs, stems, strict=True):
        try:
            done = await prepare_file(
                path,
                args.out,
                stem=stem,
                bitrate_kbps=args.bitrate,
                on_progress=_Progress(stem, tty),
            )
        except InputError as exc:
            failed += 1
            print(f"steno: error: {exc}", file=sys.stderr)
            continue
        length = f"{done.duration_s:.1f} s, " if done.duration_s else ""
        print(f"{path} → {done.output} ({length}{done.size_bytes} bytes)")
    return EXIT_FAILED if failed else EXIT_OK


class _Progress:
    """Progress of one conversion on stderr: a live percentage on a terminal, else every 25%."""

    def __init__(self, stem: str, tty: bool) -> None:
        self._stem = stem
        self._tty = tty
        self._shown = -1

    def __call__(self, progress: PrepareProgress) -> None:
        fraction = progress.fraction
        if fraction is None:
            return
        percent = int(fraction * 100)
        step = percent if self._tty else percent // 25 * 25
        if step == self._shown or (progress.finished and not self._tty):
            return
        self._shown = step
        if self._tty:
            end = "\n" if progress.finished else ""
            print(f"\r[{self._stem}] preparing {percent:3d}%", end=end, file=sys.stderr, flush=True)
        else:
            print(f"[{self._stem}] preparing {step}%", file=sys.stderr)
