"""One server task as the session sees it: a connection placed on the stream's timeline.

A :class:`Task` pairs an adapter connection (which knows task time only) with the
:class:`~engine.timeline.TaskClock` that maps task time onto the global timeline,
and keeps the per-task facts the result mapping needs (:class:`TaskResults`).

Owners: the pump writes :attr:`Task.sent_until` and the clock (through
:meth:`send_audio`, :meth:`try_send_audio`, :meth:`send_padding`, :meth:`skip_to`); the result mapping
(``_transcript.py``) writes :attr:`Task.results`; the rotation writes
:attr:`Task.retired`; the result consumer sets :attr:`Task.consumed`. Nothing here awaits anything but the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from engine.timeline import TaskClock

if TYPE_CHECKING:
    from adapters.dashscope.links import Link
    from engine.events import AudioFrame

__all__ = ["Task", "TaskResults"]


class TaskResults:
    """What the result mapping remembers of one task (its only writer)."""

    __slots__ = ("finals", "first_text_t", "pending_partial", "sentence_ids", "utterance_done")

    def __init__(self) -> None:
        self.finals = 0
        self.sentence_ids: dict[str, int] = {}  # result key -> the stream's sentence id
        self.utterance_done = False  # an utterance model's sentence ended: send no more
        self.pending_partial = False  # a sentence is open: not a pause in speech
        self.first_text_t: float | None = None


class Task:
    """A started (or starting) server task at global ``offset``."""

    def __init__(self, link: Link, offset: int, rate: int, attempt: int) -> None:
        self.link = link
        self.rate = rate
        self.attempt = attempt
        self.clock = TaskClock(offset, rate)
        self.sent_until = offset  # global end of the real audio sent
        self.results = TaskResults()
        self.retired = False  # after a rotation: its results are ignored
        self.frames_coalesced = 0  # live frames sent joined with others in one message
        self.consumed = trio.Event()  # set by the consumer: every result was emitted
        self._audio_waiter: tuple[int, trio.Event] | None = None

    @property
    def task_id(self) -> str:
        return self.link.task_id

    @property
    def offset(self) -> int:
        return self.clock.offset

    def rebase(self, offset: int) -> None:
        """Move a started task that has no audio yet to ``offset`` (a rotation's switch point)."""
        if self.clock.task_samples:
            raise ValueError("cannot rebase a task that has audio")
        self.clock = TaskClock(offset, self.rate)
        self.sent_until = offset

    def skip_to(self, sample: int) -> None:
        """The next audio starts at global ``sample``: the source skipped the span before it."""
        self.clock.skip_to(sample)

    def try_send_audio(self, frame: AudioFrame, *, voiced: bool, now: float | None = None) -> bool:
        """Send a live frame now if the connection's fast lane takes it (not a checkpoint).

        True: sent, as :meth:`skip_to` then :meth:`send_audio` would have (at trio
        time ``now``, if the caller read the clock). False: nothing changed; the
        caller awaits those instead.
        """
        pcm = frame.pcm
        if not self.link.try_send_audio(pcm, voiced=voiced, now=now):
            return False
        start, samples = frame.start, len(pcm) >> 1
        clock = self.clock
        if start > self.sent_until:  # the source skipped time (Stream.skip)
            clock.skip_to(start)
        # _sent, inlined (every frame of every stream; tests/engine/test_task.py holds
        # the two lanes' bookkeeping equal).
        clock.advance(samples)
        end = self.sent_until = start + samples
        waiter = self._audio_waiter
        if waiter is not None and end >= waiter[0]:
            waiter[1].set()
        return True

    async def send_audio(self, pcm: bytes, end: int, *, voiced: bool = True) -> None:
        """Send real audio whose global end is ``end`` (silence expects no answer)."""
        await self.link.send_audio(pcm, voiced=voiced)
        self._sent(pcm, end)

    def _sent(self, pcm: bytes, end: int) -> None:
        self.clock.advance(len(pcm) // 2)
        self.sent_until = end
        waiter = self._audio_waiter
        if waiter is not None and end >= waiter[0]:
            waiter[1].set()

    async def send_padding(self, samples: int) -> None:
        """Keep-alive silence that is not on the global timeline."""
        await self.link.send_padding(samples)
        self.clock.pad(samples)

    async def audio_reaches(self, sample: int) -> None:
        """Wait until the audio sent reaches global ``sample`` (no deadline: the pump's)."""
        if self.sent_until >= sample and self.link.first_audio_t is not None:
            return
        event = trio.Event()
        self._audio_waiter = (max(sample, self.offset + 1), event)
        try:
            await event.wait()
        finally:
            self._audio_waiter = None
