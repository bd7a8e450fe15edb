"""Serving one accepted ``/api-ws/v1/inference`` connection.

Theory of operation
-------------------
Two kinds of task share one nursery per connection:

* the **reader** (one per connection) always reads: every frame goes into the
  sans-IO :class:`~adapters.dashscope.inference.InferenceServer`, and its events
  are handled at once — validation and ``task-started``/``task-failed``,
  header stripping and silence timing of audio, the idle timer. Audio is put in
  the task's :class:`~.audio.AudioQueue` without ever blocking, so trio-websocket's
  one-message queue never backs up and pings are answered while a recognizer is
  busy;
* a **recognizer task** (one per ``run-task``) drains that queue into the
  recognizer session and sends the results, then flushes on ``finish-task`` and
  sends ``task-finished``. The connection stays open for another ``run-task``.

Every outgoing frame goes through :meth:`InferenceConnection._send`, which
holds one lock around "ask the core for the frame" and "write it", so frames hit
the wire in the order the core produced them. A task that ended (finished or
failed) sends nothing more.

Timers run on trio's clock: no frame for ``idle_timeout_s`` while a task streams
→ ``task-failed`` ``CLIENT_ERROR`` and close; audio below ``silence_rms`` for
``silence_timeout_s`` without ``heartbeat`` → close; with ``heartbeat`` → a
heartbeat result every ``heartbeat_interval_s`` of silence (gummy: the task is
kept alive but no heartbeat result is sent — the translation recognizers of the
SDK would hand a paraformer-shaped heartbeat to ``on_event`` as an empty result;
a guess, gummy's heartbeat is undocumented).

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

Faults: with a :class:`~.context.ConnectionFaults` in the context, its timers
run beside the reader, every received message passes through ``on_receive``
and every outgoing frame through ``before_send``; the connection is its
:class:`~.context.FaultControl` (:meth:`InferenceConnection.fail_task`,
:meth:`InferenceConnection.write_frame`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, TypeVar

import structlog
import trio
from trio_websocket import ConnectionClosed

from adapters.dashscope import messages as m
from adapters.dashscope._state import State
from adapters.dashscope.inference import InferenceServer

from .audio import AudioFormatError, AudioQueue, TaskAudio
from .shaping import (
    PartialFilter,
    gummy_output,
    heartbeat_output,
    sentence_output,
    sentence_usage,
)
from .translate import StandInTranslator
from .validation import Rejection, TaskSpec, check_run_task

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from trio_websocket import WebSocketConnection

    from adapters.recognizers.base import Hypothesis, RecognizerSession

    from .context import ConnectionContext
    from .translate import Translator

__all__ = ["InferenceConnection"]

_log = structlog.get_logger()

_OPEN: Final = frozenset({State.STARTING, State.STREAMING, State.FINISHING})
_SESSION_CLOSE_S: Final = 5.0
_MAX_CLOSE_REASON: Final = 120  # a close frame's reason must fit in 123 bytes

_T = TypeVar("_T")


class _RecognizerFailed(Exception):
    """The recognizer raised; the task fails with ``InternalError``."""


class _Task:
    """One task's state, shared by the reader and its recognizer task."""

    def __init__(self, spec: TaskSpec, queue_limit_bytes: int, now: float) -> None:
        self.spec = spec
        self.audio = TaskAudio(spec.audio_format, spec.sample_rate)
        self.queue = AudioQueue(queue_limit_bytes)
        self.scope = trio.CancelScope()
        self.context: dict[str, Any] = {}  # the latest continue-task payload.input
        self.ended = False  # task-finished or task-failed sent: send nothing more
        self.utterance_over = False  # gummy-chat: its one sentence ended; audio is ignored
        self.outcome = "closed by client"
        self.started_at = now
        self.last_voice_at = now
        self.last_heartbeat_at = now
        self.frames_in = 0
        self.partials = 0
        self.finals = 0
        self.heartbeats = 0


