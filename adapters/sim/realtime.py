"""Serving one accepted ``/api-ws/v1/realtime?model=…`` connection (livetranslate).

Theory of operation
-------------------
One socket is one session (DASHSCOPE.md §5). :class:`RealtimeConnection`
sends ``session.created`` at once, then runs three tasks in one nursery:

* the **reader** always reads: every frame goes into the sans-IO
  :class:`~adapters.dashscope.realtime_server.RealtimeServer` (which merges and
  validates ``session.update`` and decodes base64), and its events are handled
  at once — ``session.updated`` or the update's ``error``, image checks,
  manual-mode buffering, the energy VAD (:mod:`.realtime_vad`) over appended
  audio. What produces stream events becomes an op (:mod:`.realtime_ops`) for
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

Every frame leaves through :meth:`RealtimeConnection._send`: one lock around
"the core makes the frame" and "it is written", so frames leave in core order.
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
  (OpenAI Realtime's code). ``commit`` in VAD mode → ``invalid_value``. A
  buffer left at ``session.finish`` is recognized without the ack.
* **clear** drops the manual buffer; in VAD mode the look-back audio not yet
  in a segment (a segment under way goes on). Both answer ``…cleared``.
* **Switching mode or sample rate** by ``session.update`` ends a segment under
  way there (as if the speaker stopped); a manual buffer is dropped when VAD
  turns on. A buffer is recognized at the rate in force at commit.
* **Images**: checked and counted by :mod:`.realtime_images`.
* ``opus`` input is accepted by ``session.update`` but the simulator cannot
  decode it: appended audio is dropped with one ``unsupported_format`` error.
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

from typing import TYPE_CHECKING, Final

import structlog
import trio
from trio_websocket import ConnectionClosed

from adapters.dashscope import realtime_messages as m
from adapters.dashscope._core import new_id
from adapters.dashscope._realtime_state import ServerState
from adapters.dashscope.models import MODELS
from adapters.dashscope.realtime_server import RealtimeServer
from adapters.dashscope.realtime_wire import WireTurnDetection

from . import realtime_ops as ops
from .realtime_images import ImageGate
from .realtime_vad import EnergyVad, Offset, Onset, VadSettings, Voice, rms_threshold
from .realtime_worker import SegmentWorker
from .translate import StandInTranslator
from .validation import TaskSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_websocket import WebSocketConnection

    from .context import ConnectionContext
    from .realtime_vad import VadEvent
    from .translate import Translator

__all__ = ["RealtimeConnection"]

_log = structlog.get_logger()

_LIVE: Final = frozenset({ServerState.CONNECTED, ServerState.ACTIVE, ServerState.FINISHING})
_ERRORS_ALLOWED: Final = frozenset({ServerState.CONNECTED, ServerState.ACTIVE})
_MAX_CLOSE_REASON: Final = 120
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
        ws: WebSocketConnection,
        ctx: ConnectionContext,
        model: str,
        *,
        ids: Callable[[str], str] = new_id,
    ) -> None:
        self._ws = ws
        self._ctx = ctx
        self._config = ctx.config
        self._model = model
        self._ids = ids
        translator: Translator = (
            ctx.translator if ctx.translator is not None else StandInTranslator()
        )
        self._core = RealtimeServer(model, ids=ids)
        self._send_lock = trio.Lock()
        self._close: tuple[int, str | None] | None = None
        self._nursery: trio.Nursery | None = None
        self._ops = ops.OpQueue(int(self._config.max_audio_queue_s * 16000) * 2)
        self._vad: EnergyVad | None = EnergyVad(16000, _vad_settings(None))
        self._manual = bytearray()
        self._open_item: str | None = None  # the VAD segment under way (reader's view)
        self._last_item: str | None = None
        self._finishing = False  # session.finish received: later input is ignored
        self._images = ImageGate()
        self._opus_refused = False
        self._started_at = self._last_input_at = trio.current_time()
        self._worker = SegmentWorker(self._ops, self._core, ctx, translator, self._send, ids)
        self.received_ms = 0.0
        """Milliseconds of audio appended (the session's audio clock)."""
        self.outcome = "closed by client"

    @property
    def session_id(self) -> str:
        return self._core.default.id

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
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
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
        return self._close or (1000, None)

    # ------------------------------------------------------------ FaultControl

    async def fail_task(self, code: str, message: str) -> bool:
        """Send a fatal ``error`` with ``code`` and end the connection; False if the session ended."""
        if self._core.state not in _LIVE or self._close is not None:
            return False
        await self._fail(code, message)
        return True

    async def write_frame(self, frame: str) -> bool:
        """Write a frame the fault hooks held back (they already saw it); False if closed."""
        return await self._write(frame)

    # ------------------------------------------------------------ lifecycle

    async def _open(self) -> bool:
        """``session.created``, or the error that refuses the session; False if refused."""
        spec = MODELS.get(self._model)
        refusal: tuple[str, str] | None = None
        if not self._model:
            refusal = ("invalid_value", "the model query parameter is required: ?model=<model>")
        elif spec is None:
            refusal = ("Model.NotExist", f"Model not exist: {self._model!r}")
        elif spec.protocol != "realtime":
            refusal = (
                "Model.NotExist",
                f"{self._model} speaks the inference protocol (/api-ws/v1/inference), "
                "not the realtime one",
            )
        if refusal is not None:
            code, message = refusal
            self.outcome = code
            _log.info("realtime session refused", code=code, reason=message)
            await self._send(m.SendError(code, message, "model"))
            self._shutdown(1008, message)
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

    def _shutdown(self, code: int = 1000, reason: str | None = None) -> None:
        """End the connection: stop every task (not a checkpoint). The first call decides the code."""
        if self._close is None:
            self._close = (
                code,
                reason.encode()[:_MAX_CLOSE_REASON].decode(errors="ignore") if reason else None,
            )
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def _fail(self, code: str, message: str) -> None:
        """A fatal ``error`` (``server_error``), then the close."""
        self.outcome = code
        _log.info("realtime session failed", code=code, reason=message)
        await self._send(m.FailSession(code, message))
        self._shutdown()

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
            self._shutdown(1000, "session finished")
            return
        await self._fail("CLIENT_ERROR", f"request timeout after {idle:g} seconds.")

    # ------------------------------------------------------------ reader

    async def _read_loop(self) -> None:
        faults = self._ctx.faults
        while True:
            try:
                data: bytes | str | None = await self._ws.get_message()
            except ConnectionClosed:
                data = None
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
                self._shutdown()
                return False
            case m.BadRequest(reason, event_id):
                await self._reply_error("invalid_value", reason, None, event_id)
                return True
            case m.SessionUpdateRequested():
                await self._send(m.ConfirmSession())
                return self._reconfigure()
            case m.SessionUpdateRejected(_, reply):
                await self._send(reply)
                return True
        if self._finishing:
            _log.debug("input after session.finish ignored", event=type(event).__name__)
            return True
        match event:
            case m.AudioAppended(event_id, pcm):
                return await self._on_audio(pcm, event_id)
            case m.ImageAppended(event_id, jpeg):
                await self._on_image(jpeg, event_id)
                return True
            case m.CommitRequested(event_id):
                return await self._on_commit(event_id)
            case m.ClearRequested():
                self._manual.clear()
                if self._vad is not None:
                    self._vad.clear()
                return self._queue(ops.Clear())
            case m.FinishRequested():
                self._finishing = True
                return self._end_audio(implicit_commit=True) and self._queue(ops.Finish())
        raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover

    async def _reply_error(
        self, code: str, message: str, param: str | None = None, event_id: str | None = None
    ) -> None:
        """A non-fatal ``error`` — not once the session is finishing (it would be fatal then)."""
        if self._core.state in _ERRORS_ALLOWED:
            await self._send(m.SendError(code, message, param, event_id))
        else:
            _log.info("client error after session.finish not answered", reason=message)

    def _reconfigure(self) -> bool:
        """Apply an accepted session to the VAD and the manual buffer."""
        session = self._core.session
        rate = session.sample_rate if isinstance(session.sample_rate, int) else 16000
        if self._core.manual_mode:
            if self._vad is not None:
                ok = self._end_audio(implicit_commit=False)
                self._vad = None
                return ok
            return True
        settings = _vad_settings(session.turn_detection)
        if self._vad is None:
            if self._manual:
                _log.info("manual buffer dropped: server VAD turned on", bytes=len(self._manual))
                self._manual.clear()
            self._vad = EnergyVad(rate, settings, start_ms=int(self.received_ms))
        elif self._vad.sample_rate != rate:
            ok = self._end_audio(implicit_commit=False)
            self._vad = EnergyVad(rate, settings, start_ms=self._vad.position_ms)
            return ok
        else:
            self._vad.settings = settings
        return True

    def _rate(self) -> int:
        rate = self._core.session.sample_rate
        return rate if isinstance(rate, int) else 16000

    async def _on_audio(self, pcm: bytes, event_id: str | None) -> bool:
        if self._core.session.input_audio_format == "opus":
            if not self._opus_refused:
                self._opus_refused = True
                await self._reply_error(
                    "unsupported_format",
                    "the simulator cannot decode opus audio; send pcm",
                    "session.input_audio_format",
                    event_id,
                )
            return True
        self.received_ms += len(pcm) * 500 / self._rate()
        if self._vad is None:
            if len(self._manual) + len(pcm) > self._ops_limit():
                await self._fail_throttled(len(self._manual) + len(pcm))
                return False
            self._manual += pcm
            return True
        return self._apply_vad(self._vad.push(pcm))

    def _apply_vad(self, events: list[VadEvent]) -> bool:
        for event in events:
            match event:
                case Onset(start_ms, pcm):
                    item_id = self._open_item = self._ids("item")
                    self._last_item = item_id
                    ok = self._queue(ops.Start(item_id, start_ms, self._rate(), pcm))
                case Voice(pcm):
                    ok = self._queue(ops.Audio(pcm))
                case Offset(end_ms):
                    assert self._open_item is not None
                    ok = self._queue(ops.Stop(self._open_item, end_ms))
                    self._open_item = None
            if not ok:
                return False
        return True

    def _end_audio(self, *, implicit_commit: bool) -> bool:
        """The audio stops here (finish, mode or rate change): close what is under way."""
        if self._vad is not None:
            return self._apply_vad(self._vad.end())
        if implicit_commit and self._manual:
            pcm, self._manual = bytes(self._manual), bytearray()
            return self._queue(self._turn(pcm, ack=False))
        return True

    def _turn(self, pcm: bytes, *, ack: bool) -> ops.Turn:
        item_id, previous = self._ids("item"), self._last_item
        self._last_item = item_id
        return ops.Turn(item_id, previous, self._rate(), pcm, ack)

    async def _on_commit(self, event_id: str | None) -> bool:
        if self._vad is not None:
            await self._reply_error(
                "invalid_value",
                "input_audio_buffer.commit is for manual mode (turn_detection: null); "
                "the server VAD commits by itself",
                None,
                event_id,
            )
            return True
        if not self._manual:
            await self._reply_error(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: the buffer is empty.",
                None,
                event_id,
            )
            return True
        pcm, self._manual = bytes(self._manual), bytearray()
        return self._queue(self._turn(pcm, ack=True))

    async def _on_image(self, jpeg: bytes, event_id: str | None) -> None:
        refusal = self._images.check(jpeg, trio.current_time())
        if refusal is not None:
            await self._reply_error(refusal.code, refusal.message, refusal.param, event_id)

    def _ops_limit(self) -> int:
        return int(self._config.max_audio_queue_s * self._rate()) * 2

    def _queue(self, op: ops.Op) -> bool:
        """Hand an op to the worker; a full queue fails the session (via a task: we are sync)."""
        if self._ops.put_nowait(op):
            return True
        assert self._nursery is not None
        self._nursery.start_soon(self._fail_throttled, self._ops.queued_bytes)
        return False

    async def _fail_throttled(self, queued_bytes: int) -> None:
        queued = queued_bytes / (2 * self._rate())
        await self._fail(
            "Throttling",
            f"audio arrives faster than it is recognized ({queued:.1f} s queued, "
            f"limit {self._config.max_audio_queue_s:g} s)",
        )

    # ------------------------------------------------------------ output

    def _admits(self, command: m.ServerCommand) -> bool:
        """Whether the session (as it is now) still takes ``command``."""
        core = self._core
        if core.state not in _LIVE:
            return False
        if isinstance(command, _ASR_COMMANDS):
            return core.asr_enabled
        if isinstance(command, _AUDIO_COMMANDS):
            return core.audio_output
        return True

    async def _send(self, *commands: m.ServerCommand) -> None:
        """Write the core's frame for each command, in order, dropping what the session refuses.

        The lock makes "core produces the frame" and "frame is written" one step,
        so frames leave in core order. A closed socket ends the connection.
        """
        faults = self._ctx.faults
        for command in commands:
            async with self._send_lock:
                if not self._admits(command):
                    continue
                frame: str | None = self._core.send(command)
                if faults is not None and frame is not None:
                    frame = await faults.before_send(frame)
                if frame is not None and not await self._write(frame):
                    return

    async def _write(self, frame: str) -> bool:
        """Write one frame; a closed socket ends the connection (and gives False)."""
        # A frame the core produced must leave whole, even while the connection
        # shuts down (error, then close) — but not forever.
        deadline = trio.current_time() + self._config.disconnect_timeout_s
        try:
            with trio.CancelScope(shield=True, deadline=deadline):
                await self._ws.send_message(frame)
        except ConnectionClosed:
            self._shutdown()
            return False
        return True


def _vad_settings(vad: object) -> VadSettings:
    """The detector's settings from ``session.turn_detection`` (defaults as the service's)."""
    threshold, silence, padding = 0.2, 1000, 300
    if isinstance(vad, WireTurnDetection):
        if isinstance(vad.threshold, float | int):
            threshold = float(vad.threshold)
        if isinstance(vad.silence_duration_ms, int):
            silence = vad.silence_duration_ms
        if isinstance(vad.prefix_padding_ms, int):
            padding = vad.prefix_padding_ms
    return VadSettings(rms_threshold(threshold), silence, padding)
