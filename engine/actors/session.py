"""The session actor: one stream's supervised conversation with the inference endpoint.

Theory of operation
-------------------
The actor reads :class:`AudioFrame`s (int16 PCM at the model's rate, on the
stream's global timeline) and writes engine events. Every frame goes into the
:class:`ReplayBuffer` first; the buffer holds everything after the **commit
point** (the end of the last final), bounded, drop-oldest.

A stream is served by a sequence of :class:`Conversation`s, one server task
each. The supervisor loop in :meth:`_Session.run`:

1. opens a conversation at ``offset = commit point`` (after a start token from
   the shared rate limiter), buffering input meanwhile, so audio that arrives
   during a handshake is never dropped;
2. *pumps* it: replays the buffer from the offset (faster than real time,
   paced, in frames of up to 16 KB), then streams live frames; results map
   onto the global timeline through the task's clock; finals move the commit
   point;
3. on a failure, classifies it: permanent → one :class:`StreamError` and an
   exact :class:`AudioGap` for everything after the commit point; transient →
   :class:`Reconnecting`, backoff (buffering input all the while), and back to
   1. The dead task's partials are simply dropped, and a final can never be
   duplicated because the new task starts exactly at the commit point. When an
   outage outlasts the buffer, the overflow is an ``AudioGap(replay-overflow)``;
4. rotates a task older than ``max_task_age_s`` at the next pause in speech,
   make-before-break (the next task is started before the switch); the old
   task is finished in the background and its later results are ignored;
5. keeps a paused source's task alive with padding silence (which the task
   clock keeps off the global timeline), or finishes it and reopens on the next
   audio, by ``idle_policy``;
6. at the end of input, finishes: ``finish-task``, read until
   ``task-finished`` under the deadline (a passed deadline is a transient
   failure: the tail is replayed on a new task).
"""

from __future__ import annotations

import random
import uuid
from typing import TYPE_CHECKING

import msgspec
import structlog
import trio

from adapters.dashscope.models import ModelSpec, get_model, run_task_parameters
from adapters.dashscope.ws import Dialer, dial_tcp
from engine._util import unwrap_single_group
from engine.actors._conversation import Conversation, InferenceConversation
from engine.actors._realtime import RealtimeConversation
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
    AudioFrame,
    AudioGap,
    Event,
    Final,
    Partial,
    Reconnecting,
    Rotated,
    SessionClosed,
    SessionOpened,
    StreamEnded,
    StreamError,
    TaskMetrics,
    TranslatedAudio,
    Translation,
    Word,
    samples_to_ms,
)
from engine.policy import classify, next_delay
from engine.ratelimit import StartLimiter, process_limiter
from engine.results import Heard, Result, Translated, VoiceOut
from engine.timeline import ReplayBuffer
from engine.translation import check_translation, gummy_parameters, realtime_settings, transcribes

if TYPE_CHECKING:
    from engine.config import SessionConfig

__all__ = ["SessionStats", "run"]

log = structlog.get_logger("steno.session")

_REPLAY_FRAME_BYTES = 16000  # the service's recommended maximum frame size
_MAX_KEYS = 64  # sentence keys a task remembers, to join late translations to their finals


