"""The one stream assembly: producers push audio in, the engine's events come out.

    async with open_stream(StreamConfig(session=...)) as stream:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, stream)     # await stream.push(pcm, rate=48000) ...
            async for event in stream.events():     # StreamStarted … StreamEnded
                ...

Every face builds its stream here: ``steno transcribe``/``translate`` (a file's
capture actor is the producer, :mod:`engine.pipeline`), ``steno listen`` (the
microphone actor, :mod:`engine.live`), the daemon (its pusher), the capacity
bench and any embedding host (``push``/``skip``, or ``try_push`` from one pacing task).

Theory of operation
-------------------
::

    producer ─┬─► resampler, run in the sender's task ──[resampler->session]──► session ─┐
    push/skip ┘     │ gaps, skips (counted in ResamplerStats)                          │
                    ▼                                                                  ▼
    producer events ──(InputEvents: InputLedger counts)──► [session->renderer] ──► events()

An optional *producer* (:class:`Producer`) is started first, with a :class:`Feed`:
its inlet of the resampler and its lane into the events edge. A source that
cannot be opened (a missing file, no such device) therefore raises out of
:func:`open_stream` before anything connects. The input side's facts (the
resampler's gaps and skips, a capture device's gaps, a producer's
``StreamError``) are counted where they are put, with no task between them and
``events()``; the session's own :class:`StreamEnded` is held until every lane
has closed, then completed with the input side's account once
(:func:`complete_end`) and yielded last. That is the only place
the end of a stream is folded; observers downstream read it, never rewrite it.

Leaving the ``async with`` ends the input and finishes the task (``finish-task`` …
``task-finished`` under its deadline); events nobody read are drained so the
session can finish. Events are never dropped: read them while you push, or the
bounded channels push back on ``push``.

A source that pauses calls :meth:`Stream.skip` with the time that passed: the
stream's global timeline moves on without audio, so later results keep their
wall-clock place (``StreamStarted.started_at + sample / rate``), and the span is
reported (``AudioSkipped``, or ``AudioGap`` when it was lost). Setting the
``drain`` event stops retries: the stream finishes within its deadlines.
"""

from __future__ import annotations

import contextlib
import functools
from fractions import Fraction
from typing import TYPE_CHECKING, final

import msgspec
import numpy as np
import trio

from adapters.audio.pcm import to_mono_float32
from adapters.dashscope.models import endpoint, get_model
from adapters.dashscope.ws import Dialer, dial_tcp
from engine._bursts import Bursts
from engine._embedded import embedded_simulator_or_none
from engine._stream_input import (
    Feed,
    InputEvents,
    InputLedger,
    Producer,
    check_rate,
    complete_end,
    input_lost_ms,
    pushed_block,
)
from engine._stream_types import StreamConfig as StreamConfig
from engine._stream_types import StreamStatistics as StreamStatistics
from engine._util import unwrap_single_group
from engine.actors import resampler, session
from engine.actors._inlet import Inbox, open_inlet
from engine.clock import iso_utc, system_clock
from engine.errors import InputError
from engine.events import (
    Event,
    StreamEnded,
    StreamStarted,
    samples_to_ms,
)
from engine.messages import Skip
from engine.wiring import EDGES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import numpy as np
    from numpy.typing import NDArray

    from engine.clock import WallClock
    from engine.messages import PcmBlock, RawBlock
    from engine.ratelimit import StartLimiter


__all__ = [
    "Feed",
    "Producer",
    "Stream",
    "StreamConfig",
    "StreamStatistics",
    "open_stream",
    "to_mono_float32",
]


