"""The file capture actor: plays an audio file into the pipeline as if it were a microphone.

It opens the file (all validation happens there, before ``task_status.started``),
then sends mono float32 :class:`RawBlock` s of about ``block_ms`` each. With a
``speed`` it paces them on an absolute schedule: the block that ends at ``d``
seconds of audio is sent at ``t0 + d / speed`` on the trio clock, so slow sends
never accumulate into drift (a late block is followed by on-time ones). With
``speed=None`` (``--fast``) it sends as fast as the outbox accepts.
"""

from __future__ import annotations

import math
import shutil
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio

from adapters.audio.files import SourceInfo, open_audio_source
from engine.messages import RawBlock

if TYPE_CHECKING:
    from adapters.audio.files import ToolFinder

__all__ = ["FileCaptureConfig", "SourceInfo", "block_deadline", "run"]

log = structlog.get_logger()


class FileCaptureConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which file to play and how fast.

    Attributes:
        path: The audio file.
        speed: Real-time multiplier (2.0 plays twice as fast); None sends as fast as
            the pipeline accepts (``--fast``).
        block_ms: Length of each block.
    """

    path: str
    speed: float | None = 1.0
    block_ms: int = 100

    def __post_init__(self) -> None:
        if self.speed is not None and not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be a positive number or None, got {self.speed}")
        if self.block_ms <= 0:
            raise ValueError(f"block_ms must be positive, got {self.block_ms}")


def block_deadline(t0: float, emitted_frames: int, rate: int, speed: float) -> float:
    """When to send the block that brings the total to ``emitted_frames`` frames."""
    return t0 + emitted_frames / rate / speed


async def run(
    *,
    outbox: trio.MemorySendChannel[RawBlock],
    config: FileCaptureConfig,
    task_status: trio.TaskStatus[SourceInfo] = trio.TASK_STATUS_IGNORED,
    find_tool: ToolFinder = shutil.which,
) -> None:
    """Open ``config.path`` and send its audio, paced, to ``outbox``.

    Args:
        outbox: Where the blocks go.
        config: The file and the pacing.
        task_status: Gets the :class:`SourceInfo` (rate, channels, duration) once the
            file is open and valid.
        find_tool: Looks up ffmpeg/ffprobe (injectable for tests).

    Channels:
        Owns and closes ``outbox``, at the end of the file or on any error; the
        receiver then sees ``EndOfChannel``.

    Cancellation:
        Stops between blocks; the decoder (file or ffmpeg process) is closed. Audio
        already sent stays sent.

    Error handling:
        :class:`~engine.errors.InputError` for a bad file is raised before
        ``task_status.started``, so ``nursery.start`` raises it. A decoding failure
        later also raises ``InputError``. If the receiver closed its end, the
        ``trio.BrokenResourceError`` propagates.
    """
    with structlog.contextvars.bound_contextvars(actor="capture", source=config.path):
        async with outbox:
            source = await open_audio_source(
                config.path, block_ms=config.block_ms, find_tool=find_tool
            )
            async with source:
                task_status.started(source.info)
                t0 = trio.current_time()
                emitted = blocks = 0
                async for samples in source:
                    emitted += len(samples)
                    blocks += 1
                    if config.speed is not None:
                        await trio.sleep_until(
                            block_deadline(t0, emitted, source.rate, config.speed)
                        )
                    await outbox.send(RawBlock(samples, source.rate))
                log.info(
                    "capture.finished",
                    blocks=blocks,
                    audio_s=round(emitted / source.rate, 3),
                    elapsed_s=round(trio.current_time() - t0, 3),
                    speed=config.speed,
                    decoder=source.info.decoder,
                )
