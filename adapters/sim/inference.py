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
* a **recognizer task** (one per ``run-task``, :mod:`.inference_task`) drains
  that queue into the recognizer session and sends the results, then flushes on
  ``finish-task`` and sends ``task-finished``. The connection stays open for
  another ``run-task``.

**The hub.** On a plain TCP socket without faults, while a task streams, the reader
task parks and the process's one reader (:class:`~._hub.ReadHub`) reads for it: its
``_on_readable`` runs in the hub's task, reads once, and handles audio frames in place
(:meth:`InferenceConnection._audio_now`, the same steps as the reader's); putting the
audio in the queue feeds a synchronous recognizer session there too (the queue's
inline consumer, :meth:`.inference_task.TaskRecognizer._feed_inline`) and writes its
results without awaiting. Anything that needs an await — a text frame, a ping, the
client's close, a heartbeat result, a failure, a frame the kernel took only part of —
is handed back as ``_follow`` to the reader task, which leaves the hub, does it, and
parks there again once the task streams. So a paced frame costs no trio wake of its
own: one hub round serves every socket that became ready.

Every outgoing frame goes through :meth:`InferenceConnection._send` and the
socket's one send path (:class:`~.server_socket.ServerSocket`), so frames hit
the wire in the order the core produced them. A task that ended (finished or
failed) sends nothing more.

Timers run on trio's clock: no frame for ``idle_timeout_s`` while a task streams
→ ``task-failed`` ``CLIENT_ERROR`` and close; audio below ``silence_rms`` for
``silence_timeout_s`` without ``heartbeat`` → close; with ``heartbeat`` → a
heartbeat result every ``heartbeat_interval_s`` of silence (gummy: the task is
kept alive but no heartbeat result is sent — the translation recognizers of the
SDK would hand a paraformer-shaped heartbeat to ``on_event`` as an empty result;
a guess, gummy's heartbeat is undocumented).

The recognizer task, gummy's results and gummy-chat's one sentence per task:
:mod:`.inference_task`.

Faults: with a :class:`~.context.ConnectionFaults` in the context, its timers
run beside the reader, every received message passes through ``on_receive``
and every outgoing frame through ``before_send``; the connection is its
:class:`~.context.FaultControl` (:meth:`InferenceConnection.fail_task`,
:meth:`InferenceConnection.write_frame`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

import structlog
import trio

from adapters.dashscope import messages as m
from adapters.dashscope._state import State
from adapters.dashscope.inference import InferenceServer

from .audio import AudioFormatError, TaskAudio
from .inference_task import Task, TaskRecognizer
from .server_socket import ServerSocket
from .shaping import heartbeat_output
from .translate import StandInTranslator
from .validation import Rejection, TaskSpec, check_run_task
from .websocket import WouldAwait

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._hub import ReadHub
    from .context import ConnectionContext
    from .translate import Translator
    from .websocket import ServerWebSocket

__all__ = ["InferenceConnection"]

_log = structlog.get_logger()

_OPEN: Final = frozenset({State.STARTING, State.STREAMING, State.FINISHING})


class InferenceConnection:
    """The inference endpoint over one accepted WebSocket.

    Args:
        ws: the accepted server-side connection; the caller closes it.
        ctx: the connection's context (config, recognizer, fault plan).
    """

    def __init__(
        self, ws: ServerWebSocket, ctx: ConnectionContext, hub: ReadHub | None = None
    ) -> None:
        self._ctx = ctx
        self._config = ctx.config
        self._ws = ws
        self._socket = ServerSocket(ws, ctx)
        translator: Translator = (
            ctx.translator if ctx.translator is not None else StandInTranslator()
        )
        self._core = InferenceServer()
        self._task: Task | None = None
        self._tasks = TaskRecognizer(
            ctx.config,
            ctx.recognizer,
            translator,
            self._send,
            self._socket.shutdown,
            self._send_now,
        )
        self._nursery: trio.Nursery | None = None
        self._last_frame_at = trio.current_time()  # the idle timer's start (_idle_watch)
        # The hub (one reader for the process) reads for this connection while the reader
        # task parks; ``_follow`` is what the hub handed back for the task to do.
        self._hub = hub if ctx.faults is None and ws.fd is not None else None
        self._hub_lot = trio.lowlevel.ParkingLot()
        self._follow: Callable[[], Awaitable[bool]] | None = None

    async def run(self) -> tuple[int, str | None]:
        """Serve until the client leaves or the server drops it.

        Returns:
            The close code and reason the caller should close the socket with.

        Cancellation:
            Cancels the running task's recognizer; its session is closed
            (shielded, bounded) before this returns.
        """
        faults = self._ctx.faults
        try:
            with self._socket.scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if faults is not None:
                        await nursery.start(faults.run, self)
                    nursery.start_soon(self._read_loop)
            await self._socket.flush()  # a frame's tail the kernel did not take yet
            if faults is not None:
                await faults.drain(self)  # frames a fault held back still go out before the close
            return self._socket.close
        finally:
            # The task runner holds bound methods of this connection: a reference cycle
            # that would keep the connection (socket and all) until a full collection.
            del self._tasks

    async def fail_task(self, code: str, message: str) -> bool:
        """Fail the open task with ``code`` and end the connection; False if no task is open."""
        task = self._open_task()
        if task is None or task.ended:
            return False
        await self._fail(task, code, message)
        return True

    async def write_frame(self, frame: str) -> bool:
        """Write a frame the fault hooks held back (they already saw it); False if closed."""
        return await self._socket.write(frame)

    def _open_task(self) -> Task | None:
        return self._task if self._core.state in _OPEN else None

    # ------------------------------------------------------------ reader

    async def _read_loop(self) -> None:
        while True:
            follow, self._follow = self._follow, None
            if follow is not None and not await follow():
                return
            if self._socket.owes_tail and not await self._socket.flush():
                return
            if self._hub is not None and self._streaming() is not None:
                await self._read_in_hub(self._hub)
                continue
            if not await self._on_message(await self._socket.receive()):
                return

    async def _on_message(self, data: bytes | str | None) -> bool:
        """Handle one client message (None: the socket closed); False when the connection ends."""
        self._last_frame_at = trio.current_time()
        task = self._open_task()
        faults = self._ctx.faults
        if data is not None and faults is not None and not await faults.on_receive(data):
            return True
        if task is not None:
            task.frames_in += 1
        self._core.receive_data(data)
        return await self._dispatch_all()

    async def _dispatch_all(self) -> bool:
        for event in self._core.events():
            if not await self._dispatch(event):
                return False
        return True

    # ------------------------------------------------------------ the hub's side

    def _streaming(self) -> Task | None:
        """The task whose audio the hub may take in place, or None."""
        task = self._task
        if (
            task is None
            or self._core.state is not State.STREAMING
            or task.queue.closed
            or task.utterance_over
            or self._socket.closing
        ):
            return None
        return task

    async def _read_in_hub(self, hub: ReadHub) -> None:
        """Let the hub read for this connection until it hands something back.

        Cancellation: the descriptor leaves the hub; nothing read is lost (a message
        taken but not handled waits in ``_follow`` or in the WebSocket).
        """
        fd = self._ws.fd
        assert fd is not None
        self._on_readable(read=False)  # messages parsed before: the hub only sees new bytes
        if self._follow is not None or self._socket.owes_tail:
            return
        hub.add(fd, self._on_readable)
        try:
            await self._hub_lot.park()
        finally:
            hub.discard(fd)

    def _on_readable(self, *, read: bool = True) -> None:
        """The hub's reader: read once, handle the audio in place, hand the rest back.

        Never a checkpoint and never raises: what needs an await becomes ``_follow``
        and wakes the reader task.
        """
        try:
            while self._follow is None and not self._socket.owes_tail:
                try:
                    data = self._ws.message_nowait(read=read)
                except WouldAwait:
                    self._follow = self._receive_next
                    break
                read = False
                if data is None:
                    return
                self._follow = self._audio_now(data)
        except Exception as exc:  # a bug: raise it in the connection's task, not the hub's
            self._follow = functools.partial(_reraise, exc)
        self._hub_lot.unpark_all()
        if self._hub is not None and self._ws.fd is not None:
            self._hub.discard(self._ws.fd)

    async def _receive_next(self) -> bool:
        return await self._on_message(await self._socket.receive())

    def _audio_now(self, data: bytes | str) -> Callable[[], Awaitable[bool]] | None:
        """Handle one message in place if it is audio of the streaming task.

        Returns:
            None when done, else what the reader task must await to finish it.
        """
        task = self._streaming()
        if task is None or not isinstance(data, bytes):
            return functools.partial(self._on_message, data)
        now = self._last_frame_at = trio.current_time()
        task.frames_in += 1
        self._core.receive_data(data)
        for event in self._core.events():
            if not isinstance(event, m.AudioReceived):
                # not expected while streaming: the awaited path handles it and the rest
                return functools.partial(self._dispatch_after, event)
            follow = self._audio_step(task, event.pcm, now)
            if follow is not None:
                return follow
        return None

    async def _dispatch_after(self, event: m.ServerEvent) -> bool:
        return await self._dispatch(event) and await self._dispatch_all()

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
                    self._socket.shutdown(1008, reason)
                    return False
                await self._fail(task, "InvalidParameter", reason)
                return False
            case m.ConnectionClosed():
                self._socket.shutdown()
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
            self._socket.shutdown()
            return False
        limit = int(self._config.max_audio_queue_s * checked.sample_rate) * 2
        task = Task(checked, limit, trio.current_time())
        self._task = task
        await self._send(m.StartTask(), task)
        assert self._nursery is not None
        self._nursery.start_soon(self._run_task, task)
        self._nursery.start_soon(self._idle_watch, task)
        return True

    async def _idle_watch(self, task: Task) -> None:
        """Fail ``task`` once no frame arrived for ``idle_timeout_s`` while it streams.

        One task per run-task that sleeps until the idle deadline and looks again, so
        the reader keeps no per-frame timer (a cancel scope per frame cost more CPU
        than the rest of the reader); it ends with the task's audio (``finish-task``).
        """
        idle = self._config.idle_timeout_s
        while self._open_task() is task and not task.queue.closed:
            due = self._last_frame_at + idle
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            await self._fail(task, "CLIENT_ERROR", f"request timeout after {idle:g} seconds.")
            return

    async def _run_task(self, task: Task) -> None:
        try:
            await self._tasks.run(task)
        finally:
            if self._task is task:
                self._task = None

    async def _on_audio(self, task: Task, data: bytes) -> bool:
        follow = self._audio_step(task, data, trio.current_time())
        return True if follow is None else await follow()

    def _audio_step(
        self, task: Task, data: bytes, now: float
    ) -> Callable[[], Awaitable[bool]] | None:
        """Take one audio frame of ``task``, arrived at ``now``, without awaiting.

        Not a checkpoint.

        Returns:
            None when done, else the rest to await (a failure, a heartbeat result,
            the silence drop), which returns False when the connection must end.
        """
        if task.utterance_over:
            return None  # gummy-chat after its sentence end: ignored, unbilled
        try:
            pcm = task.audio.push(data)
        except AudioFormatError as exc:
            return functools.partial(self._fail_ended, task, "UNSUPPORTED_FORMAT", str(exc))
        if not pcm:
            return None
        config = self._config
        if TaskAudio.rms(pcm) >= config.silence_rms:
            task.last_voice_at = now
        elif task.spec.heartbeat:
            # gummy: kept alive without heartbeat results (see the module docstring)
            due = now - max(task.last_voice_at, task.last_heartbeat_at)
            if task.spec.gummy is None and due >= config.heartbeat_interval_s:
                task.last_heartbeat_at = now
                task.heartbeats += 1
                command = m.SendResult(heartbeat_output(task.audio.duration_ms))
                return functools.partial(self._heartbeat_then_queue, task, command, pcm)
        elif now - task.last_voice_at >= config.silence_timeout_s:
            task.outcome = "dropped: silence"
            task.scope.cancel()
            self._socket.shutdown(1000, f"no speech for {config.silence_timeout_s:g} seconds")
            return _ended
        return self._queue(task, pcm)

    async def _heartbeat_then_queue(self, task: Task, command: m.SendResult, pcm: bytes) -> bool:
        await self._send(command, task)
        follow = self._queue(task, pcm)
        return True if follow is None else await follow()

    def _queue(self, task: Task, pcm: bytes) -> Callable[[], Awaitable[bool]] | None:
        if task.queue.put_nowait(pcm):
            return None
        queued = task.queue.queued_bytes / (2 * task.spec.sample_rate)
        message = (
            f"audio arrives faster than it is recognized ({queued:.1f} s queued, "
            f"limit {self._config.max_audio_queue_s:g} s)"
        )
        return functools.partial(self._fail_ended, task, "Throttling", message)

    async def _fail_ended(self, task: Task, code: str, message: str) -> bool:
        await self._fail(task, code, message)
        return False

    async def _fail(self, task: Task, code: str, message: str) -> None:
        """Send ``task-failed`` for the open task, then end the connection."""
        task.outcome = code
        task.scope.cancel()
        await self._send(m.FailTask(code, message), task)
        self._socket.shutdown()

    # ------------------------------------------------------------ output

    async def _send(self, command: m.ServerCommand, task: Task | None = None) -> None:
        """Send the core's frame for ``command``; dropped if ``task`` already ended."""
        if not await self._socket.send(self._framer(command, task)) and task is not None:
            task.outcome = "closed by client"

    def _send_now(self, command: m.ServerCommand, task: Task | None = None) -> bool:
        """:meth:`_send` without awaiting; False if it cannot go now (nothing was done)."""
        sent = self._socket.send_nowait(self._framer(command, task))
        if sent is None:
            return False
        if not sent and task is not None:
            task.outcome = "closed by client"
        return True

    def _framer(self, command: m.ServerCommand, task: Task | None) -> Callable[[], str | None]:
        def frame() -> str | None:
            if task is not None and task.ended:
                return None
            made: str | None = self._core.send(command)
            if task is not None and isinstance(command, m.FinishTaskReply | m.FailTask):
                task.ended = True
            return made

        return frame


async def _ended() -> bool:
    return False


async def _reraise(exc: Exception) -> bool:
    raise exc
