"""The embedding API: push PCM at any rate, read the engine's events.

    async with open_stream(StreamConfig(session=...)) as stream:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, stream)     # await stream.push(pcm, rate=48000) ...
            async for event in stream.events():     # ends after StreamEnded
                ...

Inside, a pushed stream is the same actors as a file stream without the capture:
resampler (soxr) → session (the supervisor) → your ``events()``. Leaving the
``async with`` ends the input and finishes the task (``finish-task`` …
``task-finished`` under its deadline); events nobody read are drained so the
session can finish. Events are never dropped: read them while you push, or the
bounded channels push back on ``push``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Literal

import msgspec
import numpy as np
import trio

from adapters.dashscope.models import get_model
from adapters.dashscope.ws import Dialer, dial_tcp
from engine.actors import resampler, session
from engine.actors.capture import RawBlock
from engine.config import SessionConfig
from engine.errors import InputError
from engine.events import AudioFrame, Event, StreamEnded
from engine.wiring import EDGES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from numpy.typing import NDArray

    from engine.ratelimit import StartLimiter

__all__ = ["Stream", "StreamConfig", "open_stream", "to_mono_float32"]

MIN_RATE, MAX_RATE = 8000, 48000


class StreamConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A pushed stream.

    Attributes:
        session: how to talk to the service (model, url, key, policies).
        input_rate: the rate of pushed audio when ``push`` is not told otherwise.
        input_channels: channels of pushed interleaved audio (downmixed to mono).
        simulator: start an embedded simulator with this recognizer and ignore
            ``session.url`` (for examples and offline work).
    """

    session: SessionConfig
    input_rate: int = 16000
    input_channels: int = 1
    simulator: Literal["sphinx", "scripted"] | None = None

    def __post_init__(self) -> None:
        _check_rate(self.input_rate)
        if self.input_channels < 1:
            raise ValueError("input_channels must be at least 1")


def _check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(
            f"pushed audio at {rate} Hz; Stenograph needs 8000–48000 Hz; fix: resample it first"
        )


def to_mono_float32(pcm: bytes | NDArray[np.generic], channels: int) -> NDArray[np.float32]:
    """int16 LE bytes or an int16/float array (frames × channels, or interleaved) → mono float32."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        if len(pcm) % (2 * channels):
            raise InputError(f"{len(pcm)} bytes is not whole int16 frames of {channels} channel(s)")
        array: NDArray[np.generic] = np.frombuffer(pcm, dtype="<i2")
    else:
        array = np.asarray(pcm)
    if array.dtype.kind == "i":
        samples = array.astype(np.float32) / 32768.0
    elif array.dtype.kind == "f":
        samples = array.astype(np.float32, copy=False)
    else:
        raise InputError(f"pushed audio has dtype {array.dtype}; push int16 or float PCM")
    if samples.ndim == 1 and channels > 1:
        samples = samples.reshape(-1, channels)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


class Stream:
    """One pushed stream. Made by :func:`open_stream`; do not construct it yourself."""

    def __init__(
        self,
        config: StreamConfig,
        raw: trio.MemorySendChannel[RawBlock],
        events: trio.MemoryReceiveChannel[Event],
        stats: session.SessionStats,
    ) -> None:
        self.config = config
        self.stats = stats
        self._raw = raw
        self._events = events
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

        Raises:
            InputError: a rate outside 8–48 kHz, or data that is not int16/float PCM.
            trio.ClosedResourceError: after :meth:`end_input`.
        """
        rate = rate or self.config.input_rate
        _check_rate(rate)
        samples = to_mono_float32(pcm, channels or self.config.input_channels)
        if samples.size:
            await self._raw.send(RawBlock(samples, rate))

    async def end_input(self) -> None:
        """No more audio: the session finishes its task. Idempotent."""
        if not self._input_done:
            self._input_done = True
            await self._raw.aclose()

    async def events(self) -> AsyncIterator[Event]:
        """The engine's events, in order; ends after :class:`StreamEnded`."""
        async for event in self._events:
            if isinstance(event, StreamEnded):
                self._ended = event
            yield event
            if self._ended is not None:
                return

    async def _drain(self) -> None:
        async for _ in self.events():
            pass


@contextlib.asynccontextmanager
async def open_stream(
    config: StreamConfig,
    *,
    dial: Dialer = dial_tcp,
    limiter: StartLimiter | None = None,
) -> AsyncIterator[Stream]:
    """Open a pushed stream; on exit, finish it gracefully.

    Raises:
        ConfigError: a bad model or option, before anything is sent.

    Cancellation: cancelling the surrounding scope abandons the task at once (no
    ``finish-task``); exiting normally, or with an exception, finishes it.
    """
    async with contextlib.AsyncExitStack() as stack:
        session_config = config.session
        if config.simulator is not None:
            session_config = await _embedded(stack, config)
        rate = get_model(session_config.model).sample_rate
        raw_send, raw_recv = trio.open_memory_channel[RawBlock](EDGES["push->resampler"].size)
        frames_send, frames_recv = trio.open_memory_channel[AudioFrame](
            EDGES["resampler->session"].size
        )
        events_send, events_recv = trio.open_memory_channel[Event](EDGES["session->renderer"].size)
        nursery = await stack.enter_async_context(trio.open_nursery())
        nursery.start_soon(
            functools.partial(
                resampler.run,
                inbox=raw_recv,
                outbox=frames_send,
                config=resampler.ResamplerConfig(
                    out_rate=rate, frame_ms=session_config.frame_ms, stream=session_config.stream
                ),
            )
        )
        stats = await nursery.start(
            functools.partial(
                session.run,
                inbox=frames_recv,
                outbox=events_send,
                config=session_config,
                dial=dial,
                limiter=limiter,
            )
        )
        stream = Stream(config, raw_send, events_recv, stats)
        try:
            yield stream
        finally:
            await stream.end_input()
            await stream._drain()


async def _embedded(stack: contextlib.AsyncExitStack, config: StreamConfig) -> SessionConfig:
    from adapters.sim.config import SimConfig
    from adapters.sim.recognizers import make_recognizer
    from adapters.sim.server import open_simulator

    assert config.simulator is not None
    recognizer = make_recognizer(config.simulator)
    stack.push_async_callback(recognizer.aclose)
    sim = await stack.enter_async_context(open_simulator(SimConfig(), recognizer))
    return msgspec.structs.replace(config.session, url=str(sim.inference_url))
