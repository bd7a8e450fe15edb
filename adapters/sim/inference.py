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
task parks and the process's one reader (:class:`~._hub.ReadHub`) reads for it
(:class:`~._hub_reader.HubReader`): each message is handed, in the hub's task, to
:meth:`InferenceConnection._audio_now`, which handles audio frames in place (the same
steps as the reader's, :func:`.inference_intake.take_audio`); putting the audio in the
queue feeds a synchronous recognizer session there too (the queue's inline consumer,
:meth:`.inference_task.TaskRecognizer._feed_inline`) and writes its results without
awaiting. Anything that needs an await — a text frame, a ping, the client's close, a
heartbeat result, a failure, a frame the kernel took only part of — is handed back as
a follow-up to the reader task, which leaves the hub, does it, and parks there again
once the task streams. So a paced frame costs no trio wake of its own: one hub round
serves every socket that became ready.

Every outgoing frame goes through :class:`~.inference_output.TaskOutput` and the
socket's one send path (:class:`~.server_socket.ServerSocket`), so frames hit
the wire in the order the core produced them. A task that ended (finished or
failed) sends nothing more.

Timers run on trio's clock: no frame for ``idle_timeout_s`` while a task streams
→ ``task-failed`` ``CLIENT_ERROR`` and close; audio below ``silence_rms`` for
``silence_timeout_s`` without ``heartbeat`` → close; with ``heartbeat`` → a
heartbeat result every ``heartbeat_interval_s`` of silence (gummy: the task is
kept alive but no heartbeat result is sent — the translation recognizers of the
SDK would hand a paraformer-shaped heartbeat to ``on_event`` as an empty result;
a guess, gummy's heartbeat is undocumented). The audio timers and the queue's bound
are :mod:`.inference_intake`'s; the idle timer is this module's.

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

from ._hub_reader import HubReader
from .inference_intake import take_audio
from .inference_output import TaskOutput
from .inference_task import Task, TaskRecognizer
from .server_socket import ServerSocket
from .translate import StandInTranslator
from .validation import Rejection, TaskSpec, check_run_task

if TYPE_CHECKING:
    from ._hub import ReadHub
    from ._hub_reader import Follow
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
        self._out = TaskOutput(self._core, self._socket, ctx.config)
        self._task: Task | None = None
        self._tasks = TaskRecognizer(
            ctx.config,
            ctx.recognizer,
            translator,
            self._out.send,
            self._socket.shutdown,
            self._out.send_now,
        )
        self._nursery: trio.Nursery | None = None
        self._last_frame_at = trio.current_time()  # the idle timer's start (_idle_watch)
        # The hub (one reader for the process) reads for this connection while the reader
        # task parks (on the fast lane, without faults).
        self._hub_reader: HubReader | None = None
        if hub is not None and ctx.faults is None and ws.fd is not None:
            self._hub_reader = HubReader(
                ws, self._socket, hub, take=self._audio_now, receive=self._receive_next
            )

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
            # The hub reader holds bound methods of this connection: a reference cycle
            # that would keep the connection (socket and all) until a full collection.
            self._hub_reader = None

    async def fail_task(self, code: str, message: str) -> bool:
        """Fail the open task with ``code`` and end the connection; False if no task is open."""
        task = self._open_task()
        if task is None or task.ended:
            return False
        await self._out.fail(task, code, message)
        return True

    async def write_frame(self, frame: str) -> bool:
        """Write a frame the fault hooks held back (they already saw it); False if closed."""
        return await self._socket.write(frame)

    def _open_task(self) -> Task | None:
        return self._task if self._core.state in _OPEN else None

    # ------------------------------------------------------------ reader

    async def _read_loop(self) -> None:
        follow: Follow | None = None
        while True:
            if follow is not None and not await follow():
                return
            follow = None
            if self._socket.owes_tail and not await self._socket.flush():
                return
            if self._hub_reader is not None and self._streaming() is not None:
                follow = await self._hub_reader.wait()
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

    async def _receive_next(self) -> bool:
        return await self._on_message(await self._socket.receive())

    def _audio_now(self, data: bytes | str, now: float) -> Follow | None:
        """Handle one message in place if it is audio of the streaming task (the hub's ``take``).

        Returns:
            None when done, else what the reader task must await to finish it.
        """
        task = self._task
        if (
            task is None
            or type(data) is not bytes
            or task.utterance_over
            or task.queue.closed
            or self._socket.closing
            or not self._core.take_audio(data)  # not streaming: the awaited path
        ):
            return functools.partial(self._on_message, data)
        self._last_frame_at = now
        task.frames_in += 1
        return self._out.settle(task, take_audio(task, data, now, self._config))

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
                await self._out.fail(task, "InvalidParameter", reason)
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
            await self._out.send(m.FailTask(checked.code, checked.message))
            self._socket.shutdown()
            return False
        limit = int(self._config.max_audio_queue_s * checked.sample_rate) * 2
        task = Task(checked, limit, trio.current_time())
        self._task = task
        await self._out.send(m.StartTask(), task)
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
            await self._out.fail(task, "CLIENT_ERROR", f"request timeout after {idle:g} seconds.")
            return

    async def _run_task(self, task: Task) -> None:
        try:
            await self._tasks.run(task)
        finally:
            if self._task is task:
                self._task = None

    async def _on_audio(self, task: Task, data: bytes) -> bool:
        """Take one audio frame of ``task`` (:func:`.inference_intake.take_audio`), then
        what it left to do; False when the connection must end."""
        now = trio.current_time()
        follow = self._out.settle(task, take_audio(task, data, now, self._config))
        return True if follow is None else await follow()