class InferenceConnection:
    """The inference endpoint over one accepted WebSocket.

    Args:
        ws: the accepted server-side connection; the caller closes it.
        ctx: the connection's context (config, recognizer, fault plan).
    """

    def __init__(self, ws: WebSocketConnection, ctx: ConnectionContext) -> None:
        self._ws = ws
        self._ctx = ctx
        self._config = ctx.config
        self._translator: Translator = (
            ctx.translator if ctx.translator is not None else StandInTranslator()
        )
        self._core = InferenceServer()
        self._send_lock = trio.Lock()
        self._task: _Task | None = None
        self._close: tuple[int, str | None] | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self) -> tuple[int, str | None]:
        """Serve until the client leaves or the server drops it.

        Returns:
            The close code and reason the caller should close the socket with.

        Cancellation:
            Cancels the running task's recognizer; its session is closed
            (shielded, bounded) before this returns.
        """
        faults = self._ctx.faults
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if faults is not None:
                await nursery.start(faults.run, self)
            nursery.start_soon(self._read_loop)
        if faults is not None:
            await faults.drain(self)  # frames a fault held back still go out before the close
        return self._close or (1000, None)

    async def fail_task(self, code: str, message: str) -> bool:
        """Fail the open task with ``code`` and end the connection; False if no task is open."""
        task = self._open_task()
        if task is None or task.ended:
            return False
        await self._fail(task, code, message)
        return True

    async def write_frame(self, frame: str) -> bool:
        """Write a frame the fault hooks held back (they already saw it); False if closed."""
        return await self._write(frame)

    def _shutdown(self, code: int = 1000, reason: str | None = None) -> None:
        """End the connection: stop reading and every task (not a checkpoint).

        The first call decides the close code and reason; later calls change nothing.
        """
        if self._close is None:
            self._close = (
                code,
                reason.encode()[:_MAX_CLOSE_REASON].decode(errors="ignore") if reason else None,
            )
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    def _open_task(self) -> _Task | None:
        return self._task if self._core.state in _OPEN else None

    # ------------------------------------------------------------ reader

    async def _read_loop(self) -> None:
        idle = self._config.idle_timeout_s
        while True:
            task = self._open_task()
            timed = task is not None and not task.queue.closed
            with trio.move_on_after(idle if timed else math.inf) as timer:
                try:
                    data: bytes | str | None = await self._ws.get_message()
                except ConnectionClosed:
                    data = None
            if timer.cancelled_caught:
                assert task is not None
                await self._fail(task, "CLIENT_ERROR", f"request timeout after {idle:g} seconds.")
                return
            faults = self._ctx.faults
            if data is not None and faults is not None and not await faults.on_receive(data):
                continue
            if task is not None:
                task.frames_in += 1
            self._core.receive_data(data)
            for event in self._core.events():
                if not await self._dispatch(event):
                    return

    async def _dispatch(self, event: m.ServerEvent) -> bool:
        """Handle one core event; False when the connection must end."""
        if self._core.state is State.FAILED:
            return False  # task-failed is on its way; its sender closes the connection
        task = self._open_task()
        match event:
            case m.AudioReceived(pcm):
                if task is None or task.queue.closed:
                    return True  # no task, or late audio after finish-task: ignored
                return await self._on_audio(task, pcm)
            case m.RunTaskRequested():
                return await self._start_task(event)
            case m.FinishRequested():
                if task is not None:
                    task.queue.close()
                else:  # e.g. after gummy-chat's own task-finished
                    _log.info("finish-task after the task ended", task_id=event.task_id)
                return True
            case m.ContinueRequested(_, input_):
                if task is not None:
                    task.context = input_
                return True
            case m.BadRequest(reason):
                if task is None:
                    _log.info("bad frame outside a task", reason=reason)
                    self._shutdown(1008, reason)
                    return False
                await self._fail(task, "InvalidParameter", reason)
                return False
            case m.ConnectionClosed():
                self._shutdown()
                return False
        raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover

    async def _start_task(self, request: m.RunTaskRequested) -> bool:
        checked = check_run_task(request)
        faults = self._ctx.faults
        if isinstance(checked, TaskSpec) and faults is not None:
            checked = faults.on_run_task(checked) or checked
        if isinstance(checked, Rejection):
            _log.info(
                "task rejected", task_id=request.task_id, code=checked.code, reason=checked.message
            )
            await self._send(m.FailTask(checked.code, checked.message))
            self._shutdown()
            return False
        limit = int(self._config.max_audio_queue_s * checked.sample_rate) * 2
        task = _Task(checked, limit, trio.current_time())
        self._task = task
        await self._send(m.StartTask(), task)
        assert self._nursery is not None
        self._nursery.start_soon(self._run_task, task)
        return True

    async def _on_audio(self, task: _Task, data: bytes) -> bool:
        if task.utterance_over:
            return True  # gummy-chat after its sentence end: ignored, unbilled
        try:
            pcm = task.audio.push(data)
        except AudioFormatError as exc:
            await self._fail(task, "UNSUPPORTED_FORMAT", str(exc))
            return False
        if not pcm:
            return True
        config = self._config
        now = trio.current_time()
        if TaskAudio.rms(pcm) >= config.silence_rms:
            task.last_voice_at = now
        elif task.spec.heartbeat:
            # gummy: kept alive without heartbeat results (see the module docstring)
            due = now - max(task.last_voice_at, task.last_heartbeat_at)
            if task.spec.gummy is None and due >= config.heartbeat_interval_s:
                task.last_heartbeat_at = now
                task.heartbeats += 1
                await self._send(m.SendResult(heartbeat_output(task.audio.duration_ms)), task)
        elif now - task.last_voice_at >= config.silence_timeout_s:
            task.outcome = "dropped: silence"
            task.scope.cancel()
            self._shutdown(1000, f"no speech for {config.silence_timeout_s:g} seconds")
            return False
        if not task.queue.put_nowait(pcm):
            queued = task.queue.queued_bytes / (2 * task.spec.sample_rate)
            await self._fail(
                task,
                "Throttling",
                f"audio arrives faster than it is recognized ({queued:.1f} s queued, "
                f"limit {config.max_audio_queue_s:g} s)",
            )
            return False
        return True

    async def _fail(self, task: _Task, code: str, message: str) -> None:
        """Send ``task-failed`` for the open task, then end the connection."""
        task.outcome = code
        task.scope.cancel()
        await self._send(m.FailTask(code, message), task)
        self._shutdown()

    # ------------------------------------------------- recognizer task

    async def _run_task(self, task: _Task) -> None:
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
            except _RecognizerFailed as exc:
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
                if self._task is task:
                    self._task = None

    async def _recognize(self, task: _Task) -> None:
        spec = task.spec
        session = await _guard(
            self._ctx.recognizer.open_session(sample_rate=spec.sample_rate, language=spec.language)
        )
        try:
            chunk_bytes = self._config.feed_chunk_ms * spec.sample_rate // 1000 * 2
            fed_ms = await self._feed(task, session, chunk_bytes)
            if not task.utterance_over:
                await self._emit(task, await _guard(session.flush()), fed_ms)
            elif not self._config.gummy_chat_auto_finish:
                while await task.queue.get(chunk_bytes) is not None:
                    pass  # gummy-chat after its sentence: wait for finish-task
            task.outcome = "finished"
            await self._send(m.FinishTaskReply({"duration": task.audio.billed_seconds}), task)
        finally:
            await _close_session(session)

    async def _feed(self, task: _Task, session: RecognizerSession, chunk_bytes: int) -> int:
        """Recognize the task's audio until ``finish-task`` or a gummy-chat sentence end.

        Returns:
            The milliseconds of audio recognized.
        """
        spec = task.spec
        partials = PartialFilter(self._config.partial_interval_ms)
        cap: int | None = None  # gummy-chat's audio cap, in bytes
        if spec.gummy is not None and spec.gummy.utterance:
            cap = int(self._config.gummy_chat_max_audio_s * spec.sample_rate) * 2
        fed = 0  # bytes; ms = bytes * 500 // rate
        while not task.utterance_over and (chunk := await task.queue.get(chunk_bytes)) is not None:
            if cap is not None:
                chunk = chunk[: cap - fed]
            hyps = await _guard(session.feed(chunk))
            fed += len(chunk)
            fed_ms = fed * 500 // spec.sample_rate
            await self._emit(task, partials.select(hyps, fed_ms), fed_ms)
            if cap is not None and fed >= cap and not task.utterance_over:
                _log.info("gummy-chat audio cap reached", audio_ms=fed_ms)
                await self._emit(task, await _guard(session.flush()), fed_ms)
                task.utterance_over = True
        return fed * 500 // spec.sample_rate

    async def _emit(self, task: _Task, hyps: list[Hypothesis], fed_ms: int) -> None:
        gummy = task.spec.gummy
        for hyp in hyps:
            if task.utterance_over:
                return  # gummy-chat: nothing after its sentence end
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
            await self._send(m.SendResult(output, sentence_usage(hyp)), task)

    # ------------------------------------------------------------ output

    async def _send(self, command: m.ServerCommand, task: _Task | None = None) -> None:
        """Write the core's frame for ``command``; dropped if ``task`` already ended.

        The lock makes "core produces the frame" and "frame is written" one step,
        so frames leave in core order. A closed socket ends the connection.
        """
        async with self._send_lock:
            if task is not None and task.ended:
                return
            frame: str | None = self._core.send(command)
            if task is not None and isinstance(command, m.FinishTaskReply | m.FailTask):
                task.ended = True
            faults = self._ctx.faults
            if faults is not None and frame is not None:
                frame = await faults.before_send(frame)
            if frame is not None:
                await self._write(frame, task)

    async def _write(self, frame: str, task: _Task | None = None) -> bool:
        """Write one frame; a closed socket ends the connection (and gives False)."""
        # A frame the core produced must leave whole, even if the connection is
        # being shut down meanwhile (task-failed, then close) — but not forever.
        deadline = trio.current_time() + self._config.disconnect_timeout_s
        try:
            with trio.CancelScope(shield=True, deadline=deadline):
                await self._ws.send_message(frame)
        except ConnectionClosed:
            if task is not None:
                task.outcome = "closed by client"
            self._shutdown()
            return False
        return True


def _gummy_log_fields(spec: TaskSpec) -> dict[str, Any]:
    gummy = spec.gummy
    if gummy is None:
        return {}
    return {
        "transcription": gummy.transcription,
        "targets": list(gummy.targets),
        "utterance": gummy.utterance,
    }


async def _guard(call: Awaitable[_T]) -> _T:
    """Await a recognizer call; its failures become :class:`_RecognizerFailed`."""
    try:
        return await call
    except Exception as exc:
        raise _RecognizerFailed(str(exc) or type(exc).__name__) from exc


async def _close_session(session: RecognizerSession) -> None:
    """Close a recognizer session even while cancelled, but not forever."""
    with trio.CancelScope(shield=True, deadline=trio.current_time() + _SESSION_CLOSE_S):
        try:
            await session.aclose()
        except Exception:
            _log.exception("recognizer session did not close cleanly")