@final
class Stream:
    """One stream. Made by :func:`open_stream`; do not construct it yourself.

    Attributes:
        config: the stream's configuration.
        started: its :class:`StreamStarted` (also the first event of :meth:`events`).
        stats: the session's live counters (a read-only view; :meth:`statistics`
            takes a snapshot of everything).
    """

    def __init__(
        self,
        config: StreamConfig,
        raw: resampler.ResamplerInlet,
        frames: Inbox,
        events: trio.MemoryReceiveChannel[Event],
        stats: session.SessionStats,
        resampling: resampler.ResamplerStats,
        ledger: InputLedger,
        started: StreamStarted,
    ) -> None:
        self.config = config
        self.stats = stats  # the session's live view (the daemon's gauges read it)
        self.started = started
        self._raw = raw
        self._frames = frames
        self._events = events
        self._resampling = resampling
        self._ledger = ledger
        self._rate = started.rate
        self._input_rate = config.input_rate
        self._input_channels = config.input_channels
        self._pushed: dict[int, int] = {}  # samples by rate (ints: no Fraction per push)
        self._pushed_native = 0  # try_push's int16 at the session's rate (not in _pushed)
        self._started_sent = False
        self._ended: StreamEnded | None = None
        self._input_done = False

    @property
    def ended(self) -> StreamEnded | None:
        """The stream's StreamEnded once it has been read (or drained)."""
        return self._ended

    async def push(
        self,
        pcm: bytes | NDArray[np.generic],
        *,
        rate: int | None = None,
        channels: int | None = None,
    ) -> None:
        """Add audio. Blocks while the engine is behind (bounded; never drops).

        The resampler runs in the caller's task (mono int16 takes no float round
        trip) and its frames reach the session's bounded inbox before this returns.
        Always a checkpoint.

        Raises:
            InputError: a rate outside 8–48 kHz, or data that is not int16/float PCM.
            trio.ClosedResourceError: after :meth:`end_input`.
        """
        rate, item = self._block(pcm, rate, channels)
        size = len(item.samples)
        if size:
            await self._raw.send(item)
            self._pushed[rate] = self._pushed.get(rate, 0) + size
        else:
            await trio.lowlevel.checkpoint()

    def try_push(
        self,
        pcm: bytes | NDArray[np.generic],
        *,
        rate: int | None = None,
        channels: int | None = None,
    ) -> bool:
        """Add audio now if the engine can take all of it now; never waits.

        The cheap path for a host that paces many streams from one task (a step of
        :meth:`engine.pacer.Pacer.drive`, or its own loop): not a checkpoint, no task
        switch. All or nothing: True when the audio was taken (resampled, and its
        frames sent on the wire or queued within the stream's bound); False when
        nothing was taken (the engine is behind, or another producer is pushing):
        then ``await push(...)`` the same audio. :meth:`push` stays the simple path.

        Raises:
            InputError: a rate outside 8–48 kHz, or data that is not int16/float PCM.
            trio.ClosedResourceError: after :meth:`end_input`.
            trio.BrokenResourceError: the stream has finished.
        """
        if (
            type(pcm) is bytes
            and (rate or self._input_rate) == self._rate
            and (channels or self._input_channels) == 1
            and not len(pcm) & 1
        ):  # mono int16 at the session's rate, as a pacer's step pushes it: no array (#11)
            if pcm:
                if not self._raw.try_send_pcm16(pcm):
                    return False
                self._pushed_native += len(pcm) >> 1
            return True
        rate, item = self._block(pcm, rate, channels)
        size = len(item.samples)
        if size:
            if not self._raw.try_send(item):
                return False
            self._pushed[rate] = self._pushed.get(rate, 0) + size
        return True

    def _block(
        self, pcm: bytes | NDArray[np.generic], rate: int | None, channels: int | None
    ) -> tuple[int, RawBlock | PcmBlock]:
        """``push``'s audio as a block for the resampler stage, with its rate (checked)."""
        rate = rate or self.config.input_rate
        check_rate(rate)
        return rate, pushed_block(pcm, rate, channels or self.config.input_channels)

    async def skip(
        self, samples: int, *, rate: int | None = None, reason: str = "skipped", lost: bool = False
    ) -> None:
        """Let ``samples`` (at ``rate``) of source time pass without audio.

        The global timeline moves on by that time, so audio pushed later keeps its
        wall-clock place; a task in progress carries on across the hole (results map
        around it) and a replay never joins audio across it. The span is reported in
        order with the audio: ``AudioSkipped(reason)``, or, with ``lost``,
        ``AudioGap(reason)`` (counted in ``StreamEnded.audio_lost_ms``). Like
        :meth:`push`, it blocks while the engine is behind.

        Raises:
            InputError: a negative count or a rate outside 8–48 kHz.
            trio.ClosedResourceError: after :meth:`end_input`.
        """
        rate = rate or self.config.input_rate
        check_rate(rate)
        if samples < 0:
            raise InputError(f"cannot skip {samples} samples; fix: pass a count >= 0")
        if samples:
            await self._raw.send(Skip(samples, rate, reason, lost))

    async def end_input(self) -> None:
        """No more audio: the session finishes its task. Idempotent."""
        if not self._input_done:
            self._input_done = True
            await self._raw.aclose()

    def statistics(self) -> StreamStatistics:
        """A snapshot of the live counters (not a checkpoint; cheap enough to poll)."""
        s, r, rate = self.stats, self._resampling, self._rate
        return StreamStatistics(
            rate=rate,
            pushed_s=float(
                sum(Fraction(n, r) for r, n in self._pushed.items())
                + Fraction(self._pushed_native, rate)
            ),
            skipped_s=r.skipped_samples / rate,
            timeline_samples=r.position,
            buffered_samples=s.buffered_samples,
            buffered_frames=s.buffered_frames,
            max_buffered_samples=s.max_buffered_samples,
            tasks_opened=s.tasks_opened,
            live_tasks=s.live_tasks,
            reconnects=s.reconnects,
            finals=s.finals,
            audio_lost_ms=samples_to_ms(s.lost_samples, rate)
            + input_lost_ms(self._ledger, r, rate),
            push_queue=self._raw.statistics().current_buffer_used,
            frame_queue=self._frames.statistics().current_buffer_used,
            event_queue=self._events.statistics().current_buffer_used,
            send_lag_p99_ms=s.send_lag_p99_ms,
            send_lag_max_ms=s.send_lag_max_ms,
            frames_coalesced=s.frames_coalesced,
        )

    async def events(self) -> AsyncIterator[Event]:
        """The engine's events, in order: :class:`StreamStarted` first, :class:`StreamEnded` last.

        The session's StreamEnded is held until every lane has closed (late input events
        pass first), then completed with the input side's account. Queued events are taken
        without a checkpoint each (:class:`~engine._bursts.Bursts`)."""
        if not self._started_sent:
            self._started_sent = True
            yield self.started
        held: StreamEnded | None = None
        async for event in Bursts(self._events):
            if isinstance(event, StreamEnded):
                held = event
                continue
            yield event
        if held is not None and self._ended is None:
            self._ended = complete_end(held, self._ledger, self._resampling, self._rate)
            yield self._ended

    async def _drain(self) -> None:
        async for _ in self.events():
            pass


