"""The plain data of a stream: its configuration and its statistics snapshot.

Both are public as :class:`engine.stream.StreamConfig` and
:class:`engine.stream.StreamStatistics`; they live here so the stream assembly
(:mod:`engine.stream`) stays about behaviour.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from engine._stream_input import check_rate
from engine.config import SessionConfig

__all__ = ["StreamConfig", "StreamStatistics"]


class StreamConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A pushed stream.

    Attributes:
        session: how to talk to the service (model, url, key, policies).
        input_rate: the rate of pushed audio when ``push`` is not told otherwise.
        input_channels: channels of pushed interleaved audio (downmixed to mono).
        simulator: start an embedded simulator with this recognizer and ignore
            ``session.url`` (for examples and offline work).
        source: what ``StreamStarted.source`` says the audio is.
    """

    session: SessionConfig
    input_rate: int = 16000
    input_channels: int = 1
    simulator: Literal["sphinx", "scripted"] | None = None
    source: str = "push"

    def __post_init__(self) -> None:
        check_rate(self.input_rate)
        if self.input_channels < 1:
            raise ValueError("input_channels must be at least 1")


class StreamStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one stream's live counters (:meth:`Stream.statistics`).

    Times on the global timeline are samples at ``rate`` (the session rate).

    Attributes:
        pushed_s: audio pushed so far, in seconds.
        skipped_s: time skipped on purpose (``skip``; ``AudioSkipped``), in seconds.
        timeline_samples: the global timeline made so far (resampled audio and skips).
        buffered_samples, buffered_frames: the replay buffer (audio after the commit
            point), bounded by ``max_buffered_samples``.
        tasks_opened: server tasks opened (first, reconnects, rotations, resumes).
        live_tasks: the session's background tasks now.
        reconnects, finals: as in ``StreamEnded``.
        audio_lost_ms: audio that was not and will not be recognized (``AudioGap``).
        push_queue: producers waiting behind another on the resampler stage.
        frame_queue, event_queue: items waiting on the stream's bounded edges
            (resampler → session → ``events()``).
        send_lag_p99_ms, send_lag_max_ms: live frames' send lag, handed to the session's
            inbox → taken by the transport (a bounded histogram; 0.0 before any frame).
        frames_coalesced: live frames sent joined with others (up to 200 ms a message)
            because the session was behind.
    """

    rate: int
    pushed_s: float
    skipped_s: float
    timeline_samples: int
    buffered_samples: int
    buffered_frames: int
    max_buffered_samples: int
    tasks_opened: int
    live_tasks: int
    reconnects: int
    finals: int
    audio_lost_ms: int
    push_queue: int
    frame_queue: int
    event_queue: int
    send_lag_p99_ms: float = 0.0
    send_lag_max_ms: float = 0.0
    frames_coalesced: int = 0
