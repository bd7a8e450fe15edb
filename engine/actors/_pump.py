"""Serving one task: the pump sends audio up, the consumer maps results down.

:meth:`Pump.serve` runs two tasks for as long as the stream uses a task:

* the **pump** replays the buffer from the task's position (faster than real
  time, paced), then streams live frames, handles the idle timer and rotation,
  and at the end of input finishes the task (``finish-task``, then everything
  the task said until ``task-finished``; then everything sent is committed).
  While it waits for the next live frame, its synchronous step (:meth:`Pump._take`)
  sends each frame inside the producer's ``send`` when nothing needs to wait
  (``_inlet.py``): such a frame costs no task switch of the session's. When it
  finds frames queued (it is behind: the fast lane was refused), it sends them
  together, contiguous runs of up to :data:`~engine.actors._feed.COALESCE_MS` as
  one message each (``frames_coalesced``); the replay buffer keeps them as frames;
* the **consumer** maps each result onto the global timeline
  (``_transcript.py``), moves the commit point, and emits the event. While it
  waits on an empty results queue with room in the session's outbox, its
  synchronous step (:meth:`Pump._take_result`) does all of that inside the
  connection's reader (``adapters/dashscope/_results.py``): such a result costs
  no task switch of the session's. Once a result is queued (the outbox was
  full), later ones queue behind it until the consumer has emitted them, so
  the order is kept. When the channel ends with the connection failed, it
  stops the pump.

Channels: pulls the connection's ``results`` (and arms their lane); emits through
the session's :class:`~engine.actors._report.Report`.

Cancellation: cancelling ``serve`` stops both; the connection is not touched
(its owner is the session's nursery; the supervisor aborts it).

Error handling: ``serve`` raises the connection's failure once every result
that preceded it was emitted, or the pump's own failure (a send that stalled).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

import structlog
import trio

from engine._util import unwrap_single_group
from engine.errors import StenoError
from engine.events import AudioFrame
from engine.results import Heard

from ._feed import COALESCE_MS, REPLAY_FRAME_BYTES, coalesce, message_runs
from ._replay import replay

if TYPE_CHECKING:
    from adapters.dashscope.models import ModelSpec
    from engine.config import SessionConfig
    from engine.events import Event
    from engine.results import Result

    from ._feed import Feed
    from ._report import Report
    from ._rotation import Rotation
    from ._task import Task
    from ._transcript import Transcript

__all__ = ["Outcome", "Pump"]

log = structlog.get_logger("steno.session")

Outcome = Literal["done", "idle", "utterance"]
"""How a served task ended without failing (or the next task, after a rotation)."""


class Pump:
    """Serves one task at a time; see the module docstring."""

    def __init__(
        self,
        *,
        config: SessionConfig,
        spec: ModelSpec,
        feed: Feed,
        report: Report,
        transcript: Transcript,
        rotation: Rotation,
    ) -> None:
        self._config = config
        self._utterance = spec.utterance
        cap = spec.max_task_audio_s
        # An utterance model's cap, less a margin for finish-task to arrive in time.
        self._max_task_samples = None if cap is None else int((cap - 2.0) * spec.sample_rate)
        # Whether utterance_over / Rotation.due can ever be true: the synchronous step
        # asks them for every frame only when they can (#11).
        self._limited = spec.utterance or cap is not None
        self._rotates = config.max_task_age_s is not None
        self._rate = spec.sample_rate
        # The most audio one message carries when the pump catches up (samples).
        self._coalesce = min(spec.sample_rate * COALESCE_MS // 1000, REPLAY_FRAME_BYTES // 2)
        self._feed = feed
        self._report = report
        self._transcript = transcript
        self._rotation = rotation

    async def serve(self, task: Task) -> Task | Outcome:
        """Pump ``task`` while its results are consumed; see the module docstring."""
        pump_scope = trio.CancelScope()
        outcome: Task | Outcome | None = None
        with unwrap_single_group():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._consume, task, pump_scope)
                with pump_scope:
                    try:
                        outcome = await self._pump(task)
                    except StenoError as exc:
                        # A failed or stalled send is the connection's death too: record
                        # it there (unless its own failure came first) and end like any
                        # death, once the consumer has emitted what preceded it. Raising
                        # here while the consumer waits would cancel it from inside the
                        # nursery's exit, where trio's Cancelled closes a reference cycle
                        # (group -> Cancelled -> its frames -> the nursery's frame ->
                        # group) that keeps this task, its connection and socket (#17).
                        task.link.abort(exc)
                        if task.link.error is None:
                            raise  # the task had finished: nothing to wait for
                if outcome is None:  # the connection failed under the pump
                    await task.consumed.wait()
                    assert task.link.error is not None
                    raise task.link.error
                nursery.cancel_scope.cancel()
        return outcome

    async def _consume(self, task: Task, pump_scope: trio.CancelScope) -> None:
        link = task.link
        taker = functools.partial(self._take_result, task)
        while True:
            try:
                result = await link.results.receive_or_take(taker)
            except trio.EndOfChannel:
                break
            if task.retired:
                continue
            event = self._map(task, result)
            if event is not None:
                await self._report.emit(event)
        await link.ended.wait()  # the channel closes first; the owner marks the end at once
        if link.error is not None:
            pump_scope.cancel()
        task.consumed.set()

    def _take_result(self, task: Task, result: Result) -> bool:
        """The consumer's synchronous step (the results' taker): one result, no checkpoint.

        Runs in the connection's reader while the consumer is parked on an empty
        queue: what one turn of :meth:`_consume` does, when the session's outbox
        has room for the event. False, with nothing changed, when it has none.
        """
        if task.retired:
            return True
        report = self._report
        if not report.has_room():
            return False
        event = self._map(task, result)
        if event is not None:
            report.emit_nowait(event)
        return True

    def _map(self, task: Task, result: Result) -> Event | None:
        """One result onto the stream (either lane): the event, the commit point, duplicates."""
        if isinstance(result, Heard) and result.text and task.results.first_text_t is None:
            task.results.first_text_t = trio.current_time()
        buffer = self._feed.buffer
        commit_point = buffer.commit_point
        mapped = self._transcript.map(task.results, task.clock, result, commit_point, task.task_id)
        if mapped.duplicate:
            log.info("session.duplicate_final_dropped", commit_point=commit_point)
        if mapped.commit is not None:
            buffer.commit(mapped.commit)
        return mapped.event

    async def _pump(self, task: Task) -> Task | Outcome:
        """Replay, then stream live; see :data:`Outcome`."""
        feed, cfg, rotation = self._feed, self._config, self._rotation
        await replay(feed, task, cfg.replay_speed, self.utterance_over)
        taker = functools.partial(self._take, task)
        while not feed.input_done:
            if self.utterance_over(task):
                await self.finish(task)
                return "utterance"
            try:
                frame = await feed.next_frame(cfg.idle_timeout_s, taker)
            except trio.EndOfChannel:
                break
            if frame is None:
                decision = await rotation.on_idle(task)
                if decision == "finish":
                    await self.finish(task)
                    return "idle"
                if decision != "pad":
                    return decision
                await task.send_padding(self._rate * cfg.frame_ms // 1000)
                continue
            if isinstance(frame, AudioFrame):  # else WOKEN: the taker sent frames, left us work
                # Behind (a second frame is queued): catch up with fewer, larger messages.
                frames, arrivals = coalesce(feed, frame, self._coalesce)
                for run in message_runs(frames, self._coalesce):
                    await self._send_run(task, run)
                feed.sent_live(arrivals)
                feed.commit_silence(sentence_open=task.results.pending_partial)
            await self._report.skipped(feed.take_skipped())
            rotated = await rotation.maybe_rotate(task)
            if rotated is not None:
                return rotated
        await replay(feed, task, cfg.replay_speed, self.utterance_over)
        await self.finish(task)
        # An utterance model may have ignored audio after its sentence end: go on.
        more = self._utterance and feed.buffer.commit_point < feed.buffer.end
        return "utterance" if more else "done"

    async def _send_run(self, task: Task, run: list[AudioFrame]) -> None:
        """Send contiguous buffered frames as one message on the awaited lane (counted when
        more than one: ``frames_coalesced``)."""
        feed, first, end = self._feed, run[0], run[-1].end
        if first.start > task.sent_until:  # the source skipped time (Stream.skip)
            task.skip_to(first.start)
        voiced = feed.could_hold_words(first.start)
        if len(run) == 1:
            await task.send_audio(first.pcm, end, voiced=voiced)
        else:
            await task.send_audio(b"".join([f.pcm for f in run]), end, voiced=voiced)
            task.frames_coalesced += len(run)
            feed.frames_coalesced += len(run)
        feed.mark_sent(end)

    def _take(self, task: Task, frame: AudioFrame, arrived: float) -> bool:
        """The synchronous pump step (the inbox's taker): one live frame, no checkpoint.

        Does what one turn of :meth:`_pump`'s loop does for a frame, when nothing of
        it must await: the frame goes on the wire through the connection's fast
        lane, into the replay buffer, and silence is committed. The frame is judged
        silent or not only when that matters now (the stall watch is idle); else the
        feed judges it when asked (``Feed.speech``). Work that must
        await (skipped spans to report, a rotation, an utterance's end) wakes the
        pump. False, with nothing changed, when the frame must take the awaited
        lane (the task cannot take audio now, or the transport would wait).
        """
        limited = self._limited
        if limited and self.utterance_over(task):  # the link checks its own lane
            return False
        feed = self._feed
        silent: bool | None
        if task.link.voicing_matters:
            silent, voiced = feed.speech.judge(frame)
        else:  # the stall watch runs either way: the frame is judged if the feed is asked
            silent, voiced = None, True
        if not task.try_send_audio(frame, voiced=voiced, now=arrived):
            return False
        feed.took_live(frame, silent, arrived, sentence_open=task.results.pending_partial)
        if (
            feed.has_skipped
            or (self._rotates and self._rotation.due(task))
            or (limited and self.utterance_over(task))
        ):
            feed.wake()
        return True

    def utterance_over(self, task: Task) -> bool:
        """An utterance model's task must take no more audio (its sentence ended, or its cap)."""
        return task.results.utterance_done or (
            self._max_task_samples is not None and task.clock.task_samples >= self._max_task_samples
        )

    async def finish(self, task: Task) -> None:
        """Finish the task: its end under the finish deadline, then all its results."""
        await task.link.finish()
        # Wait for the consumer to emit what preceded task-finished: the channel is
        # closed by then, so this is bounded by what is buffered.
        await task.consumed.wait()
        buffer = self._feed.buffer
        # task-finished: everything sent is final; except that an utterance model
        # ignores the audio after its sentence end, which the next task gets.
        if not task.results.utterance_done or buffer.commit_point <= task.offset:
            buffer.commit(task.sent_until)
        await self._report.task_metrics(task)
        task.link.release()
