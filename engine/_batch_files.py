"""The local files of the batch commands: result outputs written, media prepared.

:func:`write_outputs` renders one batch result through the same sinks as a live
stream (TXT, SRT, VTT, JSONL) and keeps the raw result JSON beside them;
:func:`prepare` is ``steno prepare`` (ffmpeg → 16 kHz mono Opus, with progress).
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import urllib.parse
from typing import TYPE_CHECKING, Final

from adapters.audio.prepare import PrepareProgress, prepare_file
from adapters.dashscope.batch_result import sentences, to_finals
from adapters.sinks.factory import open_sinks
from engine.errors import ConfigError, InputError
from engine.events import Event, StreamEnded, StreamStarted

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from adapters.dashscope.batch_http import FileOutcome

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "output_stems",
    "prepare",
    "unique_stems",
    "write_outputs",
]

# The values of engine.cli's codes (importing them would be circular: cli imports us).
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1


def output_stems(urls: Sequence[str]) -> list[str]:
    """A unique file stem per URL: its last path segment without extension (``x``, ``x-2``…)."""
    names = [
        urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
        for url in urls
    ]
    return unique_stems([pathlib.PurePosixPath(name).stem for name in names])


def unique_stems(stems: Sequence[str]) -> list[str]:
    """``stems`` made unique in order: a repeat gets ``-2``, ``-3``…; empty ones are ``file``."""
    out: list[str] = []
    for base in stems:
        base = base or "file"
        stem, n = base, 1
        while stem in out:
            n += 1
            stem = f"{base}-{n}"
        out.append(stem)
    return out


def write_outputs(
    out_dir: pathlib.Path, stem: str, outcome: FileOutcome, formats: Sequence[str], task_id: str
) -> int:
    """Write one file's TXT/SRT/VTT/JSONL (through the stream sinks) and its raw result JSON.

    Blocking (run it in a thread). Returns the number of sentences written.

    Raises:
        ConfigError: an output file cannot be created.
    """
    assert outcome.result is not None
    assert outcome.raw is not None
    finals = to_finals(sentences(outcome.result), stream=stem, task_id=task_id)
    audio_ms = outcome.result.properties.original_duration_in_milliseconds
    events: list[Event] = [
        StreamStarted(outcome.file_url, "batch", 16000, stream=stem),
        *finals,
        StreamEnded("ok", finals=len(finals), audio_ms=audio_ms, stream=stem),
    ]
    sinks = open_sinks(out_dir, stem, formats)
    try:
        for event in events:
            for sink in sinks:
                sink.write(event)
    finally:
        for sink in sinks:
            sink.close()
    raw = out_dir / f"{stem}.result.json"
    part = raw.with_name(f".{raw.name}.part")
    try:
        part.write_bytes(outcome.raw)
        part.replace(raw)
    except OSError as exc:
        raise ConfigError(f"cannot write {raw}: {exc.strerror}; fix: check --out") from None
    return len(finals)


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
