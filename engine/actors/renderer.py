"""The renderer: one per stream, fans its events out to the sinks and the console.

Sinks do blocking file I/O, so every write that may touch a file runs in a worker
thread. To keep the thread hops cheap, the renderer takes whatever is already
queued (up to :data:`MAX_BATCH` events) and writes it in one call, and the calls of
every stream's renderer share the hops: the run's write batcher
(:func:`adapters.audio._batchread.current_write_batcher`) runs every call queued
while the previous batch was in the thread in one hop, and while the writes are
coming in a write may wait :data:`WRITE_GATHER_S` for others to join it (hundreds
of streams' finals and closes share a few hops a second, not a hop each: a hop
costs more CPU than the writes it carries). A batch no sink would write to a file for
(``Sink.touches_file``: the partials, mostly) is written in place, without a hop.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, NamedTuple

import structlog
import trio

from adapters.audio._batchread import current_write_batcher
from engine.events import AudioEvent, StreamError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from adapters.sinks.base import Sink
    from engine.events import Event

__all__ = [
    "MAX_BATCH",
    "WRITE_GATHER_S",
    "SinkFailure",
    "close_sinks",
    "render",
    "run",
    "sink_error",
    "write_batch",
]

MAX_BATCH = 64

#: How long a file write may wait to share its worker-thread hop with other streams'
#: writes, while writes are coming in (a lone one never waits).
WRITE_GATHER_S = 0.1

log = structlog.get_logger()


class SinkFailure(NamedTuple):
    """A sink that raised, the event it failed on (None: while closing) and the error."""

    sink: Sink
    event: Event | None
    error: Exception


def write_batch(sinks: Sequence[Sink], events: Sequence[Event]) -> list[SinkFailure]:
    """Write ``events`` to every sink in order; blocking, run it in a thread.

    A sink that raises gets none of the later events of the batch; the others are
    unaffected.

    Returns:
        one failure per sink that raised.
    """
    failures: list[SinkFailure] = []
    for sink in sinks:
        for event in events:
            try:
                sink.write(event)
            except Exception as exc:
                failures.append(SinkFailure(sink, event, exc))
                break
    return failures


def close_sinks(sinks: Sequence[Sink]) -> list[SinkFailure]:
    """Close every sink (flush and fsync); blocking. A failure does not stop the others."""
    failures: list[SinkFailure] = []
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:
            failures.append(SinkFailure(sink, None, exc))
    return failures


def sink_error(failure: SinkFailure, *, stream: str, t: float) -> StreamError:
    """The event reporting a sink failure; the stream itself goes on."""
    sink, event, exc = failure
    target = getattr(sink, "path", None) or repr(sink)
    when = "closing" if event is None else "writing"
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return StreamError(
        "sink",
        f"{when} {target} failed ({reason}); its output stops here, the other outputs go on",
        permanent=False,
        stream=stream,
        t=t,
    )


async def run(
    *,
    inbox: trio.MemoryReceiveChannel[Event],
    sinks: Sequence[Sink],
    forward: trio.MemorySendChannel[Event] | None = None,
    forward_if: Callable[[Event], bool] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Write every event to every sink and forward the non-audio ones to the console.

    Args:
        inbox: the stream's events.
        sinks: the stream's outputs; the renderer takes them over and closes them.
        forward: the shared console's channel (a clone per stream), or None.
            Bounded with policy *block*: a slow console slows this stream.
        forward_if: which non-audio events to forward (None: all of them), e.g.
            :func:`engine.actors.console.shown`: what the console would not print
            never costs it a wake.

    Channels:
        Closes ``inbox`` and ``forward`` when done. Ends when ``inbox`` ends.

    Error handling:
        A sink that raises (e.g. disk full) is closed and dropped; a
        ``StreamError(kind="sink")`` is written to the remaining sinks and
        forwarded, and the renderer goes on. A closed console is ignored.

    Cancellation:
        A batch being written finishes first (threads are not abandoned), then the
        sinks are closed under a shield, so every file is a valid, fsynced prefix.
    """
    with inbox:
        task_status.started()

        async def take() -> list[Event] | None:
            try:
                first = await inbox.receive()
            except trio.EndOfChannel:
                return None
            return _take_batch(first, inbox)

        await _render(take, sinks, forward, forward_if)


