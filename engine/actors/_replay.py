"""The replay: a task is sent the replay buffer from its position, faster than real time.

A new task starts at the commit point (``_feed.py``); before it streams live
audio, :func:`replay` sends it everything buffered after that point, in chunks
of up to :data:`~engine.actors._feed.REPLAY_FRAME_BYTES`, paced at
``replay_speed`` times real time, jumping the task's clock over holes the
source skipped. Frames that arrive meanwhile are buffered and replayed too.

Cancellation: a checkpoint per chunk; a cancelled replay leaves the task's
position at the last chunk sent (the caller abandons the task).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ._feed import REPLAY_FRAME_BYTES

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._feed import Feed
    from ._task import Task

__all__ = ["replay"]


async def replay(feed: Feed, task: Task, speed: float, over: Callable[[Task], bool]) -> None:
    """Send the buffer from the task's position to its end, paced at ``speed`` x real time.

    Stops early once ``over(task)`` (an utterance model's task takes no more).
    """
    buffer = feed.buffer
    t0 = trio.current_time()
    sent = 0
    while task.sent_until < buffer.end and not over(task):
        chunk = bytearray()
        end = task.sent_until
        for frame in buffer.frames_from(task.sent_until):
            if frame.start > end:  # a hole the source skipped: jump the task's clock
                if chunk:
                    break  # send what precedes it first
                task.skip_to(frame.start)
                end = frame.start
            if len(chunk) + len(frame.pcm) > REPLAY_FRAME_BYTES and chunk:
                break
            skip = max(0, end - frame.start) * 2
            chunk += frame.pcm[skip:]
            end = frame.end
        if not chunk:
            break
        chunk_start = end - len(chunk) // 2
        await task.send_audio(bytes(chunk), end, voiced=feed.could_hold_words(chunk_start))
        feed.mark_sent(end)
        sent += len(chunk) // 2
        await trio.sleep_until(t0 + sent / feed.rate / speed)
        feed.absorb_ready()
