"""One inference task's state and its recognizer task (``/api-ws/v1/inference``).

The connection (:mod:`.inference`) reads frames and puts a task's audio in its
:class:`~.audio.AudioQueue`; :class:`TaskRecognizer` runs beside the reader,
one per ``run-task``: it drains that queue into a recognizer session in
``feed_chunk_ms`` pieces, sends the results (paced by ``partial_interval_ms``),
flushes on ``finish-task`` and sends ``task-finished``. A recognizer failure
sends ``task-failed`` ``InternalError`` and closes with 1011.

gummy (DASHSCOPE.md §4): results are shaped by
:func:`~.shaping.gummy_output`, translations rendered by the context's
translator (the labelled stand-in when there is none). gummy-chat recognizes
**one sentence per task**: once its final is sent the recognizer task stops
feeding, the reader drops further audio unrecognized and unbilled, and the task
waits for ``finish-task`` — or, with ``SimConfig.gummy_chat_auto_finish``,
sends ``task-finished`` at once (whether the service does is undocumented,
§13.1). A gummy-chat task whose audio reaches ``gummy_chat_max_audio_s`` (60 s,
§2.5/§8) without a sentence end has its sentence ended there: the recognizer
is flushed and its final is the sentence end ("≥1 min of speech is treated as
one sentence"; the service's error-and-disconnect for longer audio is not
modelled — a guess). ``max_end_silence`` is accepted but does not reach the
recognizer: :meth:`~adapters.recognizers.base.Recognizer.open_session` has no
sentence-end-silence knob (the scripted recognizer's is fixed per recognizer,
``VadConfig.max_sentence_silence_ms``, 700 ms by default — gummy-chat's
documented default; sphinx has none).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol

import structlog
import trio

from adapters.dashscope import messages as m

from .audio import AudioQueue, TaskAudio
from .recognizer_calls import (
    RecognizerFailed,
    SyncFeed,
    SyncLevel,
    close_session,
    failure_of,
    feed_now,
    guard,
)
from .shaping import PartialFilter, gummy_output, sentence_output, sentence_usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.recognizers.base import Hypothesis, Recognizer, RecognizerSession

    from .config import SimConfig
    from .translate import Translator
    from .validation import TaskSpec

__all__ = ["Task", "TaskRecognizer"]

_log = structlog.get_logger()


class Task:
    """One task's state, shared by the reader and its recognizer task."""

    def __init__(self, spec: TaskSpec, queue_limit_bytes: int, now: float) -> None:
        self.spec = spec
        self.audio = TaskAudio(spec.audio_format, spec.sample_rate)
        self.queue = AudioQueue(queue_limit_bytes)
        self.scope = trio.CancelScope()  # cancel it with cancel()
        self.cancelled = False  # cancel() was called (cheaper than scope.cancel_called)
        self.context: dict[str, Any] = {}  # the latest continue-task payload.input
        self.ended = False  # task-finished or task-failed sent: send nothing more
        self.utterance_over = False  # gummy-chat: its one sentence ended; audio is ignored
        self.outcome = "closed by client"
        self.started_at = now
        self.last_voice_at = now
        self.last_heartbeat_at = now
        self.level: Callable[[bytes], float | None] | None = None  # the session's meter
        self.frames_in = 0
        self.partials = 0
        self.finals = 0
        self.heartbeats = 0

    def cancel(self) -> None:
        """Stop the task's recognizer (its scope); not a checkpoint. Idempotent."""
        self.cancelled = True
        self.scope.cancel()


class TaskSender(Protocol):
    """The connection's send path: the core's frame for ``command``, dropped once ``task`` ended."""

    async def __call__(self, command: m.ServerCommand, task: Task | None = None) -> None: ...


class TaskSenderNow(Protocol):
    """The send path without awaiting (not a checkpoint): True if the frame was handled
    (sent, owed to the socket, or dropped), False if it cannot go now (nothing was done)."""

    def __call__(self, command: m.ServerCommand, task: Task | None = None) -> bool: ...


class Shutdown(Protocol):
    """Ends the connection with a close code (not a checkpoint)."""

    def __call__(self, code: int = 1000, reason: str | None = None) -> None: ...


