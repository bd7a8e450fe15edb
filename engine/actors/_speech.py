"""Where the newest sound ends, with frames judged when asked rather than when they come.

:class:`SpeechEnd` is the feed's memory of the global end of its newest frame
that is not silent (``_silence.py``). The pump's synchronous step judges a frame
only when the connection's stall watch needs to know now
(``SendPath.voicing_matters``); any other frame is handed over unjudged and kept
here (bounded: :data:`MAX_UNJUDGED`) until :attr:`SpeechEnd.end` is read. Only
the newest loud frame counts, so they are judged newest first and the judging
stops at the first loud one: while someone speaks, one judgement settles them
all (#11). Every answer equals the one of judging each frame on arrival
(``tests/engine/test_feed_judging.py``). Pure: no trio, no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._silence import is_silent

if TYPE_CHECKING:
    from engine.events import AudioFrame

__all__ = ["MAX_UNJUDGED", "SpeechEnd"]

MAX_UNJUDGED: Final = 10
"""Frames kept unjudged before they are judged anyway: a bound on the list, and on
the work one read of :attr:`SpeechEnd.end` may cost."""


class SpeechEnd:
    """The global end of the newest frame that is not silent (0: none yet)."""

    __slots__ = ("_end", "_judged", "_rate", "_unjudged")

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._end = 0
        self._unjudged: list[AudioFrame] = []  # oldest first
        self._judged: tuple[AudioFrame, bool] | None = None  # the last frame judge() judged

    def judge(self, frame: AudioFrame) -> tuple[bool, bool]:
        """``(silent, voiced)`` of a frame not yet buffered, as if it were (no effect on
        :attr:`end`; remembered for :meth:`buffered`, should the frame be queued)."""
        pcm = frame.pcm
        silent = is_silent(pcm, self._rate)
        self._judged = (frame, silent)
        if silent:
            return True, frame.start < self.end
        return False, len(pcm) > 1  # a frame with samples begins before its own end

    def buffered(self, frame: AudioFrame) -> None:
        """The newest frame was buffered: as :meth:`judge` judged it, else judged later."""
        judged, self._judged = self._judged, None
        if judged is None or judged[0] is not frame:
            self.later(frame)
        elif not judged[1]:
            self.spoke(frame.end)

    @property
    def end(self) -> int:
        """The end of the newest loud frame, its unjudged frames judged first."""
        if self._unjudged:
            self._judge()
        return self._end

    @property
    def unjudged(self) -> int:
        """Frames kept unjudged now (at most :data:`MAX_UNJUDGED`)."""
        return len(self._unjudged)

    def spoke(self, end: int) -> None:
        """The newest frame, ending at ``end``, is not silent (the frames before it then need no
        judging)."""
        self._end = end
        if self._unjudged:
            self._unjudged.clear()

    def later(self, frame: AudioFrame) -> None:
        """The newest frame, not judged: judged when :attr:`end` is next read."""
        unjudged = self._unjudged
        if len(unjudged) >= MAX_UNJUDGED:
            self._judge()
        unjudged.append(frame)

    def ended_at(self, point: int) -> None:
        """The sound ended at ``point`` after all (a silent tail, judged alone, is cut off).
        Only right after :attr:`end` was read: no frame is unjudged."""
        assert not self._unjudged
        self._end = point

    def _judge(self) -> None:
        unjudged, rate = self._unjudged, self._rate
        for frame in reversed(unjudged):
            end = frame.end
            if end <= self._end:
                break
            if not is_silent(frame.pcm, rate):
                self._end = end
                break
        unjudged.clear()
