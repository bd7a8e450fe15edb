"""The session's input side: the inbox, the replay buffer and the commit point.

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

**Two lanes in.** With an :class:`~engine.actors._inlet.Inbox`, :meth:`next_frame`
arms the inbox's synchronous lane while it waits on an empty queue: the pump's
taker then sends each frame inside the producer's ``send`` and records it here
(:meth:`took_live`), and the wait goes on, with no timer per frame: the idle
deadline is checked against the newest frame's time when the wait's single
deadline passes. Every live frame's send lag (handed to ``send`` -> taken by the
transport) is counted in :attr:`Feed.send_lag`, whichever lane carried it.

**Catching up.** A pump that finds a second frame queued behind the one it got is
behind: :func:`coalesce` takes the queued frames too (up to ``COALESCE_MS``) and
:func:`message_runs` cuts them into contiguous runs, each sent as one message.
Frames stay whole in the buffer, so replay and commits do not change.
(``_coalesce.py``; re-exported here.)

**Judged when asked.** :attr:`Feed.speech` (``_speech.py``) judges frames silent
or not; one the pump's step took without judging it (the stall watch did not
need to know) is judged only when the end of the newest sound is next needed.

Channels: reads the inbox (never closes it: the session's ``run`` does).

Cancellation: every wait here is a checkpoint; callers bound the waits that need
a deadline (a handshake, a backoff); :meth:`next_frame` has the idle deadline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

import trio

from engine.timeline import ReplayBuffer

from ._coalesce import coalesce as coalesce
from ._coalesce import message_runs as message_runs
from ._inlet import Inbox
from ._lag import LagHistogram
from ._silence import PRE_ROLL_S, is_silent
from ._speech import SpeechEnd

if TYPE_CHECKING:
    from engine.events import AudioFrame

    from ._inlet import Taker

__all__ = [
    "COALESCE_MS",
    "REPLAY_FRAME_BYTES",
    "WOKEN",
    "Feed",
    "coalesce",
    "message_runs",
    "silent_tail",
]

WOKEN: Final = "woken"
""":meth:`Feed.next_frame`'s answer when the taker took frames and left the pump work."""

REPLAY_FRAME_BYTES: Final = 16000
"""The service's recommended maximum frame size: the replay's chunk."""

COALESCE_MS: Final = 200
"""The most audio one live message carries when the pump catches up (:meth:`Feed.coalesce`):
twice the service's recommended 100 ms, well inside its 1–16 KB range."""

_MAX_SKIPPED: Final = 64
"""Separate skipped spans held until reported (beyond it, the oldest two merge)."""


def _add_span(spans: list[tuple[int, int]], start: int, end: int) -> None:
    """Add a skipped span (joined to the last when they touch; bounded: the oldest two merge)."""
    if spans and spans[-1][1] == start:
        spans[-1] = (spans[-1][0], end)
        return
    spans.append((start, end))
    if len(spans) > _MAX_SKIPPED:
        (a, _), (_, b) = spans[0], spans[1]
        spans[0:2] = [(a, b)]


def silent_tail(buffer: ReplayBuffer, point: int, speech_end: int, rate: int) -> bool:
    """True when the sound after ``point`` is only the silent tail of one voiced frame.

    Frames are judged whole; most finals end inside their last voiced frame, whose
    tail then counted as sound, and no pause after them was ever committed (held
    whole, up to the buffer's bound). Judged alone, a silent tail holds no words.
    """
    frame = next(buffer.frames_from(point), None)
    if frame is None or not frame.start < point < frame.end == speech_end:
        return False  # more than a tail: sound no final covers
    return is_silent(frame.pcm[(point - frame.start) * 2 :], rate)


def _sound_after_commit(feed: Feed) -> bool:
    """Sound after the commit point that no final covers (:meth:`Feed.commit_silence`).

    A :func:`silent_tail` is not: the newest sound then ends at the commit point. It
    is judged once per commit point (a loud one is not judged again every frame).
    """
    point = feed.buffer.commit_point
    speech_end = feed.speech.end
    if speech_end > point and feed._tail_judged != point:
        feed._tail_judged = point
        if silent_tail(feed.buffer, point, speech_end, feed.rate):
            feed.speech.ended_at(point)
            speech_end = point
    return speech_end > point