class TaskRecognizer:
    """Runs the recognizer task of each of one connection's tasks.

    Args:
        config: the timings (``feed_chunk_ms``, ``partial_interval_ms``, gummy-chat's cap).
        recognizer: opens one session per task.
        translator: renders gummy's translations.
        send: the connection's send path.
        shutdown: ends the connection (on a recognizer failure).
    """

    def __init__(
        self,
        config: SimConfig,
        recognizer: Recognizer,
        translator: Translator,
        send: TaskSender,
        shutdown: Shutdown,
        send_now: TaskSenderNow | None = None,
    ) -> None:
        self._config = config
        self._recognizer = recognizer
        self._translator = translator
        self._send = send
        self._send_now = send_now
        self._shutdown = shutdown

    async def run(self, task: Task) -> None:
        """Recognize ``task`` until it finishes, fails or is cancelled (``task.scope``).

        Cancellation:
            The recognizer session is closed (shielded, bounded); ``task.outcome``
            says why the task ended.
        """
        spec = task.spec
        with structlog.contextvars.bound_contextvars(task_id=spec.task_id):
            _log.info(
                "task started",
                model=spec.model,
                format=spec.audio_format,
                sample_rate=spec.sample_rate,
                heartbeat=spec.heartbeat,
                **_gummy_log_fields(spec),
            )
            try:
                with task.scope:
                    await self._recognize(task)
            except RecognizerFailed as exc:
                _log.exception("recognizer failed")
                task.outcome = "InternalError"
                await self._send(m.FailTask("InternalError", f"recognizer failed: {exc}"), task)
                self._shutdown(1011, "recognizer failed")
            finally:
                _log.info(
                    "task ended",
                    outcome=task.outcome,
                    frames_in=task.frames_in,
                    audio_ms=task.audio.duration_ms,
                    partials=task.partials,
                    finals=task.finals,
                    heartbeats=task.heartbeats,
                    seconds=round(trio.current_time() - task.started_at, 3),
                )

    async def _recognize(self, task: Task) -> None:
        spec = task.spec
        session = await guard(
            self._recognizer.open_session(sample_rate=spec.sample_rate, language=spec.language)
        )
        try:
            chunk_bytes = self._config.feed_chunk_ms * spec.sample_rate // 1000 * 2
            fed_ms = await self._feed(task, session, chunk_bytes)
            if not task.utterance_over:
                await self._emit(task, await guard(session.flush()), fed_ms)
            elif not self._config.gummy_chat_auto_finish:
                while await task.queue.get(chunk_bytes) is not None:
                    pass  # gummy-chat after its sentence: wait for finish-task
            task.outcome = "finished"
            await self._send(m.FinishTaskReply({"duration": task.audio.billed_seconds}), task)
        finally:
            await close_session(session)

    async def _feed(self, task: Task, session: RecognizerSession, chunk_bytes: int) -> int:
        """Recognize the task's audio until ``finish-task`` or a gummy-chat sentence end.

        A synchronous session (:class:`SyncFeed`) without gummy-chat's cap is fed
        *inline* while this waits: the reader's ``put_nowait`` feeds it and sends the
        results in its own task, without waking this one (:meth:`_feed_inline`); what
        cannot be done there (a send that would wait, a recognizer failure) is left in
        ``feeding`` and done here.

        Returns:
            The milliseconds of audio recognized.
        """
        spec = task.spec
        feeding = _Feeding(PartialFilter(self._config.partial_interval_ms))
        cap: int | None = None  # gummy-chat's audio cap, in bytes
        if spec.gummy is not None and spec.gummy.utterance:
            cap = int(self._config.gummy_chat_max_audio_s * spec.sample_rate) * 2
        batch = self._config.feed_batch_ms * spec.sample_rate // 1000 * 2
        # A synchronous session is fed without an await: the loop checkpoints in get().
        sync = session if isinstance(session, SyncFeed) else None
        inline: Callable[[], bool] | None = None
        if sync is not None and cap is None and self._send_now is not None:
            inline = functools.partial(
                self._feed_inline, task, feeding, sync, chunk_bytes, max(batch, 1)
            )
        if inline is not None and isinstance(session, SyncLevel):
            # Audio fed inline is measured once: the silence timers' level is the VAD's.
            task.level = session.level_nowait
        try:
            while not task.utterance_over:
                if feeding.failure is not None:
                    raise feeding.failure
                if feeding.owed:
                    owed, feeding.owed = feeding.owed, []
                    for command in owed:
                        await self._send(command, task)
                    continue
                chunk = await task.queue.get(chunk_bytes, batch, inline=inline)
                if chunk is None:
                    break
                if not chunk:
                    continue  # kicked: the inline feeder left work
                if cap is not None:
                    chunk = chunk[: cap - feeding.fed]
                hyps = (
                    feed_now(sync, chunk) if sync is not None else await guard(session.feed(chunk))
                )
                feeding.fed += len(chunk)
                fed_ms = feeding.fed * 500 // spec.sample_rate
                for command in self._results(task, feeding.partials.select(hyps, fed_ms), fed_ms):
                    await self._send(command, task)
                if cap is not None and feeding.fed >= cap and not task.utterance_over:
                    _log.info("gummy-chat audio cap reached", audio_ms=fed_ms)
                    await self._emit(task, await guard(session.flush()), fed_ms)
                    task.utterance_over = True
        finally:
            task.level = None
        return feeding.fed * 500 // spec.sample_rate

    def _feed_inline(
        self, task: Task, feeding: _Feeding, sync: SyncFeed, chunk_bytes: int, least: int
    ) -> bool:
        """Feed what is queued and send its results, in the producer's task (see ``get``).

        Not a checkpoint. Returns False having done nothing when the task is being
        cancelled or has work left over; else True (leftovers kick the waiting task).
        """
        if task.cancelled or feeding.owed or feeding.failure is not None:
            return False
        assert self._send_now is not None
        queue = task.queue
        rate = task.spec.sample_rate
        while queue.queued_bytes >= least and not task.utterance_over:
            chunk = queue.take_nowait(chunk_bytes)
            try:
                hyps = sync.feed_nowait(chunk)  # feed_now's work, one call less per frame
            except Exception as exc:
                feeding.failure = failure_of(exc)
                queue.kick()
                return True
            feeding.fed += len(chunk)
            if not hyps:
                continue
            fed_ms = feeding.fed * 500 // rate
            commands = self._results(task, feeding.partials.select(hyps, fed_ms), fed_ms)
            for i, command in enumerate(commands):
                if not self._send_now(command, task):
                    feeding.owed = commands[i:]
                    queue.kick()
                    return True
        return True

    async def _emit(self, task: Task, hyps: list[Hypothesis], fed_ms: int) -> None:
        for command in self._results(task, hyps, fed_ms):
            await self._send(command, task)

    def _results(self, task: Task, hyps: list[Hypothesis], fed_ms: int) -> list[m.SendResult]:
        """The results to send for ``hyps``, counted (not a checkpoint)."""
        gummy = task.spec.gummy
        commands: list[m.SendResult] = []
        for hyp in hyps:
            if task.utterance_over:
                break  # gummy-chat: nothing after its sentence end
            if hyp.final:
                task.finals += 1
            else:
                task.partials += 1
            if gummy is None:
                output = sentence_output(hyp)
            else:
                output = gummy_output(
                    hyp,
                    transcription=gummy.transcription,
                    targets=gummy.targets,
                    translator=self._translator,
                    current_ms=fed_ms,
                )
                task.utterance_over = gummy.utterance and hyp.final
            commands.append(m.SendResult(output, sentence_usage(hyp)))
        return commands


class _Feeding:
    """One task's recognition progress, shared by its recognizer task and the inline feeder."""

    __slots__ = ("failure", "fed", "owed", "partials")

    def __init__(self, partials: PartialFilter) -> None:
        self.partials = partials
        self.fed = 0  # bytes recognized; ms = bytes * 500 // rate
        self.owed: list[m.SendResult] = []  # results the inline feeder could not send
        self.failure: RecognizerFailed | None = None  # the inline feeder's recognizer failure


def _gummy_log_fields(spec: TaskSpec) -> dict[str, Any]:
    gummy = spec.gummy
    if gummy is None:
        return {}
    return {
        "transcription": gummy.transcription,
        "targets": list(gummy.targets),
        "utterance": gummy.utterance,
    }
