"""One inference task's incoming audio, taken frame by frame without awaiting.

The connection (:mod:`.inference`) hands every audio frame of the streaming task to
:func:`take_audio`, from its reader task or in place from the process's hub: the
frame's header is stripped (:class:`~.audio.TaskAudio`), its energy decides the
silence timers, and the PCM goes into the task's :class:`~.audio.AudioQueue`
(which may feed a synchronous recognizer session there and then).

The timers, on the ``now`` the caller passes (trio's clock): audio below
``silence_rms`` for ``silence_timeout_s`` without ``heartbeat`` ends the task
(:class:`Dropped`); with ``heartbeat``, one heartbeat result every
``heartbeat_interval_s`` of silence (:class:`Heartbeat`; gummy's task is kept alive
without one, see :mod:`.inference`).

Nothing here awaits, sends or closes: :func:`take_audio` changes the task's state
and returns an :data:`Answer` — None when the frame was taken (or ignored), else
what the connection still has to do: send a heartbeat result and then
:func:`queue_audio` the PCM, fail the task, or close the connection. Never a
checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import msgspec

from adapters.dashscope import messages as m

from .audio import AudioFormatError, TaskAudio
from .shaping import heartbeat_output

if TYPE_CHECKING:
    from .config import SimConfig
    from .inference_task import Task

__all__ = ["Answer", "Dropped", "Failed", "Heartbeat", "queue_audio", "take_audio"]


class Failed(msgspec.Struct, frozen=True):
    """Fail the task with ``code`` and ``message``; the connection ends."""

    code: str
    message: str


class Heartbeat(msgspec.Struct, frozen=True):
    """Send ``command`` (a heartbeat result), then :func:`queue_audio` ``pcm``."""

    command: m.SendResult
    pcm: bytes


class Dropped(msgspec.Struct, frozen=True):
    """The task was dropped for its silence (cancelled); close with 1000 and ``reason``."""

    reason: str


Answer: TypeAlias = Failed | Heartbeat | Dropped | None
"""What the connection still has to do for a frame (None: nothing)."""


def take_audio(task: Task, data: bytes, now: float, config: SimConfig) -> Answer:
    """Take one audio frame of ``task``, arrived at ``now``.

    Returns:
        None when the frame was queued or ignored (gummy-chat after its sentence
        end: unbilled), else what the connection must do (see :data:`Answer`).
    """
    if task.utterance_over:
        return None  # gummy-chat after its sentence end: ignored, unbilled
    try:
        pcm = task.audio.push(data)
    except AudioFormatError as exc:
        return Failed("UNSUPPORTED_FORMAT", str(exc))
    if not pcm:
        return None
    level = task.level(pcm) if task.level is not None else None
    if level is None:
        level = TaskAudio.rms(pcm)
    if level >= config.silence_rms:
        task.last_voice_at = now
    elif task.spec.heartbeat:
        # gummy: kept alive without heartbeat results (see .inference's docstring)
        due = now - max(task.last_voice_at, task.last_heartbeat_at)
        if task.spec.gummy is None and due >= config.heartbeat_interval_s:
            task.last_heartbeat_at = now
            task.heartbeats += 1
            return Heartbeat(m.SendResult(heartbeat_output(task.audio.duration_ms)), pcm)
    elif now - task.last_voice_at >= config.silence_timeout_s:
        task.outcome = "dropped: silence"
        task.cancel()
        return Dropped(f"no speech for {config.silence_timeout_s:g} seconds")
    return queue_audio(task, pcm, config)


def queue_audio(task: Task, pcm: bytes, config: SimConfig) -> Failed | None:
    """Put ``pcm`` in the task's queue; a :class:`Failed` ``Throttling`` if it is full."""
    if task.queue.put_nowait(pcm):
        return None
    queued = task.queue.queued_bytes / (2 * task.spec.sample_rate)
    message = (
        f"audio arrives faster than it is recognized ({queued:.1f} s queued, "
        f"limit {config.max_audio_queue_s:g} s)"
    )
    return Failed("Throttling", message)
