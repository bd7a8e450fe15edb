"""The names and checks of a run of files: stream ids, output stems, the output directory.

Blocking helpers (:func:`check_output_dir`, :func:`file_durations`) run in a thread.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import TYPE_CHECKING

from engine.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.pipeline import FileStreamConfig

__all__ = ["check_output_dir", "file_durations", "output_stems", "stream_ids"]


def check_output_dir(directory: str, flag: str = "--out") -> None:
    """Create ``directory`` and check it can take files, before anything connects.

    Blocking (call from a thread).

    Raises:
        ConfigError: it cannot be created or written (a configuration error: exit 2).
    """
    path = pathlib.Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".steno-write-check-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write output files to {directory}: {exc.strerror or exc}; "
            f"fix: choose a writable directory with {flag}"
        ) from None


def stream_ids(files: Sequence[str]) -> list[str]:
    """A readable, unique id per file: its name, with a counter for repeats."""
    seen: dict[str, int] = {}
    ids = []
    for path in files:
        name = pathlib.Path(path).name
        seen[name] = seen.get(name, 0) + 1
        ids.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return ids


def output_stems(files: Sequence[str]) -> list[str]:
    """A unique output file stem per file, so two inputs never write the same files.

    The first file with a stem keeps it; a later one with the same stem (the same file
    twice, or ``a/x.wav`` and ``b/x.wav``) gets ``x-2``, ``x-3``, …, skipping any stem
    another input already has.
    """
    stems = [pathlib.Path(path).stem for path in files]
    taken: set[str] = set()
    out = []
    for stem in stems:
        unique, n = stem, 1
        while unique in taken or (unique != stem and unique in stems):
            n += 1
            unique = f"{stem}-{n}"
        taken.add(unique)
        out.append(unique)
    return out


def file_durations(configs: Sequence[FileStreamConfig]) -> dict[str, float]:
    """Each file's length in seconds, by stream, where its header says (for progress).

    Blocking (reads headers). A file soundfile cannot read (mp3 in an old
    libsndfile, a container for ffmpeg, a missing file) gets no progress: its
    errors belong to its stream, not here.
    """
    import soundfile

    durations = {}
    for config in configs:
        try:
            seconds = float(soundfile.info(config.path).duration)
        except (
            OSError,
            RuntimeError,
            ValueError,
            TypeError,
        ):  # soundfile.LibsndfileError is a RuntimeError
            continue
        if math.isfinite(seconds) and seconds > 0:
            durations[config.session.stream] = seconds
    return durations