class Feed:
    """The inbox, the replay buffer and the pending overflow span."""

    def __init__(
        self,
        inbox: Inbox | trio.MemoryReceiveChannel[AudioFrame],
        max_samples: int,
        rate: int,
    ) -> None:
        self._inbox = inbox
        self._lane = inbox if isinstance(inbox, Inbox) else None  # a plain channel: no fast lane
        self.send_lag = LagHistogram()
        self.fast_frames = 0  # live frames the synchronous lane sent
        self.frames_coalesced = 0  # live frames sent joined with others in one message
        self._last_input_t = 0.0  # when the newest frame came (trio time)
        self._arrived_t: float | None = None  # when the frame last received was handed over
        self.buffer = ReplayBuffer(max_samples)
        self.rate = rate
        self.input_done = False
        self._overflow: tuple[int, int] | None = None  # replay overflow not yet reported
        # no task open since: the start (what drops before the first task is a gap too),
        self.outage_since: float | None = 0.0  # or a failure after one was; None: one is
        self._pre_roll = int(PRE_ROLL_S * rate)
        self.speech = SpeechEnd(rate)  # the end of the newest frame not silent; judging
        self._tail_judged = 0  # the commit point whose tail was judged last
        self.sent_high = 0  # global end of the furthest audio any task was sent
        self._skipped: list[tuple[int, int]] = []  # committed silence no task got, unreported

    def _append(self, frame: AudioFrame) -> None:
        self.buffer.append(frame)
        self.speech.buffered(frame)

    def _received(self, frame: AudioFrame) -> AudioFrame:
        """Buffer a frame from the queue (not a checkpoint; no clock: sync callers too)."""
        if self._lane is not None:
            self._arrived_t = self._lane.arrived_t
        else:  # a plain channel: the producer's stamp, if it set one
            self._arrived_t = frame.t or None
        self._append(frame)
        return frame

    def could_hold_words(self, start: int) -> bool:
        """Audio from global ``start`` on may hold words (it begins before the last sound)."""
        return start < self.speech.end

    def took_live(
        self,
        frame: AudioFrame,
        silent: bool | None,
        arrived: float,
        *,
        sentence_open: bool | None = None,
    ) -> None:
        """The synchronous lane sent ``frame``: buffer and count it.

        ``silent`` as ``speech.judge`` judged it, or None: not judged (``_speech.py``).
        With ``sentence_open`` (the pump's step), then :meth:`commit_silence` as
        ``commit_silence(sentence_open=sentence_open)`` would.
        """
        # _append and mark_sent, inlined: this runs for every frame of every stream.
        now = trio.current_time()
        self._last_input_t = now
        buffer = self.buffer
        buffer.append(frame)
        end = buffer.end
        if silent is None:
            self.speech.later(frame)
        elif not silent:
            self.speech.spoke(end)
        if end > self.sent_high:
            self.sent_high = end
        self.send_lag.add(now - arrived)
        self.fast_frames += 1
        # commit_silence's first test, inlined: it ends there on most frames.
        if sentence_open is False and end - self._pre_roll > buffer.commit_point:
            self.commit_silence()

    def sent_live(self, arrivals: list[float] | None = None) -> None:
        """The awaited lane sent what next_frame (or coalesce: ``arrivals``) gave: count the lag."""
        now = trio.current_time()
        if arrivals:
            for arrived in arrivals:
                self.send_lag.add(now - arrived)
        elif self._arrived_t is not None:
            self.send_lag.add(now - self._arrived_t)

    def receive_queued(self) -> AudioFrame | None:
        """The next queued frame, buffered, or None if none is (not a checkpoint)."""
        if self.input_done:
            return None
        try:
            return self._received(self._inbox.receive_nowait())
        except trio.WouldBlock:
            return None
        except trio.EndOfChannel:
            self.input_done = True
            return None

    @property
    def has_skipped(self) -> bool:
        return bool(self._skipped)

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
        if sentence_open or point <= buffer.commit_point or _sound_after_commit(self):
            return
        unsent = max(buffer.commit_point, self.sent_high)
        if unsent < point:  # else every task was sent it (live: the common case)
            for frame in buffer.frames_from(unsent):
                start, end = max(frame.start, unsent), min(frame.end, point)
                if start >= point:
                    break
                _add_span(self._skipped, start, end)
        buffer.commit(point)

    def take_skipped(self) -> list[tuple[int, int]]:
        """The committed silence spans no task was sent, once (for ``AudioSkipped``)."""
        spans, self._skipped = self._skipped, []
        return spans

    async def next_frame(
        self, idle_s: float, taker: Taker | None = None
    ) -> AudioFrame | Literal["woken"] | None:
        """The next queued frame, buffered; None after ``idle_s`` s with no frame from the source.

        While it waits on an empty queue, ``taker`` (if the inbox has a lane) takes
        frames synchronously; it returns :data:`WOKEN` when the taker woke it.

        Raises:
            trio.EndOfChannel: the input ended (:attr:`input_done` is then set).
        """
        inbox, lane = self._inbox, self._lane
        since: float | None = None
        while True:
            # A queued frame first, always: the lane is armed only on an empty queue,
            # with no checkpoint between this look and the park (the order of frames).
            try:
                return self._received(inbox.receive_nowait())
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                self.input_done = True
                raise
            now = trio.current_time()
            if since is None:
                since = now
            elif lane is not None and lane.woken:
                return WOKEN
            elif now >= max(since, self._last_input_t) + idle_s:
                return None
            # One deadline per wait, not per frame: frames the taker takes move the
            # newest frame's time, and the deadline is re-checked when it passes.
            with trio.CancelScope(deadline=max(since, self._last_input_t) + idle_s) as scope:
                if lane is not None and taker is not None:
                    lane.arm(taker, scope)
                try:
                    frame = await inbox.receive()
                except trio.EndOfChannel:
                    self.input_done = True
                    raise
                finally:
                    if lane is not None:
                        lane.disarm()
                self._last_input_t = trio.current_time()
                return self._received(frame)

    def wake(self) -> None:
        """From the taker: end the pump's wait with :data:`WOKEN` (not a checkpoint)."""
        if self._lane is not None:
            self._lane.wake()

    async def await_input(self) -> bool:
        """After an idle finish: wait for the source to resume; False when it ended."""
        try:
            frame = await self._inbox.receive()
        except trio.EndOfChannel:
            self.input_done = True
            return False
        self._received(frame)
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
            self._received(frame)
            if commit_silence:
                self.commit_silence()
        self.input_done = True

    def absorb_ready(self) -> None:
        """Buffer whatever input is already waiting (not a checkpoint)."""
        while self.receive_queued() is not None:
            pass

    def give_up_lost(self) -> None:
        """After a backoff: what overflow dropped is lost; extend the pending span with it."""
        span = self.buffer.skip_lost()
        if span is not None:
            # One outage, one gap: reported when the stream resumes or gives up.
            start = self._overflow[0] if self._overflow else span[0]
            self._overflow = (start, span[1])

    def outage_began(self, now: float) -> None:
        """A task failed: no task is open until :meth:`outage_ended` (idempotent; a stream
        begins this way, before its first task)."""
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
