"""A :class:`~adapters.dashscope.connection.Connection` on the realtime protocol (livetranslate).

Theory of operation
-------------------
The realtime protocol has no task: one socket is one session. The server opens
it unprompted with ``session.created``; we answer with a ``session.update`` that
states every value (DASHSCOPE.md §10 item 17) and count the session started at
``session.updated``. Audio goes up as base64 ``input_audio_buffer.append``;
``session.finish`` ends it, answered by ``session.finished`` once the last
segment is recognized and translated (§5.2).

Results carry no times. The server's VAD announces each speech segment with
``input_audio_buffer.speech_started`` / ``speech_stopped`` (ms of the session's
audio); :class:`SegmentTimes` pins those times to the ASR item ids, and the
translation of a segment reaches its ASR item through the client core's
``previous_item_id`` correlation. So every source text and translation comes
out as a result in task ms, like the inference protocol's, and the session maps
both protocols onto its timeline alike.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

import structlog
import trio

from engine.errors import Disconnected, RemoteProtocolError, StenoError, TaskFailed
from engine.results import Heard, Result, Translated, VoiceOut

from . import realtime_messages as m
from ._realtime_state import ClientState
from .connection import Connection, LinkSettings
from .realtime import RealtimeClient

if TYPE_CHECKING:
    from .realtime_session import SessionSettings
    from .transport import Dialer

__all__ = ["RealtimeConnection", "SegmentTimes"]

log = structlog.get_logger("steno.session")

_MAX_SEGMENTS: Final = 64
"""Speech segments whose times are remembered (a response outliving 64 segments has none)."""


class _Segment:
    __slots__ = ("begin", "end", "item_id")

    def __init__(self, begin: int, item_id: str | None) -> None:
        self.begin = begin
        self.end: int | None = None
        self.item_id = item_id


class SegmentTimes:
    """Which span of the session's audio (ms) each ASR item covers.

    ``speech_started``/``speech_stopped`` may name their item or not (the
    documented example does not); an unnamed segment is claimed by the first
    item id that has none, in order. Bounded: the oldest segments are forgotten.
    """

    def __init__(self) -> None:
        self._segments: deque[_Segment] = deque(maxlen=_MAX_SEGMENTS)
        self._by_item: dict[str, _Segment] = {}

    def started(self, ms: int, item_id: str | None) -> None:
        self._forget_oldest()
        segment = _Segment(ms, item_id)
        self._segments.append(segment)
        if item_id is not None:
            self._by_item[item_id] = segment

    def stopped(self, ms: int, item_id: str | None) -> None:
        segment = self._by_item.get(item_id) if item_id is not None else None
        if segment is None:
            segment = next((s for s in self._segments if s.end is None), None)
        if segment is not None:
            segment.end = max(ms, segment.begin)

    def span(self, item_id: str, now_ms: int) -> tuple[int, int]:
        """``(begin, end)`` of ``item_id``; an open segment ends at ``now_ms`` so far."""
        segment = self._by_item.get(item_id)
        if segment is None:
            segment = next((s for s in self._segments if s.item_id is None), None)
            if segment is None:  # no VAD event for it (manual mode): after the last one
                last = self._segments[-1] if self._segments else None
                begin = 0 if last is None else (last.end if last.end is not None else last.begin)
                self._forget_oldest()
                segment = _Segment(min(begin, now_ms), item_id)
                self._segments.append(segment)
            segment.item_id = item_id
            self._by_item[item_id] = segment
        end = segment.end if segment.end is not None else max(now_ms, segment.begin)
        return segment.begin, end

    def _forget_oldest(self) -> None:
        if len(self._segments) == self._segments.maxlen:
            old = self._segments[0]
            if old.item_id is not None:
                self._by_item.pop(old.item_id, None)


class RealtimeConnection(Connection[m.ClientCommand, m.ClientEvent]):
    """One livetranslate session, configured by ``session``."""

    def __init__(
        self, *, settings: LinkSettings, dial: Dialer, task_id: str, session: SessionSettings
    ) -> None:
        self._client = RealtimeClient()
        super().__init__(settings=settings, dial=dial, task_id=task_id, core=self._client)
        self._session = session
        self._created = trio.Event()
        self._times = SegmentTimes()
        self.images_sent = 0

    @property
    def target(self) -> str:
        return self._session.translation.language

    async def _start(self) -> None:
        start_s = self.settings.start_s
        with trio.move_on_after(start_s):
            await self._read_until(self._created)
        if not self._created.is_set():
            raise TaskFailed("Timeout", f"the server sent no session.created within {start_s:g} s")
        await self._command(m.UpdateSession(self._session))
        await self._wait_started()

    async def send_image(self, jpeg: bytes) -> bool:
        """Send one picture; False once the session takes no more (finishing, or broken).

        A failure here is the connection's, recorded like any after the start (and
        not raised: the picture's sender is not the session's pump).
        """
        # The finish may have gone while the caller waited; the core refuses uploads
        # after it. No checkpoint between this check and the core's send.
        if self._client.state is not ClientState.STREAMING or self.error is not None:
            return False
        try:
            await self._command(m.AppendImage(jpeg))
        except StenoError as exc:
            self.abort(exc)
            return False
        self.images_sent += 1
        return True

    def _audio(self, pcm: bytes) -> m.AppendAudio:
        return m.AppendAudio(pcm)

    def _finish_command(self) -> m.FinishSession:
        return m.FinishSession()

    def _now_ms(self) -> int:
        return self.audio_samples * 1000 // self.settings.rate

    def _interpret(self, event: m.ClientEvent) -> list[Result]:
        match event:
            case m.SessionCreated(session):
                if session.id:
                    self.task_id = session.id
                self._created.set()
            case m.SessionUpdated():
                self.started.set()
            case m.SpeechStarted(ms, item_id):
                self._times.started(ms, item_id)
            case m.SpeechStopped(ms, item_id):
                self._times.stopped(ms, item_id)
            case m.SourcePartial(item_id, text, stash):
                begin, _ = self._times.span(item_id, self._now_ms())
                return [Heard(False, begin, None, text, stash=stash, key=item_id)]
            case m.SourceFinal(item_id, transcript):
                begin, end = self._times.span(item_id, self._now_ms())
                return [Heard(True, begin, end, transcript, key=item_id)]
            case m.TranslationPartial(_, item_id, text, stash, source):
                key = source or item_id
                begin, _ = self._times.span(key, self._now_ms())
                return [Translated(self.target, False, begin, None, text, stash, key=key)]
            case m.TranslationFinal(_, item_id, text, source):
                key = source or item_id
                begin, end = self._times.span(key, self._now_ms())
                return [Translated(self.target, True, begin, end, text, key=key)]
            case m.AudioDelta(response_id, _, pcm):
                return [VoiceOut(response_id, pcm)]
            case m.SessionFinished():
                self._mark_finished()
            case m.FatalServerError(kind, code, message):
                self.close_reason = f"error: {code or kind}"
                raise TaskFailed(code or kind, message)
            case m.ServerError(kind, code, message, param):
                if not self.started.is_set():
                    # Our session.update was refused: the configuration is wrong.
                    self.close_reason = f"error: {code or kind}"
                    where = f" ({param})" if param else ""
                    raise TaskFailed("InvalidParameter", f"{message}{where}")
                log.warning("session.server_error", code=code, message=message, param=param)
            case m.SourceFailed(item_id, code, message):
                log.warning("session.source_failed", item_id=item_id, code=code, message=message)
            case m.ConnectionClosed():
                self.close_reason = "connection-lost"
                raise Disconnected("the server closed the connection before session.finished")
            case m.ProtocolViolation(reason):
                self.close_reason = "protocol-error"
                raise RemoteProtocolError(f"the server broke the protocol: {reason}")
            case m.UnknownEvent(name):
                log.warning("session.unknown_event", event_name=name)
        return []
