"""Serving one accepted ``/api-ws/v1/realtime?model=…`` connection (livetranslate).

Theory of operation
-------------------
One socket is one session (DASHSCOPE.md §5). :class:`RealtimeConnection`
sends ``session.created`` at once, then runs three tasks in one nursery:

* the **reader** always reads: every frame goes into the sans-IO
  :class:`~adapters.dashscope.realtime_server.RealtimeServer` (which merges and
  validates ``session.update`` and decodes base64), and its events are handled
  at once — ``session.updated`` or the update's ``error``, image checks,
  manual-mode buffering and the energy VAD over appended audio
  (:mod:`.realtime_intake`). What produces stream events becomes an op (:mod:`.realtime_ops`) for
  the worker, queued without ever blocking, so pings stay answered;
* the **worker** (:mod:`.realtime_worker`) takes the ops in order and sends
  each segment's events: ``speech_started``, ASR snapshots, the translation
  response (started while the speaker still speaks), ``speech_stopped``,
  ``…transcription.completed``, the response's end (:mod:`.realtime_segment`);
* the **idle watch**: no client frame for ``SimConfig.idle_timeout_s`` while
  the worker has nothing to do → fatal ``error`` (``server_error`` /
  ``CLIENT_ERROR`` / "request timeout after 23 seconds.") and close. The
  realtime idle timeout is not documented (§13.4); the simulator reuses the
  inference endpoint's — a guess. After ``session.finished`` the same timer
  closes the socket if the client does not.

Every frame leaves through :meth:`RealtimeConnection._send` and the socket's
one send path (:class:`~.server_socket.ServerSocket`), so frames leave in core
order.
Commands the session no longer allows (ASR events once ASR was switched off,
audio once the output became text-only, anything after a fatal error or
``session.finished``) are dropped there instead of upsetting the core.

Behaviour where the service is undocumented (guesses):

* **Models.** Only models of :data:`~adapters.dashscope.models.MODELS` that
  speak the realtime protocol (qwen3.5-livetranslate-flash-realtime). A
  missing ``model`` (``invalid_value``), an unknown one or an inference-protocol
  model (``Model.NotExist``) gets the upgrade accepted, an ``error``
  (``invalid_request_error``, ``param: "model"``) and a close with 1008 — as
  the gateway answers bad models in-protocol on the inference endpoint; a
  refused upgrade would leave the 1.x SDK with a bare connect timeout.
* **Manual mode.** Appended audio is buffered and recognized only at
  ``commit``: ``input_audio_buffer.committed`` (``item_id``,
  ``previous_item_id``), ``conversation.item.created`` (the user item), then
  ASR and the response. Empty buffer → ``input_audio_buffer_commit_empty``
  (OpenAI Realtime's code). ``commit`` in VAD mode → ``invalid_value``.
  Buffering, ``clear``, ``opus`` input, and switching mode or rate:
  :mod:`.realtime_intake`.
* **Images**: checked and counted by :mod:`.realtime_images`.
* The recognizer failing fails the segment only (:mod:`.realtime_worker`).
* Audio queued faster than it is recognized beyond ``max_audio_queue_s`` →
  fatal ``Throttling``. ASR ``language`` is ``input_audio_transcription.language``
  or, when unset, ``zh`` for CJK text and ``en`` otherwise.

Faults: the connection's :class:`~.context.ConnectionFaults` see every client
message (``on_receive``; ``after=N`` counts client events, the first being 1)
and every frame (``before_send``: delays; ``no-task-finished`` swallows
``session.finished``), their timers run beside the reader, and the connection
is their :class:`~.context.FaultControl`: ``fail-task`` sends a fatal
``error`` (``server_error`` with the fault's code) and closes. Faults of the
"run-task" moment (``throttle``, ``fail-task`` without a trigger) hit the
session's start: their ``error`` replaces ``session.created``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Final

import structlog
import trio

from adapters.dashscope import realtime_messages as m
from adapters.dashscope._core import new_id
from adapters.dashscope._realtime_state import ServerState
from adapters.dashscope.models import MODELS
from adapters.dashscope.realtime_server import RealtimeServer

from . import realtime_ops as ops
from .realtime_images import ImageGate
from .realtime_intake import Answer, AudioIntake, Refused, Throttled
from .realtime_worker import SegmentWorker
from .server_socket import ServerSocket
from .translate import StandInTranslator
from .validation import TaskSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from .context import ConnectionContext
    from .translate import Translator
    from .websocket import ServerWebSocket

__all__ = ["RealtimeConnection"]

_log = structlog.get_logger()

_LIVE: Final = frozenset({ServerState.CONNECTED, ServerState.ACTIVE, ServerState.FINISHING})
_ERRORS_ALLOWED: Final = frozenset({ServerState.CONNECTED, ServerState.ACTIVE})
_ASR_COMMANDS: Final = (m.SendSourcePartial, m.SendSourceFinal)
_AUDIO_COMMANDS: Final = (m.SendAudioDelta, m.FinishAudio)


class RealtimeConnection:
    """The realtime endpoint over one accepted WebSocket.

    Args:
        ws: the accepted server-side connection; the caller closes it.
        ctx: the connection's context (config, recognizer, translator, faults).
        model: the ``?model=`` of the upgrade request ("" when absent).
        ids: makes server ids (``sess``, ``item``, ``resp``, ``event``…).
    """

    def __init__(
        self,
        ws: ServerWebSocket,
        ctx: ConnectionContext,
        model: str,
        *,
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self._ctx = ctx
        self._config = ctx.config
        self._model = model
        self._socket = ServerSocket(ws, ctx)
        translator: Translator = (
            ctx.translator if ctx.translator is not None else StandInTranslator()
        )
        self._core = RealtimeServer(model, ids=ids)
        self._ops = ops.OpQueue(int(self._config.max_audio_queue_s * 16000) * 2)
        self._intake = AudioIntake(
            self._ops, self._core, ids=ids, max_audio_queue_s=self._config.max_audio_queue_s
        )
        self._finishing = False  # session.finish received: later input is ignored
        self._images = ImageGate()
        self._started_at = self._last_input_at = trio.current_time()
        self._worker = SegmentWorker(self._ops, self._core, ctx, translator, self._send, ids)
        self.outcome = "closed by client"

    @property
    def session_id(self) -> str:
        return self._core.default.id

    @property
    def received_ms(self) -> float:
        """Milliseconds of audio appended (the session's audio clock)."""
        return self._intake.received_ms

    @property
    def images(self) -> int:
        """Images accepted in this session."""
        return self._images.accepted

    @property
    def segments(self) -> int:
        """Speech segments (VAD) and turns (manual) recognized so far."""
        return self._worker.segments

    async def run(self) -> tuple[int, str | None]:
        """Serve until the client leaves or the server drops it.

        Returns:
            The close code and reason the caller should close the socket with.

        Cancellation:
            Cancels the worker; an open recognizer session is closed (shielded,
            bounded) before this returns.
        """
        faults = self._ctx.faults
        with structlog.contextvars.bound_contextvars(session_id=self.session_id):
            _log.info("realtime session opened", model=self._model)
            with self._socket.scope:
                async with trio.open_nursery() as nursery:
                    if faults is not None:
                        await nursery.start(faults.run, self)
                    if await self._open():
                        nursery.start_soon(self._read_loop)
                        nursery.start_soon(self._worker.run)
                        nursery.start_soon(self._idle_watch)
            if faults is not None:
                await faults.drain(self)  # frames a fault held back still go out before the close
            _log.info(
                "realtime session ended",
                outcome="finished" if self._worker.finished else self.outcome,
                segments=self.segments,
                images=self.images,
                audio_ms=int(self.received_ms),
                seconds=round(trio.current_time() - self._started_at, 3),
            )
        return self._socket.close

    # ------------------------------------------------------------ FaultControl

    async def fail_task(self, code: str, message: str) -> bool:
        """Send a fatal ``error`` with ``code`` and end the connection; False if the session ended."""
        if self._core.state not in _LIVE or self._socket.closing:
            return False
        await self._fail(code, message)
        return True

    async def write_frame(self, frame: str) -> bool:
        """Write a frame the fault hooks held back (they already saw it); False if closed."""
        return await self._socket.write(frame)

    # ------------------------------------------------------------ lifecycle

    async def _open(self) -> bool:
        """``session.created``, or the error that refuses the session; False if refused."""
        refusal = _model_refusal(self._model)
        if refusal is not None:
            code, message = refusal
            self.outcome = code
            _log.info("realtime session refused", code=code, reason=message)
            await self._send(m.SendError(code, message, "model"))
            self._socket.shutdown(1008, message)
            return False
        faults = self._ctx.faults
        if faults is not None:
            start = TaskSpec(
                task_id=self.session_id,
                model=self._model,
                audio_format="pcm",
                sample_rate=16000,
                language=None,
                heartbeat=False,
            )
            rejection = faults.on_run_task(start)
            if rejection is not None:
                await self._fail(rejection.code, rejection.message)
                return False
        await self._send(m.CreateSession())
        return True

    async def _fail(self, code: str, message: str) -> None:
        """A fatal ``error`` (``server_error``), then the close."""
        self.outcome = code
        _log.info("realtime session failed", code=code, reason=message)
        await self._send(m.FailSession(code, message))
        self._socket.shutdown()

    async def _idle_watch(self) -> None:
        idle = self._config.idle_timeout_s
        while True:
            now = trio.current_time()
            if self._ops.idle:
                due = max(self._last_input_at, self._worker.idle_since) + idle
            else:
                due = now + idle  # the worker is busy: the client may wait for results
            if now >= due:
                break
            await trio.sleep_until(due)
        if self._core.state is ServerState.FINISHED:
            self._socket.shutdown(1000, "session finished")
            return
        await self._fail("CLIENT_ERROR", f"request timeout after {idle:g} seconds.")

    # ------------------------------------------------------------ reader

    async def _read_loop(self) -> None:
        faults = self._ctx.faults
        while True:
            data = await self._socket.receive()
            if data is not None:
                self._last_input_at = trio.current_time()
                if faults is not None and not await faults.on_receive(data):
                    continue
            self._core.receive_data(data)
            for event in self._core.events():
                if not await self._dispatch(event):
                    return

    async def _dispatch(self, event: m.ServerEvent) -> bool:
        """Handle one core event; False when the connection must end."""
        match event:
            case m.ConnectionClosed():
                self._socket.shutdown()
                return False
            case m.BadRequest(reason, event_id):
                await self._reply_error("invalid_value", reason, None, event_id)
                return True
            case m.SessionUpdateRequested():
                await self._send(m.ConfirmSession())
                return await self._answer(self._intake.reconfigure())
            case m.SessionUpdateRejected(_, reply):
                await self._send(reply)
                return True
        if self._finishing:
            _log.debug("input after session.finish ignored", event=type(event).__name__)
            return True
        match event:
            case m.AudioAppended(event_id, pcm):
                return await self._answer(self._intake.append(pcm), event_id)
            case m.ImageAppended(event_id, jpeg):
                refusal = self._images.check(jpeg, trio.current_time())
                if refusal is not None:
                    await self._reply_error(refusal.code, refusal.message, refusal.param, event_id)
                return True
            case m.CommitRequested(event_id):
                return await self._answer(self._intake.commit(), event_id)
            case m.ClearRequested():
                return await self._answer(self._intake.clear())
            case m.FinishRequested():
                self._finishing = True
                return await self._answer(self._intake.finish())
        raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover

    async def _reply_error(
        self, code: str, message: str, param: str | None = None, event_id: str | None = None
    ) -> None:
        """A non-fatal ``error`` — not once the session is finishing (it would be fatal then)."""
        if self._core.state in _ERRORS_ALLOWED:
            await self._send(m.SendError(code, message, param, event_id))
        else:
            _log.info("client error after session.finish not answered", reason=message)

    async def _answer(self, answer: Answer, event_id: str | None = None) -> bool:
        """Carry out the intake's answer; False when the session failed."""
        match answer:
            case Refused(code, message, param):
                await self._reply_error(code, message, param, event_id)
            case Throttled(queued_s):
                await self._fail(
                    "Throttling",
                    f"audio arrives faster than it is recognized ({queued_s:.1f} s queued, "
                    f"limit {self._config.max_audio_queue_s:g} s)",
                )
                return False
        return True

    # ------------------------------------------------------------ output

    async def _send(self, *commands: m.ServerCommand) -> None:
        """Send the core's frame for each command, in order, dropping what the session refuses."""
        for command in commands:
            if not await self._socket.send(partial(self._frame, command)):
                return

    def _frame(self, command: m.ServerCommand) -> str | None:
        """The core's frame for ``command``, or None when the session (as it is now) refuses it."""
        core = self._core
        if core.state not in _LIVE:
            return None
        if isinstance(command, _ASR_COMMANDS) and not core.asr_enabled:
            return None
        if isinstance(command, _AUDIO_COMMANDS) and not core.audio_output:
            return None
        frame: str = core.send(command)
        return frame


def _model_refusal(model: str) -> tuple[str, str] | None:
    """The error code and message that refuse ``?model=`` (None: a realtime model)."""
    spec = MODELS.get(model)
    if not model:
        return ("invalid_value", "the model query parameter is required: ?model=<model>")
    if spec is None:
        return ("Model.NotExist", f"Model not exist: {model!r}")
    if spec.protocol != "realtime":
        return (
            "Model.NotExist",
            f"{model} speaks the inference protocol (/api-ws/v1/inference), not the realtime one",
        )
    return None
