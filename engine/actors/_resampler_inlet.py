"""A producer's handle on the resampler stage (:class:`ResamplerInlet`).

The stage (:class:`engine.actors.resampler.Resampler`) runs in its producers'
tasks; each producer holds one of these handles, which has a memory channel's
producer API (``send``, ``clone``, ``close``, ``aclose``, ``statistics``,
``async with``) plus ``try_send``, the synchronous lane a producer driven by the
pacer uses. The stage ends once every handle is closed. The handle only forwards:
every rule (order, all-or-nothing, cancellation) is the stage's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Self, final

import msgspec
import trio

if TYPE_CHECKING:
    from types import TracebackType

    from engine.actors.resampler import Resampler
    from engine.messages import PcmBlock, RawBlock, Skip

__all__ = ["InletStatistics", "ResamplerInlet"]


@final
class ResamplerInlet:
    """A producer's handle on a :class:`Resampler` (the ``AudioOutbox`` protocol).

    Made by :meth:`Resampler.inlet` or :meth:`clone`; not constructed directly.
    """

    def __init__(self, stage: Resampler) -> None:
        self._stage: Resampler | None = stage
        self._stage_ref: Final = stage

    @property
    def taken_s(self) -> float:
        """Source seconds the stage has taken in (all its producers), skips included.

        Exact where a producer's own count is not: a send cancelled while it delivers
        its frames has still handed its block over.
        """
        return float(self._stage_ref.stats.input_s)

    def try_send(self, value: RawBlock | PcmBlock, /) -> bool:
        """Convert ``value`` and hand its frames over now, or take nothing.

        The synchronous twin of :meth:`send` for a producer the pacer drives (a
        step of :meth:`engine.pacer.Pacer.drive`): never waits, never a checkpoint.
        All or nothing: the block is taken only when every frame it completes can
        be taken now (on the session's fast lane, or within the room left in its
        queue) and no other producer is in the stage; otherwise nothing changed and
        the caller awaits :meth:`send` with the same block. A :class:`Skip` always
        goes through :meth:`send`.

        Returns:
            True when the block was taken and its frames handed over.

        Raises:
            trio.ClosedResourceError: this handle was closed.
            trio.BrokenResourceError: the stage has finished or the session is gone.
        """
        stage = self._stage
        if stage is None:
            raise trio.ClosedResourceError("this audio inlet was closed")
        return stage._try_send(value)

    def try_send_pcm16(self, pcm: bytes, /) -> bool:
        """:meth:`try_send` of mono int16 LE bytes at the stage's output rate (not a copy:
        ``bytes`` are immutable). A whole frame of it takes the stage's shortest path."""
        stage = self._stage
        if stage is None:
            raise trio.ClosedResourceError("this audio inlet was closed")
        return stage._try_send_pcm16(pcm)

    async def send(self, value: RawBlock | PcmBlock | Skip, /) -> None:
        """Convert ``value`` and send the frames it completes, in this task.

        Always a checkpoint (exactly one when no frame is sent; otherwise each
        frame's send). Blocks while the session is behind (the edge's backpressure).

        Cancellation:
            Cancelled before the stage takes ``value`` (waiting behind another
            sender): nothing happened. Cancelled while sending its frames: ``value``
            was taken, and the frames not yet delivered go first on the next send
            or at the end, so audio is never lost or reordered.

        Raises:
            trio.ClosedResourceError: this handle was closed.
            trio.BrokenResourceError: the stage has finished or the session is gone.
        """
        stage = self._stage
        if stage is None:
            raise trio.ClosedResourceError("this audio inlet was closed")
        await stage._send(value)

    def clone(self) -> ResamplerInlet:
        """Another handle on the same stage (the stage ends once all are closed)."""
        if self._stage is None:
            raise trio.ClosedResourceError("this audio inlet was closed")
        return self._stage.inlet()

    def close(self) -> None:
        """Close this handle; idempotent; not a checkpoint."""
        stage, self._stage = self._stage, None
        if stage is not None:
            stage._closed_one()

    async def aclose(self) -> None:
        """Close this handle; a checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()

    def statistics(self) -> InletStatistics:
        """Producers waiting on the stage (not a checkpoint)."""
        return InletStatistics(current_buffer_used=self._stage_ref.waiting())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class InletStatistics(msgspec.Struct, frozen=True):
    """Like a channel's statistics: ``current_buffer_used`` is senders queued."""

    current_buffer_used: int