@contextlib.asynccontextmanager
async def open_stream(
    config: StreamConfig,
    *,
    producer: Producer | None = None,
    dial: Dialer = dial_tcp,
    limiter: StartLimiter | None = None,
    drain: trio.Event | None = None,
    clock: WallClock = system_clock,
) -> AsyncIterator[Stream]:
    """Open a stream; on exit, finish it gracefully.

    Args:
        config: the stream.
        producer: a source to start before the session (a file's capture, a
            microphone). It is then the stream's only source: its end is the end of
            the input, and ``push``/``skip`` raise ``trio.ClosedResourceError``.
        dial: how to open WebSockets (the in-memory simulator's ``net.dial`` in tests).
        limiter: the task-start rate limiter shared by the process's streams.
        drain: once set, failures are no longer retried: the stream finishes within
            its deadlines and reports what it could not finalize (the first Ctrl-C,
            a daemon drain). Ending the input is still up to the caller (and the
            producer).
        clock: the wall clock for ``StreamStarted.started_at`` (epoch seconds).

    Raises:
        ConfigError: a bad model or option, before anything is sent.
        Exception: what ``producer`` raised before it started (nothing connected).

    Channels: see the module's theory of operation; every edge is bounded
    (``engine.wiring.EDGES``) and blocking.

    Cancellation: cancelling the surrounding scope abandons the task at once (no
    ``finish-task``); exiting normally, or with an exception, finishes it.
    """
    # Nested blocks: an AsyncExitStack would live as long as the stream (760 B, #11).
    async with embedded_simulator_or_none(config.simulator) as sim:
        session_config = config.session
        if sim is not None:
            session_config = msgspec.structs.replace(session_config, url=sim.inference_url)
        rate = get_model(session_config.model).sample_rate
        frames_send, frames_recv = open_inlet(EDGES["resampler->session"].size)
        # The input side's events go into the events edge itself (its clones), counted
        # where they are put: no relay task.
        events_send, events_recv = trio.open_memory_channel[Event](EDGES["session->renderer"].size)
        ledger = InputLedger()
        framing = resampler.ResamplerConfig(rate, session_config.frame_ms, session_config.stream)
        stage = resampler.Resampler(outbox=frames_send, events=events_send.clone(), config=framing)
        raw_send = stage.inlet()
        with unwrap_single_group():
            async with trio.open_nursery() as nursery:
                source = config.source
                if producer is not None:
                    feed = Feed(raw_send.clone(), InputEvents(events_send.clone(), ledger))
                    raw_send.close()  # the producer is the source: its end is the input's end
                    source = await nursery.start(producer, feed) or source
                started = StreamStarted(
                    source,
                    session_config.model,
                    rate,
                    endpoint=endpoint(session_config.model, session_config.url),
                    started_at=iso_utc(clock()),
                    stream=session_config.stream,
                    t=trio.current_time(),
                )
                nursery.start_soon(stage.run)  # not start: its status would hold a nursery
                stats = await nursery.start(
                    functools.partial(
                        session.run,
                        inbox=frames_recv,
                        outbox=events_send,
                        config=session_config,
                        dial=dial,
                        limiter=limiter,
                        drain=drain,
                    )
                )
                stream = Stream(
                    config, raw_send, frames_recv, events_recv, stats, stage.stats, ledger, started
                )
                try:
                    yield stream
                finally:
                    await stream.end_input()
                    await stream._drain()
