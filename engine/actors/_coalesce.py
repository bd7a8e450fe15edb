"""Catching up: the frames queued behind a live one, sent as few messages (``_feed.py``).

A pump that finds a second frame queued behind the one it got is behind:
:func:`coalesce` takes the queued frames too (up to ``COALESCE_MS``) and
:func:`message_runs` cuts them into contiguous runs, each sent as one message.
Frames stay whole in the replay buffer, so replay and commits do not change.
Not a checkpoint; no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from engine.events import AudioFrame

    from ._feed import Feed

__all__ = ["coalesce", "message_runs"]


def coalesce(feed: Feed, frame: AudioFrame, limit: int) -> tuple[list[AudioFrame], list[float]]:
    """``frame`` (just returned by :meth:`Feed.next_frame`) and the frames queued behind it.

    The pump is behind when a second frame is already queued: it takes the queued
    ones too (buffered, in order; not a checkpoint) until they hold at least
    ``limit`` samples with ``frame``, to send them as few messages
    (:func:`message_runs`). Returns the frames and, when there is more than one,
    when each was handed to the inbox (for :meth:`Feed.sent_live`). The input's
    end found behind them sets :attr:`Feed.input_done`.
    """
    frames = [frame]
    arrivals: list[float] = []
    first = feed._arrived_t
    total = len(frame.pcm) >> 1
    while total < limit and (later := feed.receive_queued()) is not None:
        if first is not None and not arrivals:
            arrivals.append(first)
        if feed._arrived_t is not None:
            arrivals.append(feed._arrived_t)
        frames.append(later)
        total += len(later.pcm) >> 1
    return frames, arrivals


def message_runs(frames: list[AudioFrame], limit: int) -> Iterator[list[AudioFrame]]:
    """``frames`` (in timeline order) cut into messages: runs of contiguous frames (no hole
    the source skipped inside one) of at most ``limit`` samples; a longer frame goes alone."""
    run = [frames[0]]
    size = len(frames[0].pcm) >> 1
    for frame in frames[1:]:
        samples = len(frame.pcm) >> 1
        if frame.start == run[-1].end and size + samples <= limit:
            run.append(frame)
            size += samples
        else:
            yield run
            run, size = [frame], samples
    yield run
