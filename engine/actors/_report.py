"""What a session tells the world: its outbox, its counters, the names of its failures.

:class:`Report` is the only writer of the counters it reports (reconnects, lost
samples, failed, results emitted on the fast lane) and the only sender on its outbox: every event
gets its envelope (stream id, trio time) here.

Channels: sends on the session's outbox (blocks while the renderer lags; never
closes it: the session's ``run`` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec
import structlog
import trio

from engine.errors import (
    AuthError,
    ConfigError,
    ConnectFailed,
    Disconnected,
    FinishTimeout,
    InputError,
    RemoteProtocolError,
    StenoError,
    StenoTimeout,
    TaskFailed,
)
from engine.events import (
    AudioGap,
    AudioSkipped,
    Reconnecting,
    StreamEnded,
    StreamError,
    TaskMetrics,
    samples_to_ms,
)
from engine.policy import classify

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.events import Event

    from ._task import Task

__all__ = ["Report", "kind_of", "room_check"]

log = structlog.get_logger("steno.session")


class Report:
    """The session's outbox and counters."""

    def __init__(self, outbox: trio.MemorySendChannel[Event], stream: str, rate: int) -> None:
        self._outbox = outbox
        self._has_room = room_check(outbox)
        self._stream = stream
        self.rate = rate
        self.reconnects = 0
        self.lost_samples = 0
        self.fast_results = 0  # results emitted by the connection's reader (emit_nowait)
        self.gave_up = False  # the session stopped on an error, not at the end of its input
        self.permanent = False  # ... and the error needs the user (key, model, quota, input)

    async def emit(self, event: Event) -> None:
        """Stamp the envelope (stream id, trio time) and send; blocks while the renderer lags."""
        await self._outbox.send(
            msgspec.structs.replace(event, stream=self._stream, t=trio.current_time())
        )

    def has_room(self) -> bool:
        """Whether :meth:`emit_nowait` would take an event now (not a checkpoint).

        False also when the renderer is gone: :meth:`emit` then raises why.
        """
        return self._has_room()

    def emit_nowait(self, event: Event) -> None:
        """:meth:`emit` without waiting, after :meth:`has_room` said yes (not a checkpoint).

        Raises:
            trio.WouldBlock: the outbox is full (:meth:`has_room` was not asked).
        """
        self._outbox.send_nowait(
            msgspec.structs.replace(event, stream=self._stream, t=trio.current_time())
        )
        self.fast_results += 1

    async def gap(self, start: int, end: int, reason: str) -> None:
        """Account for audio that will never be recognized."""
        if end <= start:
            return
        self.lost_samples += end - start
        log.warning("session.audio_gap", start=start, end=end, reason=reason)
        await self.emit(AudioGap(start, end, reason, rate=self.rate))

    async def reconnecting(self, attempt: int, delay: float, cause: str) -> None:
        """A transient failure: another task after ``delay`` s."""
        self.reconnects += 1
        await self.emit(Reconnecting(attempt, delay, cause))

    async def error(self, exc: StenoError, *, permanent: bool) -> None:
        """The stream gives up: one error (its status: :func:`outcome_status`)."""
        self.gave_up = True
        self.permanent = self.permanent or permanent
        await self.emit(StreamError(kind_of(exc), str(exc), permanent=permanent))

    async def skipped(self, spans: list[tuple[int, int]]) -> None:
        """Committed silence no task was sent: skipped on purpose, not lost."""
        for start, end in spans:
            if end > start:
                await self.emit(AudioSkipped(start, end, "silence", rate=self.rate))

    async def task_metrics(self, task: Task) -> None:
        link = task.link
        await self.emit(
            TaskMetrics(
                task.task_id,
                task.task_id,
                _delay_ms(link.first_audio_t, task.results.first_text_t),
                _delay_ms(link.finish_sent_t, link.finished_t),
                samples_to_ms(task.sent_until - task.offset, self.rate),
                task.results.finals,
                frames_coalesced=task.frames_coalesced,
            )
        )

    async def end(self, *, finals: int, audio_end: int) -> None:
        """The last event: how the stream ended."""
        status = outcome_status(
            gave_up=self.gave_up, permanent=self.permanent, finals=finals, lost=self.lost_samples
        )
        await self.emit(
            StreamEnded(
                status,
                finals=finals,
                reconnects=self.reconnects,
                audio_lost_ms=samples_to_ms(self.lost_samples, self.rate),
                audio_ms=samples_to_ms(audio_end, self.rate),
            )
        )


def outcome_status(*, gave_up: bool, permanent: bool, finals: int, lost: int) -> str:
    """How a session ended, as ``StreamEnded.status`` (the README's outcome table).

    ========================================================  =========  ====
    what happened                                             status     exit
    ========================================================  =========  ====
    every sample recognized (or skipped on purpose)           ok         0
    audio lost, exactly (overflow, finish deadline, gaps),    partial    3
    with something recognized, whatever error ended it
    a permanent error (key, model, quota, bad parameter)      failed     1
    gave up on transient errors with nothing recognized       failed     1
    ========================================================  =========  ====

    The error that happened to come last does not decide: a service that throttles
    every retry and one that goes half-open on every retry lose the same audio and
    end the same way.
    """
    if permanent or (gave_up and finals == 0):
        return "failed"
    return "partial" if lost else "ok"


def kind_of(exc: StenoError) -> str:
    """A short, stable name for the failure, for StreamError.kind."""
    for kind, types in _KINDS:
        if isinstance(exc, types):
            return kind
    return classify(exc).value


_KINDS: Final[tuple[tuple[str, type[StenoError] | tuple[type[StenoError], ...]], ...]] = (
    ("finish-timeout", FinishTimeout),
    ("auth", AuthError),
    ("connect", ConnectFailed),
    ("disconnected", Disconnected),
    ("task-failed", TaskFailed),
    ("timeout", StenoTimeout),
    ("protocol", RemoteProtocolError),
    ("config", ConfigError),
    ("input", InputError),
)


def _delay_ms(since: float | None, until: float | None) -> float | None:
    if since is None or until is None:
        return None
    return round((until - since) * 1000.0, 1)


def room_check(outbox: trio.MemorySendChannel[Any]) -> Callable[[], bool]:
    """``() -> bool``: whether ``outbox.send_nowait`` would take a value now.

    That is: a receiver is open, and one waits or the buffer has room. The answer
    is ``outbox.statistics()``'s, read from the channel's shared state instead of
    building a statistics object (~2-5 µs, once per result the lane takes: #11);
    a trio whose channel keeps no such state gets the statistics way. Neither is
    a checkpoint.
    """
    state: Any = getattr(outbox, "_state", None)
    if all(hasattr(state, a) for a in _STATE_FIELDS):

        def from_state() -> bool:
            return state.open_receive_channels > 0 and (
                bool(state.receive_tasks) or len(state.data) < state.max_buffer_size
            )

        return from_state

    def from_statistics() -> bool:
        stats = outbox.statistics()
        return stats.open_receive_channels > 0 and (
            stats.tasks_waiting_receive > 0 or stats.current_buffer_used < stats.max_buffer_size
        )

    return from_statistics


_STATE_FIELDS: Final = ("open_receive_channels", "receive_tasks", "data", "max_buffer_size")
