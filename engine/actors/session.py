"""The session actor: one stream's conversation with the inference endpoint.

Theory of operation
-------------------
The actor reads :class:`AudioFrame`s (int16 PCM at the model's rate, on the
stream's global timeline) and writes engine events. For each server task it:

1. dials the endpoint (``Authorization: Bearer``) and sends ``run-task``;
2. keeps every frame in the :class:`ReplayBuffer` and sends nothing until
   ``task-started`` (audio that arrives during the handshake is never dropped);
3. streams the frames as binary messages while a reader task feeds the
   sans-IO core and turns results into :class:`Partial` / :class:`Final`
   events, mapping server milliseconds onto the global timeline through the
   task's offset; each final moves the commit point;
4. at the end of input, sends ``finish-task`` and reads until
   ``task-finished`` under ``finish_timeout_s``; a passed deadline reports the
   unfinalized span as an :class:`AudioGap` (DESIGN §4). Then it closes.

Nothing is lost silently: when the task fails, every sample after the commit
point (including audio still arriving from upstream, which is drained and
counted) is reported as an :class:`AudioGap` with exact global times.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio

from adapters.dashscope import messages as m
from adapters.dashscope._state import State
from adapters.dashscope.inference import InferenceClient
from adapters.dashscope.models import get_model, run_task_parameters
from adapters.dashscope.ws import Dialer, Transport, connect, dial_tcp
from engine._util import unwrap_single_group
from engine.config import USER_AGENT, SessionConfig
from engine.errors import (
    AuthError,
    ConfigError,
    Disconnected,
    FinishTimeout,
    LocalProtocolError,
    RemoteProtocolError,
    StenoError,
    StenoTimeout,
    TaskFailed,
)
from engine.events import (
    AudioFrame,
    AudioGap,
    Event,
    Final,
    Partial,
    SessionClosed,
    SessionOpened,
    StreamEnded,
    StreamError,
    TaskMetrics,
    Translation,
    Word,
    samples_to_ms,
)
from engine.timeline import ReplayBuffer, TaskClock

if TYPE_CHECKING:
    from adapters.dashscope.messages import WireSentence

__all__ = ["run"]

_ENDED = frozenset({State.ERROR, State.FAILED, State.CLOSED})

log = structlog.get_logger("steno.session")

# task-failed codes that a retry cannot fix (DASHSCOPE.md §7.1); the supervisor
# (resilience work) uses the same split.
PERMANENT_TASK_CODES = frozenset(
    {
        "InvalidApiKey",
        "InvalidParameter",
        "Model.NotExist",
        "Arrearage",
        "DataInspectionFailed",
        "UNSUPPORTED_FORMAT",
        "NO_VALID_AUDIO_ERROR",
    }
)


async def run(
    *,
    inbox: trio.MemoryReceiveChannel[AudioFrame],
    outbox: trio.MemorySendChannel[Event],
    config: SessionConfig,
    dial: Dialer = dial_tcp,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one stream's session until its input ends and the task is finished.

    Channels: reads and closes ``inbox``; writes and closes ``outbox``. The last
    event written is always :class:`StreamEnded`.

    Cancellation: cancelling abandons the task without ``finish-task`` (that is
    the second Ctrl-C); close the inbox instead for a graceful finish.

    Error handling: service and network failures do not raise; they become a
    :class:`StreamError` plus an :class:`AudioGap` for every unrecognized sample.
    A bad configuration raises :class:`ConfigError` before ``task_status.started``.
    """
    spec = get_model(config.model)
    parameters = run_task_parameters(spec, config.options, sample_rate=spec.sample_rate)
    session = _Session(config, outbox, dial, spec.sample_rate, parameters)
    async with inbox, outbox:
        task_status.started()
        with structlog.contextvars.bound_contextvars(stream=config.stream, model=config.model):
            await session.run(inbox)


