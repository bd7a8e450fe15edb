"""The embedding API for hosts that are not trio: plain threads and asyncio.

:class:`ThreadedStream` runs :func:`engine.stream.open_stream` in its own thread
with its own trio loop; ``push`` and ``events`` work from any thread.
:class:`AsyncioStream` wraps it for asyncio applications (awaitable ``push``,
``async for`` over events) without blocking their event loop.

    with ThreadedStream(config) as stream:
        reader = threading.Thread(target=lambda: [print(e) for e in stream.events()])
        reader.start()
        for chunk in chunks:
            stream.push(chunk, rate=48000)
    # leaving the block ends the input and waits for the task to finish
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import trio

from engine._util import unwrap_single_group
from engine.errors import StenoError
from engine.events import Event, StreamEnded
from engine.stream import Stream, StreamConfig, StreamStatistics, open_stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from types import TracebackType

    import numpy as np
    from numpy.typing import NDArray

__all__ = ["AsyncioStream", "ThreadedStream"]

_END = object()


class ThreadedStream:
    """A pushed stream on a background thread. Use it as a context manager.

    Args:
        config: the stream's configuration.
        start_timeout_s: how long ``start`` waits for the stream to be ready.
        events_maxsize: bound of the event queue to the host (the engine waits when full).
        open_kwargs: passed to :func:`open_stream` (``dial``, ``limiter``, ``clock``;
            the ``drain`` event is the stream's own: call :meth:`drain`).
    """

    def __init__(
        self,
        config: StreamConfig,
        *,
        start_timeout_s: float = 30.0,
        events_maxsize: int = 1024,
        **open_kwargs: Any,
    ) -> None:
        self.config = config
        self._start_timeout_s = start_timeout_s
        self._open_kwargs = open_kwargs
        self._events: queue.Queue[object] = queue.Queue(maxsize=events_maxsize)
        self._ready = threading.Event()
        self._stream: Stream | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._error: Exception | None = None
        self._drain: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="steno-stream", daemon=True)
        self.ended: StreamEnded | None = None

    # ------------------------------------------------------------- lifecycle

    def start(self) -> ThreadedStream:
        """Start the thread and wait until the stream accepts audio.

        Raises:
            StenoError: the stream could not start (bad config, for example).
            TimeoutError: it was not ready within ``start_timeout_s``.
        """
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            raise TimeoutError(f"the stream was not ready within {self._start_timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            with unwrap_single_group():
                trio.run(self._main)
        except Exception as exc:  # handed to the host thread, raised by its next call
            self._error = exc
        finally:
            self._ready.set()
            self._put(_END)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._drain = trio.Event()
        async with open_stream(self.config, drain=self._drain, **self._open_kwargs) as stream:
            self._stream = stream
            self._ready.set()
            async for event in stream.events():
                if isinstance(event, StreamEnded):
                    self.ended = event
                await trio.to_thread.run_sync(self._put, event)

    def _put(self, item: object) -> None:
        self._events.put(item)

    # --------------------------------------------------------------- audio

    def push(
        self,
        pcm: bytes | NDArray[np.generic],
        *,
        rate: int | None = None,
        channels: int | None = None,
    ) -> None:
        """Add audio from any thread; blocks while the engine is behind."""
        stream, token = self._live()
        trio.from_thread.run(
            lambda: stream.push(pcm, rate=rate, channels=channels), trio_token=token
        )

    def skip(
        self, samples: int, *, rate: int | None = None, reason: str = "skipped", lost: bool = False
    ) -> None:
        """Let source time pass without audio, from any thread (see :meth:`Stream.skip`)."""
        stream, token = self._live()
        trio.from_thread.run(
            lambda: stream.skip(samples, rate=rate, reason=reason, lost=lost), trio_token=token
        )

    def statistics(self) -> StreamStatistics:
        """A snapshot of the stream's counters, from any thread."""
        stream, token = self._live()
        return trio.from_thread.run_sync(stream.statistics, trio_token=token)

    def drain(self) -> None:
        """Stop retrying failures: the stream finishes within its deadlines. Idempotent."""
        _, token = self._live()
        event = self._drain
        if event is not None:
            trio.from_thread.run_sync(event.set, trio_token=token)

    def end_input(self) -> None:
        """No more audio; the task finishes. Idempotent."""
        if self._stream is None or self._token is None or not self._thread.is_alive():
            return
        stream, token = self._stream, self._token
        try:
            trio.from_thread.run(stream.end_input, trio_token=token)
        except trio.RunFinishedError:
            pass

    def _live(self) -> tuple[Stream, trio.lowlevel.TrioToken]:
        if self._error is not None:
            raise self._error
        if self._stream is None or self._token is None:
            raise StenoError(
                "the stream is not started; call start() or use it as a context manager"
            )
        return self._stream, self._token

    # -------------------------------------------------------------- events

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """The engine's events, in order, until the stream ends.

        Raises:
            queue.Empty: no event within ``timeout`` seconds (None waits forever).
        """
        while True:
            item = self._events.get(timeout=timeout)
            if item is _END:
                self._events.put(_END)  # later callers see the end too
                if self._error is not None:
                    raise self._error
                return
            assert isinstance(item, Event)
            yield item

    def next_event(self, timeout: float | None = None) -> Event | None:
        """One event, or None when the stream has ended."""
        for event in self.events(timeout):
            return event
        return None

    def close(self, timeout: float | None = 120.0) -> StreamEnded | None:
        """End the input, drain unread events, and wait for the thread."""
        self.end_input()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                self._events.get(timeout=0.05)
            except queue.Empty:
                pass
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the stream did not finish in time")
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.ended

    def __enter__(self) -> ThreadedStream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncioStream:
    """A pushed stream for asyncio applications; never blocks their loop.

    async with AsyncioStream(config) as stream:
        await stream.push(chunk, rate=16000)
        async for event in stream.events(): ...
    """

    def __init__(self, config: StreamConfig, **kwargs: Any) -> None:
        self._threaded = ThreadedStream(config, **kwargs)

    @property
    def ended(self) -> StreamEnded | None:
        return self._threaded.ended

    async def __aenter__(self) -> AsyncioStream:
        await asyncio.to_thread(self._threaded.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self._threaded.close)

    async def push(
        self,
        pcm: bytes | NDArray[np.generic],
        *,
        rate: int | None = None,
        channels: int | None = None,
    ) -> None:
        await asyncio.to_thread(self._threaded.push, pcm, rate=rate, channels=channels)

    async def skip(
        self, samples: int, *, rate: int | None = None, reason: str = "skipped", lost: bool = False
    ) -> None:
        await asyncio.to_thread(self._threaded.skip, samples, rate=rate, reason=reason, lost=lost)

    async def statistics(self) -> StreamStatistics:
        return await asyncio.to_thread(self._threaded.statistics)

    async def drain(self) -> None:
        await asyncio.to_thread(self._threaded.drain)

    async def end_input(self) -> None:
        await asyncio.to_thread(self._threaded.end_input)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            event = await asyncio.to_thread(self._threaded.next_event)
            if event is None:
                return
            yield event
