"""A realtime connection's input audio, as the reader turns it into worker ops.

The reader (:mod:`.realtime`) hands every appended chunk to :class:`AudioIntake`.
In server-VAD mode the energy VAD (:mod:`.realtime_vad`) cuts it into
segments (``Start``/``Audio``/``Stop`` ops); in manual mode
(``turn_detection: null``) it is buffered until ``commit`` makes it one
``Turn``. ``clear`` drops the manual buffer, or in VAD mode the look-back audio
not yet in a segment; ``session.finish`` ends what is under way (a manual
buffer left then is recognized without the ack).

Switching mode or sample rate by ``session.update`` ends a segment under way
there (as if the speaker stopped); a manual buffer is dropped when VAD turns
on. A buffer is recognized at the rate in force at commit.

``commit`` in VAD mode is ``invalid_value``, of an empty buffer
``input_audio_buffer_commit_empty`` (OpenAI Realtime's code). ``opus`` input is
accepted by ``session.update`` but the simulator cannot decode it: appended
audio is dropped with one ``unsupported_format`` error.

Nothing here blocks or awaits: every method is synchronous and returns an
:data:`Answer` — None when all went into the :class:`~.realtime_ops.OpQueue`,
:class:`Refused` for a non-fatal ``error`` to the request, :class:`Throttled`
when the bound refused (the connection then fails with ``Throttling``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import structlog

from adapters.dashscope.realtime_wire import WireTurnDetection

from . import realtime_ops as ops
from .realtime_vad import EnergyVad, Offset, Onset, VadSettings, Voice, rms_threshold

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.dashscope.realtime_server import RealtimeServer

    from .realtime_vad import VadEvent

__all__ = ["Answer", "AudioIntake", "Refused", "Throttled", "vad_settings"]

_log = structlog.get_logger()


class Refused(NamedTuple):
    """Answer the request with a non-fatal ``error``."""

    code: str
    message: str
    param: str | None = None


class Throttled(NamedTuple):
    """The audio arrives faster than it is recognized: fail the session."""

    queued_s: float


Answer = Refused | Throttled | None


class AudioIntake:
    """VAD segments or the manual buffer of one realtime session, as ops.

    Args:
        queue: the worker's ops.
        core: the connection's server core (the session in force, manual mode).
        ids: makes item ids.
        max_audio_queue_s: the manual buffer's bound, in seconds of audio.
    """

    def __init__(
        self,
        queue: ops.OpQueue,
        core: RealtimeServer,
        *,
        ids: Callable[[str], str],
        max_audio_queue_s: float,
    ) -> None:
        self._ops = queue
        self._core = core
        self._ids = ids
        self._max_audio_queue_s = max_audio_queue_s
        self._vad: EnergyVad | None = EnergyVad(16000, vad_settings(None))
        self._manual = bytearray()
        self._open_item: str | None = None  # the VAD segment under way
        self._last_item: str | None = None
        self._opus_refused = False
        self.received_ms = 0.0
        """Milliseconds of audio appended (the session's audio clock)."""

    @property
    def sample_rate(self) -> int:
        """The input rate in force."""
        rate = self._core.session.sample_rate
        return rate if isinstance(rate, int) else 16000

    def append(self, pcm: bytes) -> Answer:
        """Take appended audio: into the VAD or the manual buffer."""
        if self._core.session.input_audio_format == "opus":
            if self._opus_refused:
                return None
            self._opus_refused = True
            return Refused(
                "unsupported_format",
                "the simulator cannot decode opus audio; send pcm",
                "session.input_audio_format",
            )
        self.received_ms += len(pcm) * 500 / self.sample_rate
        if self._vad is None:
            queued = len(self._manual) + len(pcm)
            if queued > int(self._max_audio_queue_s * self.sample_rate) * 2:
                return self._throttled(queued)
            self._manual += pcm
            return None
        return self._queued(self._apply_vad(self._vad.push(pcm)))

    def commit(self) -> Answer:
        """Manual mode: the buffer becomes an acknowledged turn."""
        if self._vad is not None:
            return Refused(
                "invalid_value",
                "input_audio_buffer.commit is for manual mode (turn_detection: null); "
                "the server VAD commits by itself",
            )
        if not self._manual:
            return Refused(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: the buffer is empty.",
            )
        pcm, self._manual = bytes(self._manual), bytearray()
        return self._queued(self._queue(self._turn(pcm, ack=True)))

    def clear(self) -> Answer:
        """Drop the manual buffer or the VAD's look-back; queue the ``…cleared`` answer."""
        self._manual.clear()
        if self._vad is not None:
            self._vad.clear()
        return self._queued(self._queue(ops.Clear()))

    def finish(self) -> Answer:
        """``session.finish``: end what is under way, then queue ``session.finished``."""
        return self._queued(self._end_audio(implicit_commit=True) and self._queue(ops.Finish()))

    def reconfigure(self) -> Answer:
        """Apply an accepted ``session.update`` to the VAD and the manual buffer."""
        return self._queued(self._reconfigure())

    def _reconfigure(self) -> bool:
        session = self._core.session
        rate = session.sample_rate if isinstance(session.sample_rate, int) else 16000
        if self._core.manual_mode:
            if self._vad is not None:
                ok = self._end_audio(implicit_commit=False)
                self._vad = None
                return ok
            return True
        settings = vad_settings(session.turn_detection)
        if self._vad is None:
            if self._manual:
                _log.info("manual buffer dropped: server VAD turned on", bytes=len(self._manual))
                self._manual.clear()
            self._vad = EnergyVad(rate, settings, start_ms=int(self.received_ms))
        elif self._vad.sample_rate != rate:
            ok = self._end_audio(implicit_commit=False)
            self._vad = EnergyVad(rate, settings, start_ms=self._vad.position_ms)
            return ok
        else:
            self._vad.settings = settings
        return True

    def _apply_vad(self, events: list[VadEvent]) -> bool:
        for event in events:
            match event:
                case Onset(start_ms, pcm):
                    item_id = self._open_item = self._ids("item")
                    self._last_item = item_id
                    ok = self._queue(ops.Start(item_id, start_ms, self.sample_rate, pcm))
                case Voice(pcm):
                    ok = self._queue(ops.Audio(pcm))
                case Offset(end_ms):
                    assert self._open_item is not None
                    ok = self._queue(ops.Stop(self._open_item, end_ms))
                    self._open_item = None
            if not ok:
                return False
        return True

    def _end_audio(self, *, implicit_commit: bool) -> bool:
        """The audio stops here (finish, mode or rate change): close what is under way."""
        if self._vad is not None:
            return self._apply_vad(self._vad.end())
        if implicit_commit and self._manual:
            pcm, self._manual = bytes(self._manual), bytearray()
            return self._queue(self._turn(pcm, ack=False))
        return True

    def _turn(self, pcm: bytes, *, ack: bool) -> ops.Turn:
        item_id, previous = self._ids("item"), self._last_item
        self._last_item = item_id
        return ops.Turn(item_id, previous, self.sample_rate, pcm, ack)

    def _queue(self, op: ops.Op) -> bool:
        return self._ops.put_nowait(op)

    def _queued(self, ok: bool) -> Answer:
        return None if ok else self._throttled(self._ops.queued_bytes)

    def _throttled(self, queued_bytes: int) -> Throttled:
        return Throttled(queued_bytes / (2 * self.sample_rate))


def vad_settings(vad: object) -> VadSettings:
    """The detector's settings from ``session.turn_detection`` (defaults as the service's)."""
    threshold, silence, padding = 0.2, 1000, 300
    if isinstance(vad, WireTurnDetection):
        if isinstance(vad.threshold, float | int):
            threshold = float(vad.threshold)
        if isinstance(vad.silence_duration_ms, int):
            silence = vad.silence_duration_ms
        if isinstance(vad.prefix_padding_ms, int):
            padding = vad.prefix_padding_ms
    return VadSettings(rms_threshold(threshold), silence, padding)
