"""A session on the realtime protocol (livetranslate), as a :class:`Conversation`.

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
``previous_item_id`` correlation. So every source text and translation lands on
the global timeline through the same :class:`~engine.timeline.TaskClock` as on
the inference protocol, and the session supervises both protocols alike
(reconnect with replay from the commit point: a new session gets the same
``session.update`` and the replay).
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import structlog
import trio

from adapters.audio.images import MAX_FPS, open_image_feed
from adapters.dashscope import realtime_messages as m
from adapters.dashscope._realtime_state import ClientState
from adapters.dashscope.models import realtime_url
from adapters.dashscope.realtime import RealtimeClient
from engine.actors._conversation import Conversation
from engine.errors import (
    Disconnected,
    InputError,
    RemoteProtocolError,
    StenoError,
    TaskFailed,
)
from engine.results import Heard, Translated, VoiceOut

if TYPE_CHECKING:
    from adapters.dashscope.realtime_session import SessionSettings

__all__ = ["RealtimeConversation", "SegmentTimes"]

log = structlog.get_logger("steno.session")

_MAX_SEGMENTS: Final = 64
"""Speech segments whose times are remembered (a response outliving 64 segments has none)."""

_IMAGE_GAP_S: Final = 1.0 / MAX_FPS + 0.05
"""The least time between two pictures: the protocol's two a second, with a margin. The
service counts arrivals, which the network can bring closer together; at exactly 0.5 s
every third picture would sit on the limit's edge (the simulator refuses one there)."""


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


class RealtimeConversation(Conversation):
    """A livetranslate session; ``parameters["session"]`` is its :class:`SessionSettings`."""

    _ENDED = frozenset({ClientState.ERROR, ClientState.FAILED, ClientState.CLOSED})

    def _new_core(self) -> RealtimeClient:
        self.settings: SessionSettings = self.parameters["session"]
        self.created = trio.Event()
        self.times = SegmentTimes()
        self.images_sent = 0
        self._audio_waiter: tuple[int, trio.Event] | None = None
        return RealtimeClient()

    def _url(self) -> str:
        return realtime_url(self.config.url, self.config.model)

    @property
    def target(self) -> str:
        return self.settings.translation.language

    async def _start(self) -> None:
        with trio.move_on_after(self.config.start_timeout_s):
            await self.created.wait()
        if not self.created.is_set():
            raise TaskFailed(
                "Timeout",
                f"the server sent no session.created within {self.config.start_timeout_s:g} s",
            )
        await self.command(m.UpdateSession(self.settings))
        await self._wait_started()

    def _start_helpers(self, nursery: trio.Nursery) -> None:
        options = self.config.translation
        if options is not None and options.image:
            nursery.start_soon(self._send_images, options.image)

    async def send_audio(self, pcm: bytes, end: int) -> None:
        await super().send_audio(pcm, end)
        waiter = self._audio_waiter
        if waiter is not None and end >= waiter[0]:
            waiter[1].set()

    async def _audio_reaches(self, sample: int) -> None:
        """Wait until the audio sent reaches global ``sample`` (no deadline: the pump's)."""
        if self.sent_until >= sample and self.first_audio_t is not None:
            return
        event = trio.Event()
        self._audio_waiter = (max(sample, self.offset + 1), event)
        try:
            await event.wait()
        finally:
            self._audio_waiter = None

    async def _send_images(self, path: str) -> None:
        """Send the image (or the video's frames) as visual context, in step with the audio.

        A picture goes once the audio sent reaches its media time (a video and its
        sound share a timeline), at most two a second, and never before the first
        audio nor after ``session.finish`` (DASHSCOPE.md §5.2). A new session
        resends the picture in force at its offset. A feed that breaks stops the
        pictures, not the session.
        """
        last_sent = -math.inf
        held: bytes | None = None  # the newest picture before our offset
        try:
            async with open_image_feed(path) as feed:
                async for at_s, jpeg in feed:
                    at = int(at_s * self.rate)
                    if at < self.offset:
                        held = jpeg
                        continue
                    if held is not None:
                        if not await self._send_image(held, self.offset, last_sent):
                            return
                        last_sent, held = trio.current_time(), None
                    if not await self._send_image(jpeg, at, last_sent):
                        return
                    last_sent = trio.current_time()
                if held is not None:
                    await self._send_image(held, self.offset, last_sent)
        except InputError as exc:
            log.warning("session.images_stopped", error=str(exc))

    async def _send_image(self, jpeg: bytes, at: int, last_sent: float) -> bool:
        """Send one picture in its turn; False once the session takes no more (finishing)."""
        await self._audio_reaches(at)
        await trio.sleep_until(last_sent + _IMAGE_GAP_S)
        # The finish may have gone while we waited; the core refuses uploads after it
        # (a LocalProtocolError that would wreck the session). No checkpoint between
        # this check and ``command``'s core.send, so the check holds.
        if self.core.state is not ClientState.STREAMING:
            return False
        try:
            await self.command(m.AppendImage(jpeg))
        except StenoError as exc:
            # The connection broke under the picture: the session's failure, recorded
            # like any after the start. Raising it would put a second exception beside
            # the reader's in the conversation's nursery, a group nobody handles.
            self.die(exc)
            return False
        self.images_sent += 1
        return True

    def _audio(self, pcm: bytes) -> m.AppendAudio:
        return m.AppendAudio(pcm)

    def _finish_command(self) -> m.FinishSession:
        return m.FinishSession()

    def _now_ms(self) -> int:
        return self.clock.task_samples * 1000 // self.rate

    async def _on_core_event(self, event: Any) -> None:
        match event:
            case m.SessionCreated(session):
                if session.id:
                    self.task_id = session.id
                self.created.set()
            case m.SessionUpdated():
                self.started.set()
            case m.SpeechStarted(ms, item_id):
                self.times.started(ms, item_id)
            case m.SpeechStopped(ms, item_id):
                self.times.stopped(ms, item_id)
            case m.SourcePartial(item_id, text, stash):
                begin, _ = self.times.span(item_id, self._now_ms())
                await self.on_result(
                    self, Heard(False, begin, None, text, stash=stash, key=item_id)
                )
            case m.SourceFinal(item_id, transcript):
                begin, end = self.times.span(item_id, self._now_ms())
                await self.on_result(self, Heard(True, begin, end, transcript, key=item_id))
            case m.TranslationPartial(_, item_id, text, stash, source):
                key = source or item_id
                begin, _ = self.times.span(key, self._now_ms())
                await self.on_result(
                    self, Translated(self.target, False, begin, None, text, stash, key=key)
                )
            case m.TranslationFinal(_, item_id, text, source):
                key = source or item_id
                begin, end = self.times.span(key, self._now_ms())
                await self.on_result(self, Translated(self.target, True, begin, end, text, key=key))
            case m.AudioDelta(response_id, _, pcm):
                await self.on_result(self, VoiceOut(response_id, pcm))
            case m.SessionFinished():
                self.finished_t = trio.current_time()
                self.close_reason = "finished"
                self.finished.set()
                self.ended.set()
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