class _Session:
    def __init__(
        self,
        config: SessionConfig,
        outbox: trio.MemorySendChannel[Event],
        dial: Dialer,
        rate: int,
        parameters: dict[str, object],
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.dial = dial
        self.rate = rate
        self.parameters = parameters
        self.buffer = ReplayBuffer(max(1, int(config.replay_buffer_s * rate)))
        self.input_done = False
        self.finals = 0
        self.lost_samples = 0
        self.next_sentence_id = 1
        self.failed = False
        self.task: _Task | None = None

    async def emit(self, event: Event) -> None:
        """Stamp the envelope (stream id, trio time) and send; blocks when the renderer lags."""
        await self.outbox.send(
            msgspec.structs.replace(event, stream=self.config.stream, t=trio.current_time())
        )

    async def run(self, inbox: trio.MemoryReceiveChannel[AudioFrame]) -> None:
        try:
            await self.run_task(inbox)
        except (StenoError, ConfigError) as exc:
            await self.fail(exc, inbox)
        status = "failed" if self.failed else ("partial" if self.lost_samples else "ok")
        await self.emit(
            StreamEnded(
                status,
                finals=self.finals,
                audio_lost_ms=samples_to_ms(self.lost_samples, self.rate),
                audio_ms=samples_to_ms(self.buffer.end, self.rate),
            )
        )

    async def run_task(self, inbox: trio.MemoryReceiveChannel[AudioFrame]) -> None:
        cfg = self.config
        task = _Task(uuid.uuid4().hex, TaskClock(self.buffer.commit_point, self.rate))
        self.task = task
        with structlog.contextvars.bound_contextvars(task_id=task.task_id):
            async with connect(
                cfg.url,
                api_key=cfg.api_key.reveal(),
                user_agent=USER_AGENT,
                connect_timeout=cfg.connect_timeout_s,
                dial=self.dial,
            ) as transport:
                log.info("session.connected", url=cfg.url.split("?", 1)[0])
                with unwrap_single_group():
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self.reader, transport, task)
                        await self.converse(transport, task, inbox)
                        nursery.cancel_scope.cancel()
                await transport.aclose()
        self.task = None
        await self.emit(SessionClosed(task.task_id, task.close_reason))

    async def converse(
        self, transport: Transport, task: _Task, inbox: trio.MemoryReceiveChannel[AudioFrame]
    ) -> None:
        cfg = self.config
        run_task = m.RunTask(task.task_id, cfg.model, self.parameters)
        await self.command(transport, task, run_task)
        # Audio that arrives during the handshake waits in the replay buffer.
        with trio.move_on_after(cfg.start_timeout_s) as start_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.buffer_until, task.started, inbox)
                await task.started.wait()
                nursery.cancel_scope.cancel()
        if start_scope.cancelled_caught:
            raise StenoTimeout(
                f"the server did not start the task within {cfg.start_timeout_s:g} s; "
                "fix: check the endpoint, or retry later"
            )
        await self.emit(SessionOpened(task.task_id, task.clock.offset))
        for frame in list(self.buffer.frames_from(task.sent_until)):
            await self.send_audio(transport, task, frame)
        if not self.input_done:
            async for frame in inbox:
                self.buffer.append(frame)
                await self.send_audio(transport, task, frame)
            self.input_done = True
        await self.finish(transport, task)

    async def buffer_until(
        self, started: trio.Event, inbox: trio.MemoryReceiveChannel[AudioFrame]
    ) -> None:
        async for frame in inbox:
            self.buffer.append(frame)
            if started.is_set():
                return
        self.input_done = True

    async def send_audio(self, transport: Transport, task: _Task, frame: AudioFrame) -> None:
        if frame.end <= task.sent_until:
            return
        pcm = frame.pcm
        if frame.start < task.sent_until:  # never resend what this task already has
            pcm = pcm[(task.sent_until - frame.start) * 2 :]
        if task.first_audio_t is None:
            task.first_audio_t = trio.current_time()
        await self.command(transport, task, m.SendAudio(pcm))
        task.sent_until = frame.end

    async def command(self, transport: Transport, task: _Task, command: m.ClientCommand) -> None:
        try:
            frame = task.core.send(command)
        except LocalProtocolError:
            if task.core.state in _ENDED:
                # The reader has seen the server fail, close or break the task and is
                # raising that (the real cause) right now; it cancels us.
                with trio.fail_after(5.0):
                    await trio.sleep_forever()
            raise
        await self.send(transport, frame)

    async def send(self, transport: Transport, frame: bytes | str) -> None:
        # A server that stops reading fills the TCP window and blocks us: bound it.
        with trio.move_on_after(self.config.send_timeout_s) as scope:
            await transport.send(frame)
        if scope.cancelled_caught:
            raise StenoTimeout(
                f"sending to the server stalled for {self.config.send_timeout_s:g} s "
                "(the connection is half-open or the server stopped reading)"
            )

    async def finish(self, transport: Transport, task: _Task) -> None:
        cfg = self.config
        task.finish_sent_t = trio.current_time()
        await self.command(transport, task, m.FinishTask())
        with trio.move_on_after(cfg.finish_timeout_s):
            await task.finished.wait()
        if not task.finished.is_set():
            task.close_reason = "finish-deadline"
            start, end = self.buffer.commit_point, self.buffer.end
            await self.gap(start, end, "finish-deadline")
            log.warning("session.finish_deadline", after_s=cfg.finish_timeout_s)
            raise FinishTimeout(
                f"the server did not finish the task within {cfg.finish_timeout_s:g} s; "
                f"{samples_to_ms(end - start, self.rate)} ms of audio were not finalized"
            )
        await self.emit(
            TaskMetrics(
                task.task_id,
                task.task_id,
                _delay_ms(task.first_audio_t, task.first_text_t),
                _delay_ms(task.finish_sent_t, task.finished_t),
                samples_to_ms(task.sent_until - task.clock.offset, self.rate),
                task.finals,
            )
        )

    async def reader(self, transport: Transport, task: _Task) -> None:
        """Feed every received frame to the core and act on its events."""
        while True:
            try:
                data: bytes | str | None = await transport.receive()
            except Disconnected:
                if task.finished.is_set():
                    return
                data = None
            task.core.receive_data(data)
            for event in task.core.events():
                await self.on_event(task, event)
            if data is None or task.finished.is_set():
                return

    async def on_event(self, task: _Task, event: m.ClientEvent) -> None:
        match event:
            case m.TaskStarted():
                task.started.set()
            case m.ResultGenerated(_, output):
                for sentence in (output.sentence, output.transcription):
                    if sentence is not None:
                        await self.on_sentence(task, sentence)
                for tr in output.translations or ():
                    await self.on_translation(task, tr)
            case m.TaskFinished():
                task.finished_t = trio.current_time()
                task.close_reason = "finished"
                task.finished.set()
            case m.TaskFailed(_, code, message):
                task.close_reason = f"task-failed: {code}"
                raise TaskFailed(code, message)
            case m.ConnectionClosed():
                task.close_reason = "connection-lost"
                raise Disconnected("the server closed the connection before task-finished")
            case m.ProtocolViolation(reason):
                task.close_reason = "protocol-error"
                raise RemoteProtocolError(f"the server broke the protocol: {reason}")
            case m.UnknownEvent(name):
                log.warning("session.unknown_event", event_name=name)
            case m.Heartbeat():
                pass

    async def on_sentence(self, task: _Task, s: WireSentence) -> None:
        clock = task.clock
        if s.text and task.first_text_t is None:
            task.first_text_t = trio.current_time()
        words = tuple(
            Word(clock.to_global(w.begin_time), clock.to_global(w.end_time), w.text, w.punctuation)
            for w in s.words
        )
        start = clock.to_global(s.begin_time)
        if s.is_final:
            assert s.end_time is not None
            end = max(start, clock.to_global(s.end_time))
            self.buffer.commit(end)
            task.finals += 1
            self.finals += 1
            sentence_id, self.next_sentence_id = self.next_sentence_id, self.next_sentence_id + 1
            final = Final(
                sentence_id, start, end, s.text, words, rate=self.rate, task_id=task.task_id
            )
            await self.emit(final)
        else:
            stash = s.stash.text if s.stash is not None else ""
            partial = Partial(
                self.next_sentence_id, start, s.text, words, rate=self.rate, stash=stash
            )
            await self.emit(partial)

    async def on_translation(self, task: _Task, tr: m.WireTranslation) -> None:
        clock = task.clock
        end = clock.to_global(tr.end_time) if tr.end_time is not None else None
        await self.emit(
            Translation(
                tr.lang,
                self.next_sentence_id - (1 if tr.is_final else 0),
                clock.to_global(tr.begin_time),
                end,
                tr.text,
                tr.is_final,
                rate=self.rate,
            )
        )

    async def gap(self, start: int, end: int, reason: str) -> None:
        if end <= start:
            return
        self.lost_samples += end - start
        await self.emit(AudioGap(start, end, reason, rate=self.rate))

    async def fail(self, exc: Exception, inbox: trio.MemoryReceiveChannel[AudioFrame]) -> None:
        """Report the failure, then drain and account for every unrecognized sample."""
        self.failed = not isinstance(exc, FinishTimeout)  # the tail is lost, the rest is not
        kind = _kind(exc)
        permanent = isinstance(exc, AuthError | ConfigError) or (
            isinstance(exc, TaskFailed) and exc.code in PERMANENT_TASK_CODES
        )
        log.error("session.failed", kind=kind, error=str(exc))
        if self.task is not None:
            reason = self.task.close_reason if self.task.close_reason != "closed" else kind
            await self.emit(SessionClosed(self.task.task_id, reason))
            self.task = None
        await self.emit(StreamError(kind, str(exc), permanent=permanent))
        already = self.buffer.end if isinstance(exc, FinishTimeout) else self.buffer.commit_point
        if not self.input_done:
            async for frame in inbox:
                self.buffer.append(frame)
            self.input_done = True
        reason = (
            "finish-deadline"
            if isinstance(exc, FinishTimeout)
            else ("permanent-error" if permanent else "connection-lost")
        )
        await self.gap(already, self.buffer.end, reason)


def _kind(exc: Exception) -> str:
    return {
        AuthError: "auth",
        TaskFailed: "task-failed",
        FinishTimeout: "finish-timeout",
        StenoTimeout: "timeout",
        Disconnected: "disconnected",
        RemoteProtocolError: "protocol",
        ConfigError: "config",
    }.get(type(exc), "connect" if "connect" in type(exc).__name__.lower() else "error")


def _delay_ms(since: float | None, until: float | None) -> float | None:
    if since is None or until is None:
        return None
    return round((until - since) * 1000.0, 1)


class _Task:
    """Per-task state: the core, its clock and the SDK-style delay timestamps."""

    def __init__(self, task_id: str, clock: TaskClock) -> None:
        self.task_id = task_id
        self.clock = clock
        self.core = InferenceClient()
        self.started = trio.Event()
        self.finished = trio.Event()
        self.sent_until = clock.offset
        self.finals = 0
        self.first_audio_t: float | None = None
        self.first_text_t: float | None = None
        self.finish_sent_t: float | None = None
        self.finished_t: float | None = None
        self.close_reason = "closed"
