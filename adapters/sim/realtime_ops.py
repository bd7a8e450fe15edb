"""The work a realtime connection's reader hands its segment worker, and the queue between them.

The reader decodes, runs the VAD and checks requests at once; everything that
produces stream events (speech, ASR, responses, acks of manual turns,
``session.finished``) becomes one of the ops below, queued in order, so the
worker sends those events in the order the requests and the audio came. The
queue never blocks the reader: it is bounded in audio bytes and refuses
instead (the connection then fails, as the inference endpoint's
``AudioQueue`` does).
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import trio

__all__ = ["Audio", "Clear", "Finish", "Op", "OpQueue", "Start", "Stop", "Turn"]


class Start(NamedTuple):
    """VAD: speech started; ``pcm`` is the segment's first audio (look-back included)."""

    item_id: str
    start_ms: int
    sample_rate: int
    pcm: bytes


class Audio(NamedTuple):
    """VAD: more audio of the open segment."""

    pcm: bytes


class Stop(NamedTuple):
    """VAD: the open segment ended."""

    item_id: str
    end_ms: int


class Turn(NamedTuple):
    """Manual mode: a committed buffer, recognized and translated as one segment.

    ``ack``: answer ``input_audio_buffer.committed`` (False for the implicit
    commit of a buffer left at ``session.finish``).
    """

    item_id: str
    previous_item_id: str | None
    sample_rate: int
    pcm: bytes
    ack: bool = True


class Clear(NamedTuple):
    """Answer ``input_audio_buffer.cleared`` (the reader already dropped the audio)."""


class Finish(NamedTuple):
    """``session.finish``: everything before it is done; send ``session.finished``."""


Op = Start | Audio | Stop | Turn | Clear | Finish


class OpQueue:
    """Ops waiting for the worker; bounded in audio bytes, never blocks the producer."""

    def __init__(self, limit_bytes: int) -> None:
        self._ops: deque[Op] = deque()
        self._bytes = 0
        self._limit = limit_bytes
        self._lot = trio.lowlevel.ParkingLot()
        self.busy = False
        """The worker is handling an op it took (set by :meth:`get`, cleared by :meth:`done`)."""

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing in hand."""
        return not self._ops and not self.busy

    def put_nowait(self, op: Op) -> bool:
        """Queue ``op``; False if its audio would exceed the bound. Not a checkpoint."""
        size = len(getattr(op, "pcm", b""))
        if size and self._bytes + size > self._limit:
            return False
        self._ops.append(op)
        self._bytes += size
        self._lot.unpark_all()
        return True

    async def get(self) -> Op:
        """Wait for the next op (the worker then counts as busy until :meth:`done`)."""
        if self._ops:
            await trio.lowlevel.checkpoint()
        while not self._ops:
            await self._lot.park()
        op = self._ops.popleft()
        self._bytes -= len(getattr(op, "pcm", b""))
        self.busy = True
        return op

    def done(self) -> None:
        """The op taken last is handled. Not a checkpoint."""
        self.busy = False
