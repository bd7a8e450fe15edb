"""A scenario's audio, read once and shared by every stream: paced 100 ms chunks.

Each stream pushes the same immutable chunks (lead silence, the file, tail silence)
on an absolute schedule; :class:`ScenarioAudio` also maps a sample of the stream's
global timeline back to the chunk that carried it (``final_lag``).
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING, Final

import numpy as np

from adapters.audio.files import open_audio_source
from engine.errors import ConfigError, InputError
from engine.scenario.spec import AudioSpec, seconds

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["CHUNK_MS", "ScenarioAudio", "load_audio", "resolve_path"]

CHUNK_MS: Final = 100


def resolve_path(path: str, base: pathlib.Path | None) -> pathlib.Path:
    """A relative path from the current directory if it is there, else from ``base``."""
    p = pathlib.Path(path)
    if p.is_absolute() or p.exists() or base is None:
        return p
    return base / p


class ScenarioAudio:
    """What every stream of a scenario plays (read-only once built).

    Attributes:
        rate: the file's sample rate (the engine resamples it, as for any pushed audio).
        chunks: float32 mono blocks of ``CHUNK_MS``, lead and tail silence included.
        duration_s: the audio's length with the silences.
        speed: pacing factor: chunk *i* is due ``i · chunk_s / speed`` after the start.
        reference: the reference transcript (one string), or None.
    """

    def __init__(
        self,
        samples: NDArray[np.float32],
        rate: int,
        *,
        speed: float = 1.0,
        lead_s: float = 0.0,
        tail_s: float = 0.0,
        reference: str | None = None,
        path: str = "",
    ) -> None:
        self.rate = rate
        self.speed = speed
        self.reference = reference
        self.path = path
        lead = np.zeros(round(lead_s * rate), np.float32)
        tail = np.zeros(round(tail_s * rate), np.float32)
        whole = np.concatenate((lead, samples.astype(np.float32, copy=False), tail))
        step = rate * CHUNK_MS // 1000
        self.chunks: tuple[NDArray[np.float32], ...] = tuple(
            _readonly(whole[i : i + step]) for i in range(0, len(whole), step)
        )
        self.chunk_s = step / rate
        self.duration_s = len(whole) / rate

    def due(self, chunk: int) -> float:
        """Seconds after the stream's start that chunk ``chunk`` is due."""
        return chunk * self.chunk_s / self.speed

    def due_of_sample(self, sample: int, rate: int) -> float:
        """When the chunk carrying global sample ``sample`` (at ``rate``) was due."""
        return self.due(int(sample / rate / self.chunk_s + 1e-9))


def _readonly(a: NDArray[np.float32]) -> NDArray[np.float32]:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


async def load_audio(spec: AudioSpec, *, base: pathlib.Path | None = None) -> ScenarioAudio:
    """Read the whole file (any format the CLI takes) and the reference transcript.

    Raises:
        ConfigError: the file or reference cannot be read, naming the path.
    """
    path = resolve_path(spec.file, base)
    blocks: list[NDArray[np.float32]] = []
    try:
        source = await open_audio_source(path, block_ms=1000)
        async with source:
            rate = source.rate
            async for block in source:
                blocks.append(block)
    except InputError as exc:
        raise ConfigError(f"scenario audio: {exc}") from None
    reference = None
    if spec.reference is not None:
        ref_path = resolve_path(spec.reference, base)
        try:
            reference = " ".join(ref_path.read_text(encoding="utf-8").split())
        except OSError as exc:
            raise ConfigError(
                f"cannot read the reference {os.fspath(ref_path)}: {exc.strerror or exc}"
            ) from None
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return ScenarioAudio(
        samples,
        rate,
        speed=spec.speed,
        lead_s=seconds(spec.lead_silence),
        tail_s=seconds(spec.tail_silence),
        reference=reference,
        path=os.fspath(path),
    )