async def render(
    events: AsyncIterator[Event],
    *,
    sinks: Sequence[Sink],
    forward: trio.MemorySendChannel[Event] | None = None,
    forward_if: Callable[[Event], bool] | None = None,
) -> None:
    """:func:`run` in the caller's task, over ``events`` (e.g. ``Stream.events()``).

    The same writes, forwards, error handling and closing as :func:`run`, without
    a task and a channel between the events and the sinks: an event costs no task
    switch on its way to the files (a run of a thousand files renders ~2,500 events
    a second). Each event is written as it comes (a write to a file shares its
    thread hop with the other streams', :func:`run`'s batches are per stream).
    While a write is in the thread, the next events wait in ``events``' own bound.

    Channels: closes ``forward`` when done. Ends when ``events`` ends.
    """

    async def take() -> list[Event] | None:
        try:
            return [await anext(events)]
        except StopAsyncIteration:
            return None

    await _render(take, sinks, forward, forward_if)


async def _render(
    take: Callable[[], Awaitable[list[Event] | None]],
    sinks: Sequence[Sink],
    forward: trio.MemorySendChannel[Event] | None,
    forward_if: Callable[[Event], bool] | None,
) -> None:
    """Deliver every batch ``take`` gives (None: the end), then close the sinks."""
    lane = _Forward(forward, forward_if)
    active = list(sinks)
    stream = ""
    with contextlib.ExitStack() as stack:
        stack.enter_context(structlog.contextvars.bound_contextvars(actor="renderer"))
        if forward is not None:
            stack.enter_context(forward)
        try:
            while (batch := await take()) is not None:
                stream = batch[-1].stream
                await _deliver(batch, active, lane)
        finally:
            # Shielded so that a cancelled stream still leaves fsynced files.
            with trio.CancelScope(shield=True):
                failures = (
                    await _blocking(functools.partial(close_sinks, tuple(active))) if active else []
                )
        await lane.send([_report(f, stream) for f in failures])


def _take_batch(first: Event, inbox: trio.MemoryReceiveChannel[Event]) -> list[Event]:
    batch = [first]
    while len(batch) < MAX_BATCH:
        try:
            batch.append(inbox.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return batch


async def _deliver(
    batch: list[Event],
    active: list[Sink],
    forward: _Forward,
) -> None:
    # Errors are reported to the sinks that survived, which may fail in turn; each
    # round drops at least one sink, so this ends.
    stream = batch[-1].stream
    pending = batch
    while pending:
        if not active:
            failures = []
        elif any(sink.touches_file(pending) for sink in active):
            failures = await _blocking(functools.partial(write_batch, tuple(active), pending))
        else:
            failures = write_batch(active, pending)  # memory only: no thread hop
        await forward.send(pending)
        pending = []
        if failures:
            failed = [f.sink for f in failures]
            active[:] = [sink for sink in active if sink not in failed]
            # The failed sinks are released now: a full disk must not also leak fds.
            await _blocking(functools.partial(close_sinks, failed))
            pending = [_report(f, f.event.stream if f.event else stream) for f in failures]


async def _blocking(call: Callable[[], list[SinkFailure]]) -> list[SinkFailure]:
    """``call()`` in the run's write batcher: a worker thread, never abandoned."""
    return await current_write_batcher().run_sync(call, gather_s=WRITE_GATHER_S)


def _report(failure: SinkFailure, stream: str) -> StreamError:
    log.warning("sink.failed", sink=repr(failure.sink), error=repr(failure.error), stream=stream)
    return sink_error(failure, stream=stream, t=trio.current_time())


class _Forward:
    """The console lane of one renderer: what it forwards, and where."""

    __slots__ = ("channel", "wanted")

    def __init__(
        self,
        channel: trio.MemorySendChannel[Event] | None,
        wanted: Callable[[Event], bool] | None,
    ) -> None:
        self.channel = channel
        self.wanted = wanted

    async def send(self, events: list[Event]) -> None:
        if self.channel is None:
            return
        for event in events:
            if isinstance(event, AudioEvent) or (
                self.wanted is not None and not self.wanted(event)
            ):
                continue
            try:
                await self.channel.send(event)
            except trio.BrokenResourceError:
                # The console is gone (it failed or the run is ending); the files matter more.
                return
