"""The realtime connection's segment worker: recognition and translation, op by op.

It takes the reader's ops (:mod:`.realtime_ops`) in order. Per speech segment
it opens a session of the shared recognizer (one session per segment: a
segment is one recognition, and its end flushes the recognizer), feeds it the
segment's audio in ``feed_chunk_ms`` pieces and sends what
:class:`~.realtime_segment.Segment` makes of the hypotheses. Manual turns are
acknowledged (``committed``, the user item) and recognized whole; ``clear``
and ``session.finish`` are answered in their place in the order.

A recognizer failure fails the segment only (``…transcription.failed``, its
response ends ``failed``); the rest of its audio is dropped and the session
goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

import structlog
import trio

from adapters.dashscope import realtime_messages as m
from adapters.dashscope.realtime_wire import WireTranscription, WireTranslation

from . import realtime_ops as ops
from .realtime_segment import Segment
from .recognizer_calls import RecognizerFailed, close_session, guard

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.dashscope.realtime_server import RealtimeServer
    from adapters.recognizers.base import RecognizerSession

    from .context import ConnectionContext
    from .translate import Translator

__all__ = ["SegmentWorker"]

_log = structlog.get_logger()


class Sender(Protocol):
    async def __call__(self, *commands: m.ServerCommand) -> None: ...


class _Live(NamedTuple):
    """The segment under way and its recognizer session (None: failed, or not open)."""

    segment: Segment
    session: RecognizerSession | None
    sample_rate: int


class SegmentWorker:
    """Turns ops into stream events for one connection.

    Args:
        queue: the reader's ops.
        core: the connection's server core (the session in force, ASR and audio flags).
        ctx: the recognizer and the timings (``feed_chunk_ms``, ``partial_interval_ms``).
        translator: renders translations.
        send: the connection's send path (drops what the session no longer takes).
        ids: makes translation item and response ids.
    """

    def __init__(
        self,
        queue: ops.OpQueue,
        core: RealtimeServer,
        ctx: ConnectionContext,
        translator: Translator,
        send: Sender,
        ids: Callable[[str], str],
    ) -> None:
        self._queue = queue
        self._core = core
        self._ctx = ctx
        self._translator = translator
        self._send = send
        self._ids = ids
        self._live: _Live | None = None
        self.segments = 0
        self.finished = False
        """``session.finished`` went out."""
        self.idle_since = trio.current_time()
        """When the worker last finished an op (for the idle timer)."""

    async def run(self) -> None:
        """Handle ops until ``session.finish`` is answered.

        Cancellation:
            The segment under way is abandoned; its recognizer session is
            closed (shielded, bounded).
        """
        try:
            while True:
                op = await self._queue.get()
                try:
                    await self._handle(op)
                finally:
                    self._queue.done()
                    self.idle_since = trio.current_time()
                if isinstance(op, ops.Finish):
                    return
        finally:
            await self._release()

    async def _handle(self, op: ops.Op) -> None:
        send = self._send
        match op:
            case ops.Start(item_id, start_ms, rate, pcm):
                await self._release()  # a segment never stopped (cannot happen; be safe)
                await send(m.StartSpeech(start_ms, item_id))
                await self._begin(item_id, rate)
                await self._feed(pcm)
            case ops.Audio(pcm):
                await self._feed(pcm)
            case ops.Stop(item_id, end_ms):
                await send(m.StopSpeech(end_ms, item_id))
                await self._end()
            case ops.Turn(item_id, previous, rate, pcm, ack):
                if ack:
                    await send(m.AckCommit(item_id, previous))
                await send(m.CreateItem(item_id, previous, "user"))
                await self._begin(item_id, rate)
                await self._feed(pcm)
                await self._end()
            case ops.Clear():
                await send(m.AckClear())
            case ops.Finish():
                await send(m.FinishSessionReply())
                self.finished = True
            case _:  # pragma: no cover
                raise AssertionError(f"unhandled op {op!r}")

    async def _begin(self, item_id: str, rate: int) -> None:
        session = self._core.session
        translation = session.translation
        target = translation.language if isinstance(translation, WireTranslation) else None
        asr = session.input_audio_transcription
        language = asr.language if isinstance(asr, WireTranscription) else None
        language = language if isinstance(language, str) and language else None
        segment = Segment(
            item_id,
            target=target if isinstance(target, str) else "en",
            translator=self._translator,
            new_id=self._ids,
            language=language,
            partial_interval_ms=self._ctx.config.partial_interval_ms,
        )
        self.segments += 1
        self._live = _Live(segment, None, rate)
        try:
            recognizer = await guard(
                self._ctx.recognizer.open_session(sample_rate=rate, language=language)
            )
        except RecognizerFailed as exc:
            await self._failed(exc)
            return
        self._live = self._live._replace(session=recognizer)

    async def _feed(self, pcm: bytes) -> None:
        live = self._live
        if live is None or live.session is None:
            return  # no segment, or a failed one: its audio is dropped
        chunk_bytes = self._ctx.config.feed_chunk_ms * live.sample_rate // 1000 * 2
        for i in range(0, len(pcm), chunk_bytes):
            chunk = pcm[i : i + chunk_bytes]
            try:
                hyps = await guard(live.session.feed(chunk))
            except RecognizerFailed as exc:
                await self._failed(exc)
                return
            live.segment.fed_bytes += len(chunk)
            await self._send(*live.segment.heard(hyps, _fed_ms(live), **self._outputs()))

    async def _end(self) -> None:
        live = self._live
        if live is None or live.session is None:
            await self._release()
            return
        try:
            hyps = await guard(live.session.flush())
        except RecognizerFailed as exc:
            await self._failed(exc)
            await self._release()
            return
        await self._send(*live.segment.finish(hyps, _fed_ms(live), **self._outputs()))
        await self._release()

    async def _release(self) -> None:
        """Forget the segment under way, closing its recognizer session."""
        live, self._live = self._live, None
        if live is not None and live.session is not None:
            await close_session(live.session)

    async def _failed(self, exc: RecognizerFailed) -> None:
        assert self._live is not None
        segment = self._live.segment
        _log.warning("recognizer failed", item_id=segment.item_id, error=str(exc))
        await self._release()
        self._live = _Live(segment, None, 1)  # failed: the rest of its audio is dropped
        asr = self._core.asr_enabled
        await self._send(*segment.fail("InternalError", f"recognition failed: {exc}", asr=asr))

    def _outputs(self) -> dict[str, bool]:
        return {"asr": self._core.asr_enabled, "audio": self._core.audio_output}


def _fed_ms(live: _Live) -> int:
    return live.segment.fed_bytes * 500 // live.sample_rate
