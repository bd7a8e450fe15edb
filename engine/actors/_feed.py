"""The session's input side: the replay buffer, the commit point, and the replay.

:class:`Feed` is the only reader of the session's inbox and the only writer of
its :class:`~engine.timeline.ReplayBuffer` apart from commits (which the result
consumer applies as finals settle). It buffers every frame first, so audio that
arrives during a handshake or a backoff is never dropped; the buffer holds
everything after the commit point, bounded, drop-oldest. An outage that outlasts
the buffer becomes one pending ``replay-overflow`` span (:meth:`give_up_lost`),
reported when the stream resumes or gives up.

**Silence is not loss.** Audio after the last final that is silent
(``_silence.py``) holds no words: :meth:`commit_silence` commits it, keeping a
short pre-roll, so a reconnect replays only what could hold words and an outage
during a silent stretch loses nothing. Silence that no task ever got that way is
reported as skipped (:meth:`take_skipped`, an ``AudioSkipped``), never as a gap.

Channels: reads the inbox (never closes it: the session's ``run`` does).

Cancellation: every wait here is a checkpoint; callers bound the waits that need
a deadline (a handshake, a backoff, the idle timer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

from engine.timeline import ReplayBuffer

from ._silence import PRE_ROLL_S, is_silent

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.events import AudioFrame

    from ._task import Task

__all__ = ["REPLAY_FRAME_BYTES", "Feed"]

REPLAY_FRAME_BYTES: Final = 16000
"""The service's recommended maximum frame size: the replay's chunk."""

_MAX_SKIPPED: Final = 64
"""Separate skipped spans held until reported (beyond it, the oldest two merge)."""


class Feed:
    """The inbox, the replay buffer and the pending overflow span."""

    def __init__(
        self, inbox: trio.MemoryReceiveChannel[AudioFrame], max_samples: int, rate: int
    ) -> None:
        self._inbox = inbox
        self.buffer = ReplayBuffer(max_samples)
        self.rate = rate
        self.input_done = False
        self._overflow: tuple[int, int] | None = None  # replay overflow not yet reported
        self.outage_since: float | None = None  # the first failure since a task was open
        self._pre_roll = int(PRE_ROLL_S * rate)
        self._speech_end = 0  # global end of the newest frame that was not silent
        self.sent_high = 0  # global end of the furthest audio any task was sent
        self._skipped: list[tuple[int, int]] = []  # committed silence no task got, unreported

    def _append(self, frame: AudioFrame) -> None:
        self.buffer.append(frame)
        if not is_silent(frame.pcm, self.rate):
            self._speech_end = frame.end

    def could_hold_words(self, start: int) -> bool:
        """Audio from global ``start`` on may hold words (it begins before the last sound)."""
        return start < self._speech_end

    def mark_sent(self, end: int) -> None:
        """A task was sent audio up to global ``end``."""
        self.sent_high = max(self.sent_high, end)

    def commit_silence(self, *, sentence_open: bool = False) -> None:
        """Commit the silence after the last final, up to a pre-roll before the newest audio.

        Nothing moves while a sentence is open or any audio after the commit point
        could hold words.
        """
        buffer = self.buffer
        point = buffer.end - self._pre_roll
        if sentence_open or self._speech_end > buffer.commit_point or point <= buffer.commit_point:
            return
        unsent = max(buffer.commit_point, self.sent_high)
        for frame in buffer.frames_from(unsent):
            start, end = max(frame.start, unsent), min(frame.end, point)
            if start >= point:
                break
            self._skip(start, end)
        buffer.commit(point)

    def _skip(self, start: int, end: int) -> None:
        spans = self._skipped
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
            return
        spans.append((start, end))
        if len(spans) > _MAX_SKIPPED:
            (a, _), (_, b) = spans[0], spans[1]
            spans[0:2] = [(a, b)]

    def take_skipped(self) -> list[tuple[int, int]]:
        """The committed silence spans no task was sent, once (for ``AudioSkipped``)."""
        spans, self._skipped = self._skipped, []
        return spans

    async def next_frame(self, idle_s: float) -> AudioFrame | None:
        """The next frame, buffered; None after ``idle_s`` s of silence from the source.

        Raises:
            trio.EndOfChannel: the input ended (:attr:`input_done` is then set).
        """
        with trio.move_on_after(idle_s):
            try:
                frame = await self._inbox.receive()
            except trio.EndOfChannel:
                self.input_done = True
                raise
            self._append(frame)
            return frame
        return None

    async def await_input(self) -> bool:
        """After an idle finish: wait for the source to resume; False when it ended."""
        try:
            frame = await self._inbox.receive()
        except trio.EndOfChannel:
            self.input_done = True
            return False
        self._append(frame)
        return True

    async def absorb_all(self, *, commit_silence: bool = False) -> None:
        """Buffer input until it ends (callers bound this: a backoff, a handshake).

        With ``commit_silence`` (an outage's backoff: no task is served), silence
        is committed as it comes, so a long outage in a silent stretch neither
        overflows the buffer nor replays the silence.
        """
        if self.input_done:
            return
        async for frame in self._inbox:
            self._append(frame)
            if commit_silence:
                self.commit_silence()
        self.input_done = True

    def absorb_ready(self) -> None:
        """Buffer whatever input is already waiting (not a checkpoint)."""
        while not self.input_done:
            try:
                self._append(self._inbox.receive_nowait())
            except trio.WouldBlock:
                return
            except trio.EndOfChannel:
                self.input_done = True

    def give_up_lost(self) -> None:
        """After a backoff: what overflow dropped is lost; extend the pending span with it."""
        span = self.buffer.skip_lost()
        if span is not None:
            # One outage, one gap: reported when the stream resumes or gives up.
            start = self._overflow[0] if self._overflow else span[0]
            self._overflow = (start, span[1])

    def outage_began(self, now: float) -> None:
        """A task failed: no task is open until :meth:`outage_ended` (idempotent)."""
        if self.outage_since is None:
            self.outage_since = now

    def outage_ended(self) -> bool:
        """A task is open again (or the stream gives up): what the buffer dropped meanwhile,
        the reopening handshake included, joins the pending span. True if an outage ended."""
        if self.outage_since is None:
            return False
        self.give_up_lost()
        self.outage_since = None
        return True

    def pending_lost(self) -> int:
        """Samples the outage has lost so far and not yet reported: the pending span and,
        while no task is open, what the buffer has dropped since it was last given up."""
        pending = self._overflow[1] - self._overflow[0] if self._overflow else 0
        if self.outage_since is not None:
            span = self.buffer.lost_span()
            pending += span[1] - span[0] if span else 0
        return pending

    def take_overflow(self) -> tuple[int, int] | None:
        """The pending overflow span, once."""
        span, self._overflow = self._overflow, None
        return span

    async def replay(self, task: Task, speed: float, over: Callable[[Task], bool]) -> None:
        """Send the buffer from the task's position to its end, paced at ``speed`` x real time.

        Stops early once ``over(task)`` (an utterance model's task takes no more).
        """
        t0 = trio.current_time()
        sent = 0
        while task.sent_until < self.buffer.end and not over(task):
            chunk = bytearray()
            end = task.sent_until
            for frame in self.buffer.frames_from(task.sent_until):
                if frame.start > end:  # a hole the source skipped: jump the task's clock
                    if chunk:
                        break  # send what precedes it first
                    task.skip_to(frame.start)
                    end = frame.start
                if len(chunk) + len(frame.pcm) > REPLAY_FRAME_BYTES and chunk:
                    break
                skip = max(0, end - frame.start) * 2
                chunk += frame.pcm[skip:]
                end = frame.end
            if not chunk:
                break
            chunk_start = end - len(chunk) // 2
            await task.send_audio(bytes(chunk), end, voiced=self.could_hold_words(chunk_start))
            self.mark_sent(end)
            sent += len(chunk) // 2
            await trio.sleep_until(t0 + sent / self.rate / speed)
            self.absorb_ready()
