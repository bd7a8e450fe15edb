"""The local files of the batch commands: one result written as a stream's outputs.

:func:`write_outputs` renders one batch result through the same sinks as a live
stream (TXT, SRT, VTT, JSONL) and keeps the raw result JSON beside them.
"""

from __future__ import annotations

import pathlib
import tempfile
import urllib.parse
from typing import TYPE_CHECKING

from adapters.dashscope.batch_result import sentences, to_finals
from adapters.sinks.factory import open_sinks
from engine.errors import ConfigError
from engine.events import Event, StreamEnded, StreamStarted

if TYPE_CHECKING:
    from collections.abc import Sequence

    from adapters.dashscope.batch_http import FileOutcome

__all__ = ["check_out_dir", "output_stems", "unique_stems", "write_outputs"]


def check_out_dir(out_dir: pathlib.Path) -> None:
    """Make sure ``--out`` can take files (creating it), before a task is submitted
    (and billed). Blocking (call from a thread).

    Raises:
        ConfigError: it cannot be created or written, in one line naming the fix.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir, prefix=".steno-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write to --out {out_dir}: {exc.strerror or exc}; "
            "fix: pass a directory you can write to"
        ) from None


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