async def run(
    *,
    inbox: trio.MemoryReceiveChannel[AudioFrame],
    outbox: trio.MemorySendChannel[Event],
    config: SessionConfig,
    dial: Dialer = dial_tcp,
    limiter: StartLimiter | None = None,
    drain: trio.Event | None = None,
    task_status: trio.TaskStatus[SessionStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one stream's session until its input ends and its last task is finished.

    Channels: reads and closes ``inbox``; writes and closes ``outbox``. The last
    event written is always :class:`StreamEnded`.

    Cancellation: cancelling abandons the task without ``finish-task`` (the second
    Ctrl-C); close the inbox instead for a graceful finish. Once ``drain`` is set
    (the first Ctrl-C), failures are no longer retried: the stream finishes within
    its deadlines and reports what it could not finalize.

    Error handling: service and network failures never raise; they are retried by
    ``config.policy`` or become a :class:`StreamError` plus an :class:`AudioGap` for
    every unrecognized sample. A bad configuration raises :class:`ConfigError`
    before ``task_status.started``.
    """
    spec = get_model(config.model)
    check_translation(spec, config.translation)
    parameters: dict[str, object]
    if spec.protocol == "realtime":
        parameters = {"session": realtime_settings(config, spec)}
    else:
        parameters = run_task_parameters(spec, config.options, sample_rate=spec.sample_rate)
        if spec.family == "gummy":
            parameters |= gummy_parameters(config.translation)
    session = _Session(config, outbox, dial, spec, parameters, limiter or process_limiter(), drain)
    async with inbox, outbox:
        task_status.started(SessionStats(session))
        with structlog.contextvars.bound_contextvars(stream=config.stream, model=config.model):
            log.info("session.start", seed=session.seed)
            async with trio.open_nursery() as nursery:
                session.nursery = nursery
                await session.run(inbox)
            await session.end()


class SessionStats:
    """A live, read-only view of a session's counters and bounded state (for metrics, soaks)."""

    __slots__ = ("_session",)

    def __init__(self, session: _Session) -> None:
        self._session = session

    @property
    def buffered_samples(self) -> int:
        return self._session.buffer.samples

    @property
    def buffered_frames(self) -> int:
        return len(self._session.buffer)

    @property
    def max_buffered_samples(self) -> int:
        return self._session.buffer.max_samples

    @property
    def tasks_opened(self) -> int:
        return self._session.tasks

    @property
    def live_tasks(self) -> int:
        """Background tasks of the session (conversation owners and their helpers)."""
        nursery = self._session.nursery
        return len(nursery.child_tasks) if nursery is not None else 0

    @property
    def reconnects(self) -> int:
        return self._session.reconnects

    @property
    def finals(self) -> int:
        return self._session.finals

    @property
    def lost_samples(self) -> int:
        return self._session.lost_samples


class _Session:
    def __init__(
        self,
        config: SessionConfig,
        outbox: trio.MemorySendChannel[Event],
        dial: Dialer,
        spec: ModelSpec,
        parameters: dict[str, object],
        limiter: StartLimiter,
        drain: trio.Event | None = None,
    ) -> None:
        self.config = config
        self.drain = drain
        self.outbox = outbox
        self.dial = dial
        self.spec = spec
        self.rate = spec.sample_rate
        self.parameters = parameters
        # Without source text, final translations settle sentences (commit points).
        self.transcribes = transcribes(spec, config.translation)
        cap = spec.max_task_audio_s
        # An utterance model's cap, less a margin for finish-task to arrive in time.
        self.max_task_samples = None if cap is None else int((cap - 2.0) * self.rate)
        self.limiter = limiter
        self.seed = (
            config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
        )
        self.rng = random.Random(self.seed)
        self.buffer = ReplayBuffer(max(1, int(config.replay_buffer_s * self.rate)))
        self.input_done = False
        self.finals = 0
        self.lost_samples = 0
        self.reconnects = 0
        self.tasks = 0
        self.next_sentence_id = 1
        self.failed = False
        self.nursery: trio.Nursery | None = None
        self.next_conv: Conversation | None = None
        self.preparing = False
        self.overflow: tuple[int, int] | None = None  # replay overflow not yet reported

    # ------------------------------------------------------------ emitting

    async def emit(self, event: Event) -> None:
        """Stamp the envelope (stream id, trio time) and send; blocks while the renderer lags."""
        await self.outbox.send(
            msgspec.structs.replace(event, stream=self.config.stream, t=trio.current_time())
        )

    async def gap(self, start: int, end: int, reason: str) -> None:
        if end <= start:
            return
        self.lost_samples += end - start
        log.warning("session.audio_gap", start=start, end=end, reason=reason)
        await self.emit(AudioGap(start, end, reason, rate=self.rate))

    async def end(self) -> None:
        status = "failed" if self.failed else ("partial" if self.lost_samples else "ok")
        await self.emit(
            StreamEnded(
                status,
                finals=self.finals,
                reconnects=self.reconnects,
                audio_lost_ms=samples_to_ms(self.lost_samples, self.rate),
                audio_ms=samples_to_ms(self.buffer.end, self.rate),
            )
        )

    # ---------------------------------------------------------- supervisor

    async def run(self, inbox: trio.MemoryReceiveChannel[AudioFrame]) -> None:
        attempt = 0
        ready: Conversation | None = None
        while True:
            conv: Conversation | None = None
            outcome: Conversation | str | None = None
            try:
                conv = ready or await self.open(inbox, attempt)
                ready = None
                with conv.pump_scope:
                    outcome = await self.pump(conv, inbox)
                if conv.error is not None:
                    raise conv.error
            except StenoError as raised:
                ready = None
                exc = raised
                if conv is not None:
                    # The conversation's own first failure is the cause; what the pump hit
                    # afterwards (a send on the closing socket) is a consequence.
                    exc = conv.error or raised
                    conv.die(exc)  # close its connection now; it is not coming back
                    await self.closed(conv, exc)
                    if self.healthy(conv):
                        attempt = 0
                attempt += 1
                if await self.recover(exc, attempt, inbox):
                    continue
                return
            assert conv is not None
            await self.closed(conv, None)
            if isinstance(outcome, Conversation):
                await self.emit(Rotated(conv.task_id, outcome.task_id, outcome.offset))
                attempt, ready = 0, outcome
                continue
            if outcome == "idle" and await self.await_input(inbox):
                attempt = 0
                continue
            if outcome == "utterance":
                attempt = 0
                continue
            return

    def healthy(self, conv: Conversation) -> bool:
        started = conv.started_t
        return (
            started is not None
            and trio.current_time() - started >= self.config.policy.healthy_after_s
        )

    async def recover(
        self, exc: StenoError, attempt: int, inbox: trio.MemoryReceiveChannel[AudioFrame]
    ) -> bool:
        """Decide on a failure; True after a backoff when another task should be tried."""
        category = classify(exc)
        if category.is_permanent:
            await self.fail(exc, permanent=True, inbox=inbox)
            return False
        delay = next_delay(self.config.policy, attempt, self.rng)
        if delay is None or (self.drain is not None and self.drain.is_set()):
            await self.fail(exc, permanent=False, inbox=inbox)
            return False
        self.reconnects += 1
        cause = f"{category.value}: {exc}"
        log.warning("session.reconnecting", attempt=attempt, delay_s=round(delay, 3), cause=cause)
        await self.emit(Reconnecting(attempt, delay, cause))
        with trio.move_on_after(delay):
            await self.absorb_all(inbox)
            await trio.sleep_forever()  # the backoff lasts its whole delay
        span = self.buffer.skip_lost()
        if span is not None:
            # One outage, one gap: extend the pending overflow; it is reported when
            # the stream resumes or gives up.
            start = self.overflow[0] if self.overflow else span[0]
            self.overflow = (start, span[1])
        return True

    async def report_overflow(self) -> None:
        if self.overflow is not None:
            start, end = self.overflow
            self.overflow = None
            await self.gap(start, end, "replay-overflow")

    async def fail(
        self, exc: StenoError, *, permanent: bool, inbox: trio.MemoryReceiveChannel[AudioFrame]
    ) -> None:
        """Give up: report once, then drain and account for every unrecognized sample."""
        self.failed = permanent or not isinstance(exc, FinishTimeout)
        kind = _kind(exc)
        log.error("session.failed", kind=kind, error=str(exc), permanent=permanent)
        await self.report_overflow()
        await self.emit(StreamError(kind, str(exc), permanent=permanent))
        start = self.buffer.commit_point
        await self.absorb_all(inbox)
        reason = (
            "finish-deadline"
            if isinstance(exc, FinishTimeout)
            else ("permanent-error" if permanent else "connection-lost")
        )
        await self.gap(start, self.buffer.end, reason)

    async def closed(self, conv: Conversation, exc: StenoError | None) -> None:
        if not conv.started.is_set() or conv.retired:
            return
        reason = conv.close_reason if exc is None or conv.close_reason != "closed" else _kind(exc)
        await self.emit(SessionClosed(conv.task_id, reason))

    # ------------------------------------------------------- conversations

    async def open(
        self, inbox: trio.MemoryReceiveChannel[AudioFrame], attempt: int
    ) -> Conversation:
        """Start a task at the commit point, buffering input meanwhile."""
        conv = self.conversation(self.buffer.commit_point, attempt)
        with unwrap_single_group():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.absorb_all, inbox)
                await self.limiter.acquire(self.spec.family)
                assert self.nursery is not None
                await self.nursery.start(conv.run)
                nursery.cancel_scope.cancel()
        await self.opened(conv)
        return conv

    def conversation(self, offset: int, attempt: int) -> Conversation:
        self.tasks += 1
        kind = RealtimeConversation if self.spec.protocol == "realtime" else InferenceConversation
        return kind(
            config=self.config,
            task_id=uuid.uuid4().hex,
            offset=offset,
            rate=self.rate,
            parameters=self.parameters,
            on_result=self.on_result,
            dial=self.dial,
            attempt=attempt,
        )

    async def opened(self, conv: Conversation) -> None:
        await self.report_overflow()
        await self.emit(SessionOpened(conv.task_id, conv.offset, attempt=conv.attempt))

    async def prepare_next(self) -> None:
        """Open the next task in the background for a make-before-break rotation."""
        conv = self.conversation(self.buffer.commit_point, 0)
        try:
            await self.limiter.acquire(self.spec.family)
            assert self.nursery is not None
            with unwrap_single_group():
                await self.nursery.start(conv.run)
        except StenoError as exc:
            log.warning("session.rotation_open_failed", error=str(exc))
            self.preparing = False  # try again on a later frame
            return
        self.next_conv = conv

    # ---------------------------------------------------------------- pump

    async def pump(
        self, conv: Conversation, inbox: trio.MemoryReceiveChannel[AudioFrame]
    ) -> Conversation | str:
        """Replay, then stream live.

        Returns ``"done"``, ``"idle"``, ``"utterance"`` (an utterance model's task
        ended: the rest goes to a new task) or the next conversation (a rotation).
        """
        await self.replay(conv, inbox)
        cfg = self.config
        while not self.input_done:
            if self.utterance_over(conv):
                await self.finish(conv)
                return "utterance"
            with trio.move_on_after(cfg.idle_timeout_s) as idle:
                try:
                    frame = await inbox.receive()
                except trio.EndOfChannel:
                    self.input_done = True
                    break
            if idle.cancelled_caught:
                if cfg.idle_policy == "finish":
                    await self.finish(conv)
                    return "idle"
                # A paused source is a pause in speech: rotate now if a task is due,
                # before the prepared one (which gets no padding) idles out.
                rotated = await self.maybe_rotate(conv)
                if rotated is not None:
                    return rotated
                await conv.send_padding(self.rate * cfg.frame_ms // 1000)
                continue
            self.buffer.append(frame)
            if frame.start > conv.sent_until:  # the source skipped time (Stream.skip)
                conv.clock.skip_to(frame.start)
            await conv.send_audio(frame.pcm, frame.end)
            rotated = await self.maybe_rotate(conv)
            if rotated is not None:
                return rotated
        await self.replay(conv, inbox)
        await self.finish(conv)
        # An utterance model may have ignored audio after its sentence end: go on.
        more = self.spec.utterance and self.buffer.commit_point < self.buffer.end
        return "utterance" if more else "done"

    def utterance_over(self, conv: Conversation) -> bool:
        """An utterance model's task must take no more audio (its sentence ended, or its cap)."""
        return conv.utterance_done or (
            self.max_task_samples is not None and conv.clock.task_samples >= self.max_task_samples
        )

    async def replay(
        self, conv: Conversation, inbox: trio.MemoryReceiveChannel[AudioFrame]
    ) -> None:
        """Send the buffer from the task's position to its end, paced at ``replay_speed``."""
        t0 = trio.current_time()
        sent = 0
        while conv.sent_until < self.buffer.end and not self.utterance_over(conv):
            chunk = bytearray()
            end = conv.sent_until
            for frame in self.buffer.frames_from(conv.sent_until):
                if frame.start > end:  # a hole the source skipped: jump the task's clock
                    if chunk:
                        break  # send what precedes it first
                    conv.clock.skip_to(frame.start)
                    end = frame.start
                if len(chunk) + len(frame.pcm) > _REPLAY_FRAME_BYTES and chunk:
                    break
                skip = max(0, end - frame.start) * 2
                chunk += frame.pcm[skip:]
                end = frame.end
            if not chunk:
                break
            await conv.send_audio(bytes(chunk), end)
            sent += len(chunk) // 2
            await trio.sleep_until(t0 + sent / self.rate / self.config.replay_speed)
            self.absorb_ready(inbox)

    async def finish(self, conv: Conversation) -> None:
        await conv.finish()
        # task-finished: everything sent is final; except that an utterance model
        # ignores the audio after its sentence end, which the next task gets.
        if not conv.utterance_done or self.buffer.commit_point <= conv.offset:
            self.buffer.commit(conv.sent_until)
        await self.emit(
            TaskMetrics(
                conv.task_id,
                conv.task_id,
                _delay_ms(conv.first_audio_t, conv.first_text_t),
                _delay_ms(conv.finish_sent_t, conv.finished_t),
                samples_to_ms(conv.sent_until - conv.offset, self.rate),
                conv.finals,
            )
        )
        conv.release.set()

    async def maybe_rotate(self, conv: Conversation) -> Conversation | None:
        cfg = self.config
        if cfg.max_task_age_s is None or conv.started_t is None:
            return None
        age = trio.current_time() - conv.started_t
        if not self.preparing and age >= cfg.max_task_age_s - cfg.rotation_lead_s:
            self.preparing = True
            assert self.nursery is not None
            self.nursery.start_soon(self.prepare_next)
        nxt = self.next_conv
        if nxt is None or age < cfg.max_task_age_s:
            return None
        if nxt.dead.is_set():
            self.next_conv, self.preparing = None, False
            return None
        at_pause = not conv.pending_partial
        if not at_pause and age < cfg.max_task_age_s + cfg.rotation_grace_s:
            return None
        # Switch at the commit point: the new task replays from there.
        self.next_conv, self.preparing = None, False
        nxt.rebase(self.buffer.commit_point)
        conv.retired = True
        log.info("session.rotating", at_pause=at_pause, age_s=round(age, 1))
        await self.opened(nxt)
        await self.emit(SessionClosed(conv.task_id, "rotated"))
        assert self.nursery is not None
        self.nursery.start_soon(conv.finish_quietly)
        return nxt

    async def await_input(self, inbox: trio.MemoryReceiveChannel[AudioFrame]) -> bool:
        """After an idle finish: wait for the source to resume; False when it ended."""
        try:
            frame = await inbox.receive()
        except trio.EndOfChannel:
            self.input_done = True
            return False
        self.buffer.append(frame)
        return True

    # ----------------------------------------------------------- buffering

    async def absorb_all(self, inbox: trio.MemoryReceiveChannel[AudioFrame]) -> None:
        """Buffer input until it ends. Waiting on the source has no deadline of its own:
        callers bound it (a backoff, a handshake) where that matters."""
        if self.input_done:
            return
        async for frame in inbox:
            self.buffer.append(frame)
        self.input_done = True

    def absorb_ready(self, inbox: trio.MemoryReceiveChannel[AudioFrame]) -> None:
        """Buffer whatever input is already waiting (not a checkpoint)."""
        while not self.input_done:
            try:
                self.buffer.append(inbox.receive_nowait())
            except trio.WouldBlock:
                return
            except trio.EndOfChannel:
                self.input_done = True

    # ------------------------------------------------------------- results

    async def on_result(self, conv: Conversation, result: Result) -> None:
        if conv.retired:
            return
        match result:
            case Heard():
                await self.on_heard(conv, result)
            case Translated():
                await self.on_translated(conv, result)
            case VoiceOut(response_id, pcm, rate):
                await self.emit(TranslatedAudio(response_id, pcm, rate))

    async def on_heard(self, conv: Conversation, s: Heard) -> None:
        clock = conv.clock
        if s.text and conv.first_text_t is None:
            conv.first_text_t = trio.current_time()
        words = tuple(
            Word(clock.to_global(w.begin_ms), clock.to_global(w.end_ms), w.text, w.punctuation)
            for w in s.words
        )
        start = clock.to_global(s.begin_ms)
        if not s.final or s.end_ms is None:
            conv.pending_partial = bool(s.text)
            await self.emit(
                Partial(
                    self.next_sentence_id,
                    start,
                    s.text,
                    words,
                    rate=self.rate,
                    stash=s.stash,
                    pre_end=s.pre_end,
                )
            )
            return
        conv.pending_partial = False
        if self.spec.utterance:
            conv.utterance_done = True
        end = max(start, clock.to_global(s.end_ms))
        sentence_id = self.settle(conv, end, s.key)
        if sentence_id is None:
            return
        await self.emit(
            Final(sentence_id, start, end, s.text, words, rate=self.rate, task_id=conv.task_id)
        )

    def settle(self, conv: Conversation, end: int, key: str) -> int | None:
        """A sentence ended at global ``end``: commit it, return its id (None: a duplicate)."""
        if end <= self.buffer.commit_point and self.finals:
            log.info("session.duplicate_final_dropped", end=end)
            return None
        self.buffer.commit(end)
        conv.finals += 1
        self.finals += 1
        sentence_id, self.next_sentence_id = self.next_sentence_id, self.next_sentence_id + 1
        if key:
            ids = conv.sentence_ids
            ids[key] = sentence_id
            if len(ids) > _MAX_KEYS:
                del ids[next(iter(ids))]
        return sentence_id

    async def on_translated(self, conv: Conversation, tr: Translated) -> None:
        """A translation joins its source sentence by key; without source text it settles it."""
        clock = conv.clock
        start = clock.to_global(tr.begin_ms)
        end = max(start, clock.to_global(tr.end_ms)) if tr.end_ms is not None else None
        if tr.final and self.spec.utterance:
            conv.utterance_done = True
        sentence_id = conv.sentence_ids.get(tr.key) if tr.key else None
        if sentence_id is None:
            if not self.transcribes:
                conv.pending_partial = not tr.final and bool(tr.text)
                if tr.final:
                    sentence_id = self.settle(conv, end if end is not None else start, tr.key)
                    if sentence_id is None:
                        return
            elif not tr.key and tr.final:
                sentence_id = self.next_sentence_id - 1  # keyless: follows its final
        if sentence_id is None:
            sentence_id = self.next_sentence_id  # the sentence in progress
        await self.emit(
            Translation(
                tr.lang,
                sentence_id,
                start,
                end,
                tr.text,
                tr.final,
                rate=self.rate,
                stash=tr.stash,
            )
        )


def _kind(exc: StenoError) -> str:
    """A short, stable name for the failure, for StreamError.kind."""
    for kind, types in _KINDS:
        if isinstance(exc, types):
            return kind
    return classify(exc).value


_KINDS: tuple[tuple[str, type[StenoError] | tuple[type[StenoError], ...]], ...] = (
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
