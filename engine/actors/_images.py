"""Pictures on the realtime protocol: the visual context, in step with the audio.

A picture goes once the audio sent reaches its media time (a video and its
sound share a timeline), at most two a second, and never before the first audio
nor after ``session.finish`` (DASHSCOPE.md §5.2). A new task resends the
picture in force at its offset. A feed that breaks stops the pictures, not the
session; a connection that breaks under a picture records that failure on the
connection (``send_image``), like any other.

Cancellation: :func:`send_images` ends when the task's connection ends.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import structlog
import trio

from adapters.audio.images import MAX_FPS, open_image_feed
from adapters.dashscope.realtime_connection import RealtimeConnection
from engine.errors import InputError

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["send_images"]

log = structlog.get_logger("steno.session")

_IMAGE_GAP_S: Final = 1.0 / MAX_FPS + 0.05
"""The least time between two pictures: the protocol's two a second, with a margin. The
service counts arrivals, which the network can bring closer together; at exactly 0.5 s
every third picture would sit on the limit's edge (the simulator refuses one there)."""


async def send_images(task: Task, path: str) -> None:
    """Send the image (or the video's frames) at ``path`` to ``task`` until its connection ends."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_feed, task, path)
        await task.link.ended.wait()
        nursery.cancel_scope.cancel()


async def _feed(task: Task, path: str) -> None:
    link = task.link
    assert isinstance(link, RealtimeConnection)
    last_sent = -math.inf
    held: bytes | None = None  # the newest picture before our offset
    rate = task.rate
    try:
        async with open_image_feed(path) as feed:
            async for at_s, jpeg in feed:
                at = int(at_s * rate)
                if at < task.offset:
                    held = jpeg
                    continue
                if held is not None:
                    if not await _send(task, link, held, task.offset, last_sent):
                        return
                    last_sent, held = trio.current_time(), None
                if not await _send(task, link, jpeg, at, last_sent):
                    return
                last_sent = trio.current_time()
            if held is not None:
                await _send(task, link, held, task.offset, last_sent)
    except InputError as exc:
        log.warning("session.images_stopped", error=str(exc))


async def _send(
    task: Task, link: RealtimeConnection, jpeg: bytes, at: int, last_sent: float
) -> bool:
    """Send one picture in its turn; False once the session takes no more (finishing)."""
    await task.audio_reaches(at)
    await trio.sleep_until(last_sent + _IMAGE_GAP_S)
    return await link.send_image(jpeg)
