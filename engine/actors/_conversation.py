"""One task on one connection, with its reader and liveness watch.

Theory of operation
-------------------
A :class:`Conversation` is owned by a background task (:meth:`Conversation.run`,
started with ``nursery.start``) that dials, sends ``run-task``, waits for
``task-started`` and then reports itself started. From then on the session's
pump sends audio through it while two helper tasks run beside it:

* the reader feeds every received frame to the sans-IO core and hands the
  core's events to the session's ``on_event`` callback;
* the liveness watch pings on an interval with a pong deadline (a half-open
  socket never answers) and declares a stall when audio went out but no
  server frame came back for ``stall_timeout_s``.

A failure after the start never raises out of the owner task: it is recorded
(:attr:`error`), :attr:`dead` is set and :attr:`pump_scope` is cancelled, so
the session's pump stops at once and its supervisor decides what to do. A
failure before the start raises from ``nursery.start`` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
import trio

from adapters.dashscope import messages as m
from adapters.dashscope._state import State
from adapters.dashscope.inference import InferenceClient
from adapters.dashscope.ws import Dialer, Transport, connect
from engine._util import unwrap_single_group
from engine.config import USER_AGENT, SessionConfig
from engine.errors import (
    Disconnected,
    FinishTimeout,
    LocalProtocolError,
    RemoteProtocolError,
    StenoError,
    StenoTimeout,
    TaskFailed,
)
from engine.results import Heard, HeardWord, Result, Translated
from engine.timeline import TaskClock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Conversation", "InferenceConversation", "results_of"]

log = structlog.get_logger("steno.session")


class Conversation:
    """One connection and one server task; see the module docstring.

    This base owns what every protocol shares (the transport, the reader, the
    liveness watch, send and finish deadlines). A protocol supplies its sans-IO
    core and five hooks: :meth:`_new_core`, :meth:`_start`, :meth:`_audio`,
    :meth:`_finish_command` and :meth:`_on_core_event`, plus ``_ENDED``, the core
    states in which the reader is already raising the real cause.
    """

    _ENDED: frozenset[Any] = frozenset()

    def __init__(
        self,
        *,
        config: SessionConfig,
        task_id: str,
        offset: int,
        rate: int,
        parameters: dict[str, Any],
        on_result: Callable[[Conversation, Result], Awaitable[None]],
        dial: Dialer,
        attempt: int = 0,
    ) -> None:
        self.config = config
        self.task_id = task_id
        self.clock = TaskClock(offset, rate)
        self.rate = rate
        self.parameters = parameters
        self.on_result = on_result
        self.dial = dial
        self.attempt = attempt
        self.core: Any = self._new_core()
        self.transport: Transport | None = None
        self.started = trio.Event()
        self.finished = trio.Event()
        self.dead = trio.Event()
        self.ended = trio.Event()  # finished or dead: what a finish waits for
        self.release = trio.Event()
        self.pump_scope = trio.CancelScope()
        self.error: StenoError | None = None
        self.retired = False  # after a rotation: results are ignored
        self.close_reason = "closed"
        self.sent_until = offset  # global end of the real audio sent
        self.finals = 0
        self.sentence_ids: dict[str, int] = {}  # result key -> the stream's sentence id
        self.utterance_done = False  # an utterance model's sentence ended: send no more
        self.pending_partial = False
        self.started_t: float | None = None
        self.first_audio_t: float | None = None
        self.first_text_t: float | None = None
        self.finish_sent_t: float | None = None
        self.finished_t: float | None = None
        self.last_server_t = 0.0
        self.unanswered_since: float | None = None  # first audio sent after the last server frame

    @property
    def offset(self) -> int:
        return self.clock.offset

    def rebase(self, offset: int) -> None:
        """Move a started task that has no audio yet to ``offset`` (a rotation's switch point)."""
        if self.clock.task_samples:
            raise ValueError("cannot rebase a task that has audio")
        self.clock = TaskClock(offset, self.rate)
        self.sent_until = offset

    # ------------------------------------------------------------ owner task

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dial, start the task, report started, then serve until released or dead.

        Error handling: before ``task_status.started`` failures raise; after it they
        are recorded on the conversation (see the module docstring).
        """
        reported = False
        try:
            with structlog.contextvars.bound_contextvars(task_id=self.task_id):
                async with connect(
                    self._url(),
                    api_key=self.config.api_key.reveal(),
                    user_agent=USER_AGENT,
                    connect_timeout=self.config.connect_timeout_s,
                    dial=self.dial,
                ) as transport:
                    self.transport = transport
                    try:
                        with unwrap_single_group():
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._reader)
                                await self._start()
                                nursery.start_soon(self._liveness)
                                self._start_helpers(nursery)
                                reported = True
                                task_status.started()
                                await self.release.wait()
                                nursery.cancel_scope.cancel()
                    except StenoError as exc:
                        if reported:
                            self.die(exc)  # stop the pump before the socket closes under it
                        raise
                    await transport.aclose()
        except StenoError as exc:
            if not reported:
                raise
            self.die(exc)
        finally:
            self.dead.set()
            self.ended.set()
            self.pump_scope.cancel()

    # ------------------------------------------------------- protocol hooks

    def _new_core(self) -> Any:
        raise NotImplementedError

    def _url(self) -> str:
        """The endpoint to dial."""
        return self.config.url

    def _start_helpers(self, nursery: trio.Nursery) -> None:
        """Start protocol-specific tasks beside the reader once the task started."""

    async def _start(self) -> None:
        """Open the server task; return once the server has started it."""
        raise NotImplementedError

    def _audio(self, pcm: bytes) -> Any:
        raise NotImplementedError

    def _finish_command(self) -> Any:
        raise NotImplementedError

    async def _on_core_event(self, event: Any) -> None:
        raise NotImplementedError

    async def _wait_started(self) -> None:
        with trio.move_on_after(self.config.start_timeout_s):
            await self.started.wait()
        if not self.started.is_set():
            raise StenoTimeout(
                f"the server did not start the task within {self.config.start_timeout_s:g} s"
            )
        self.started_t = self.last_server_t = trio.current_time()
        log.info("session.task_started", offset=self.offset, attempt=self.attempt)

    def die(self, exc: StenoError) -> None:
        """Record the first failure; stop the pump and the owner task."""
        if self.error is None and not self.finished.is_set():
            self.error = exc
            log.info("session.conversation_died", error=str(exc), kind=type(exc).__name__)
        self.dead.set()
        self.ended.set()
        self.pump_scope.cancel()
        self.release.set()

    # --------------------------------------------------------------- sending

    async def command(self, command: Any) -> None:
        try:
            frame = self.core.send(command)
        except LocalProtocolError:
            if self.core.state in self._ENDED:
                # The reader has the real cause and is raising it now; it cancels us.
                with trio.fail_after(5.0):
                    await trio.sleep_forever()
            raise
        await self.send_frame(frame)

    async def send_frame(self, frame: bytes | str) -> None:
        assert self.transport is not None
        # A server that stops reading fills the TCP window and blocks us: bound it.
        with trio.move_on_after(self.config.send_timeout_s) as scope:
            await self.transport.send(frame)
        if scope.cancelled_caught:
            raise StenoTimeout(
                f"sending stalled for {self.config.send_timeout_s:g} s "
                "(the connection is half-open or the server stopped reading)"
            )

    async def send_audio(self, pcm: bytes, end: int) -> None:
        """Send real audio whose global end is ``end``."""
        now = trio.current_time()
        if self.first_audio_t is None:
            self.first_audio_t = now
        if self.unanswered_since is None:
            self.unanswered_since = now
        await self.command(self._audio(pcm))
        self.clock.advance(len(pcm) // 2)
        self.sent_until = end

    async def send_padding(self, samples: int) -> None:
        """Keep-alive silence that is not on the global timeline."""
        await self.command(self._audio(bytes(2 * samples)))
        self.clock.pad(samples)

    async def finish(self) -> None:
        """Send finish-task and wait for task-finished under the finish deadline.

        Raises:
            FinishTimeout: the deadline passed.
        """
        timeout = self.config.finish_timeout_s
        self.finish_sent_t = sent = trio.current_time()
        await self.command(self._finish_command())
        # The deadline measures the server's silence: results still arriving for a
        # backlog (audio sent faster than real time) extend it, up to the task's
        # audio duration on top, since no service needs longer than real time.
        audio_s = self.clock.task_samples / self.rate  # what the server got (holes excluded)
        cap = sent + timeout + audio_s
        while not self.ended.is_set():
            quiet_until = max(sent, self.last_server_t) + timeout
            with trio.move_on_at(min(quiet_until, cap)):
                await self.ended.wait()
            if trio.current_time() >= cap or self.last_server_t + timeout <= trio.current_time():
                break
        if self.error is not None:
            raise self.error
        if not self.finished.is_set():
            self.close_reason = "finish-deadline"
            raise FinishTimeout(
                f"the server did not finish the task within {self.config.finish_timeout_s:g} s"
            )

    async def finish_quietly(self) -> None:
        """Finish a retired task in the background; failures only get logged."""
        try:
            with trio.move_on_after(self.config.finish_timeout_s + self.config.send_timeout_s):
                await self.finish()
        except StenoError as exc:
            log.info("session.retired_finish_failed", error=str(exc))
        finally:
            self.release.set()

    # ------------------------------------------------------ reader, liveness

    async def _reader(self) -> None:
        assert self.transport is not None
        while True:
            try:
                data: bytes | str | None = await self.transport.receive()
            except Disconnected:
                if self.finished.is_set():
                    return
                data = None
            self.last_server_t = trio.current_time()
            self.unanswered_since = None
            self.core.receive_data(data)
            for event in self.core.events():
                await self._on_core_event(event)
            if data is None:
                return

    async def _liveness(self) -> None:
        """Ping with a pong deadline; declare a stall when audio goes unanswered.

        Wakes only at its next deadline (the next ping, or half a stall timeout),
        not on a fixed tick: with thousands of streams, idle timers are the cost.
        A stall is therefore detected between ``stall_timeout_s`` and 1.5 times it.
        """
        cfg = self.config
        assert self.transport is not None
        next_ping = trio.current_time() + cfg.ping_interval_s
        while True:
            await trio.sleep_until(min(next_ping, trio.current_time() + cfg.stall_timeout_s / 2))
            now = trio.current_time()
            since = self.unanswered_since
            # After finish-task the finish deadline governs, not the stall watch.
            if (
                since is not None
                and self.finish_sent_t is None
                and now - since >= cfg.stall_timeout_s
            ):
                self.close_reason = "stalled"
                raise Disconnected(
                    f"the server sent nothing for {now - since:.0f} s while audio was flowing (stall)"
                )
            if now >= next_ping:
                with trio.move_on_after(cfg.pong_timeout_s) as scope:
                    await self.transport.ping()
                if scope.cancelled_caught:
                    self.close_reason = "ping-timeout"
                    raise Disconnected(
                        f"no pong within {cfg.pong_timeout_s:g} s (the connection is half-open)"
                    )
                next_ping = trio.current_time() + cfg.ping_interval_s


class InferenceConversation(Conversation):
    """A task on the inference ("task") protocol: paraformer, fun-asr, gummy."""

    _ENDED = frozenset({State.ERROR, State.FAILED, State.CLOSED})

    def _new_core(self) -> InferenceClient:
        return InferenceClient()

    async def _start(self) -> None:
        await self.command(m.RunTask(self.task_id, self.config.model, self.parameters))
        await self._wait_started()

    def _audio(self, pcm: bytes) -> m.SendAudio:
        return m.SendAudio(pcm)

    def _finish_command(self) -> m.FinishTask:
        return m.FinishTask()

    async def _on_core_event(self, event: Any) -> None:
        match event:
            case m.TaskStarted():
                self.started.set()
            case m.TaskFinished():
                self.finished_t = trio.current_time()
                self.close_reason = "finished"
                self.finished.set()
                self.ended.set()
            case m.ResultGenerated(_, output):
                for result in results_of(output):
                    await self.on_result(self, result)
            case m.TaskFailed(_, code, message):
                self.close_reason = f"task-failed: {code}"
                raise TaskFailed(code, message)
            case m.ConnectionClosed():
                self.close_reason = "connection-lost"
                raise Disconnected("the server closed the connection before task-finished")
            case m.ProtocolViolation(reason):
                self.close_reason = "protocol-error"
                raise RemoteProtocolError(f"the server broke the protocol: {reason}")
            case m.UnknownEvent(name):
                log.warning("session.unknown_event", event_name=name)


def results_of(output: m.Output) -> list[Result]:
    """The neutral results in a result-generated payload (paraformer, fun-asr and gummy shapes)."""
    results: list[Result] = []
    for s in (output.sentence, output.transcription):
        if s is not None:
            results.append(_heard(s))
    for tr in output.translations or ():
        results.append(
            Translated(
                tr.lang,
                tr.is_final,
                tr.begin_time,
                tr.end_time if tr.is_final else None,
                tr.text,
                tr.stash.text if tr.stash is not None else "",
                key=str(tr.sentence_id),
            )
        )
    return results


def _heard(s: m.WireSentence) -> Heard:
    words = tuple(HeardWord(w.begin_time, w.end_time, w.text, w.punctuation) for w in s.words)
    stash = s.stash.text if s.stash is not None else ""
    end = s.end_time if s.is_final else None
    pre_end = bool(s.vad_pre_end) and not s.pre_end_failed
    return Heard(
        s.is_final, s.begin_time, end, s.text, words, stash, key=str(s.sentence_id), pre_end=pre_end
    )
