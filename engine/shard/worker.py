"""A worker process of ``steno transcribe/translate --processes N``: ``python -m engine.shard.worker``.

Theory of operation
-------------------
The parent starts it with :func:`adapters.children.open_child` (its own process
group, SIGINT and SIGTERM blocked: the parent alone decides when it drains or
stops) and talks to it over two pipes (:mod:`engine.shard._wire`)::

    parent ── stdin:  Setup, Job…, Drain, NoMore, Stop ──► worker
    parent ◄─ stdout: Hello, Want, Out(event)…, Finished ─ worker

The worker runs each file exactly as a single ``steno`` process does
(:func:`engine.pipeline.run_file_stream`, at most ``Setup.jobs`` at once, one
:class:`~engine.ratelimit.StartLimiter` sized by ``STENO_RATE_SHARE``) and sends
every console event up as :class:`~engine.shard._wire.Out`, then the file's
:class:`~engine.shard._wire.Finished`. It asks for files (``Want``) as its slots
free up; the parent hands them out.

Ending: after ``NoMore`` it finishes its files, flushes, closes the pipe (that
end of file is its goodbye) and exits 0. ``Drain`` ends its streams gracefully
(the first Ctrl-C), ``Stop`` cancels them (the second). The end of its stdin
means the parent is gone: it stops at once, so it never outlives its parent.

Its stdout is kept for the frames: fd 1 then points at stderr, so a stray print
cannot corrupt the pipe. Log lines go to the inherited stderr, formatted as the
parent's.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import TYPE_CHECKING, Final

import msgspec
import structlog
import trio

from engine import logging as steno_logging
from engine.actors import console
from engine.events import Event, StreamEnded, StreamError
from engine.pipeline import run_file_stream
from engine.policy import RATE_LIMITS
from engine.ratelimit import StartLimiter
from engine.shard._wire import (
    Drain,
    Finished,
    Framer,
    FromWorker,
    Hello,
    Job,
    NoMore,
    Out,
    ProtocolViolation,
    Setup,
    Stop,
    ToWorker,
    Want,
)
from engine.wiring import EDGES, Edge

if TYPE_CHECKING:
    from engine.pipeline import FileStreamConfig

__all__ = ["OUTBOX", "main", "serve"]

log = structlog.get_logger("steno.shard.worker")

OUTBOX: Final = Edge(256, "block", "events to the parent's console; a slow console slows streams")
"""The edge from the worker's streams to its pipe writer (as ``renderer->console``)."""

SETUP_TIMEOUT_S: Final = 60.0
"""The parent sends ``Setup`` right after start-up; a worker never told waits no longer."""

_READ_BYTES: Final = 1 << 16


class _ParentGone(Exception):
    """The parent closed our stdin or our stdout pipe: stop now."""


async def serve(inbox: trio.abc.ReceiveStream, wire: trio.abc.SendStream) -> int:
    """Serve one parent: read ``Setup``, stream the files it sends; the exit status.

    Args:
        inbox: the parent's messages (our stdin).
        wire: our messages to the parent (our stdout, duplicated); closed at the end.

    Returns:
        0 after ``NoMore`` and every file finished; 1 when stopped (``Stop``) or
        when the parent went away.

    Error handling: a broken pipe or a malformed message ends the worker (status 1)
    after one log line; a stream that raises is reported as its file ``failed``.
    """
    messages_send, messages_recv = trio.open_memory_channel[ToWorker](8)  # few, tiny
    outbox_send, outbox_recv = trio.open_memory_channel[FromWorker](OUTBOX.size)
    said_goodbye = trio.Event()  # every message is on the pipe, and the pipe closed
    stopped = False
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read, inbox, messages_send)
            nursery.start_soon(_write, outbox_recv, wire, said_goodbye)
            async with outbox_send:
                await outbox_send.send(Hello(pid=os.getpid()))
                with trio.fail_after(SETUP_TIMEOUT_S):
                    setup = await messages_recv.receive()
                if not isinstance(setup, Setup):
                    raise ProtocolViolation(f"{type(setup).__name__} before Setup")
                steno_logging.configure(json=setup.log_json, level=setup.log_level)
                stopped = await _Files(setup, outbox_send).run(messages_recv)
            if not stopped:
                await said_goodbye.wait()
            nursery.cancel_scope.cancel()
    except* (_ParentGone, trio.BrokenResourceError, trio.ClosedResourceError):
        # After our goodbye the parent closes our stdin: that end is no news.
        if not said_goodbye.is_set():
            log.info("shard.worker.parent_gone")
    except* (ProtocolViolation, trio.TooSlowError) as group:
        log.error("shard.worker.protocol", error=str(group.exceptions[0]))
    return 0 if said_goodbye.is_set() and not stopped else 1


class _Files:
    """The files of one worker: started as ``Job``s come, ended by the parent's word."""

    def __init__(self, setup: Setup, outbox: trio.MemorySendChannel[FromWorker]) -> None:
        self._setup = setup
        self._outbox = outbox
        self._drain = trio.Event()
        # this process's share (STENO_RATE_SHARE) of the run's budget
        limits = RATE_LIMITS if setup.start_limits is None else setup.start_limits
        self._limiter = StartLimiter(limits)
        self._verbose = setup.log_level <= logging.INFO
        self._shows = functools.partial(
            console.shown, tty=setup.console_tty, translate=setup.translate
        )
        self._active = 0
        self._no_more = False
        self._stopped = False
        self._scope = trio.CancelScope()

    async def run(self, messages: trio.MemoryReceiveChannel[ToWorker]) -> bool:
        """Stream files until ``NoMore`` and the last one ended; True when stopped.

        Cancellation: ``Stop`` cancels every stream at once (their output files keep
        what was written: each record is one write).
        """
        with self._scope:
            async with trio.open_nursery() as files:
                files.start_soon(self._obey, messages, files)
                await self._outbox.send(Want(n=self._setup.jobs))
        return self._stopped

    async def _obey(
        self, messages: trio.MemoryReceiveChannel[ToWorker], files: trio.Nursery
    ) -> None:
        async for message in messages:
            if isinstance(message, Job):
                if self._no_more:
                    raise ProtocolViolation("a Job after NoMore")
                self._active += 1
                files.start_soon(self._one, message)
            elif isinstance(message, Drain):
                self._drain.set()
            elif isinstance(message, NoMore):
                self._no_more = True
                self._end_if_idle()
            elif isinstance(message, Stop):
                log.info("shard.worker.stopped")
                self._stopped = True
                self._scope.cancel()
            else:
                raise ProtocolViolation(f"a second {type(message).__name__}")

    def _end_if_idle(self) -> None:
        """After ``NoMore``, the last file's end ends the message loop too."""
        if self._no_more and self._active == 0:
            self._scope.cancel()

    async def _one(self, job: Job) -> None:
        config = _file_config(self._setup.template, job)
        console_send, console_recv = trio.open_memory_channel[Event](
            EDGES["renderer->console"].size
        )
        try:
            async with trio.open_nursery() as forward:
                forward.start_soon(self._forward, console_recv)
                with console_send:
                    ended = await run_file_stream(
                        config,
                        console=console_send,
                        drain=self._drain,
                        limiter=self._limiter,
                        console_if=self._shows,
                    )
        except Exception as exc:  # one broken stream must not take the others down
            log.error("shard.stream_failed", error=repr(exc), exc_info=self._verbose)
            now = trio.current_time()
            error = StreamError("worker", f"unexpected error: {exc!r}", stream=job.stream, t=now)
            ended = StreamEnded("failed", stream=job.stream, t=now)
            await self._outbox.send(Out(event=error))
            await self._outbox.send(Out(event=ended))
        await self._outbox.send(Finished(index=job.index, ended=ended))
        await self._outbox.send(Want(n=1))
        self._active -= 1
        self._end_if_idle()

    async def _forward(self, events: trio.MemoryReceiveChannel[Event]) -> None:
        async with events:
            async for event in events:
                await self._outbox.send(Out(event=event))  # type: ignore[arg-type]


def _file_config(template: FileStreamConfig, job: Job) -> FileStreamConfig:
    session = msgspec.structs.replace(template.session, stream=job.stream)
    return msgspec.structs.replace(template, path=job.path, output_stem=job.stem, session=session)


async def _read(inbox: trio.abc.ReceiveStream, messages: trio.MemorySendChannel[ToWorker]) -> None:
    """Parse the parent's frames onto ``messages``; its end of file is ``_ParentGone``."""
    framer = Framer(ToWorker)
    async with inbox, messages:
        while True:
            framer.receive_data(await inbox.receive_some(_READ_BYTES))
            for message in framer.messages():
                await messages.send(message)
            if framer.closed:
                raise _ParentGone


async def _write(
    outbox: trio.MemoryReceiveChannel[FromWorker], wire: trio.abc.SendStream, done: trio.Event
) -> None:
    """Frame every message onto the pipe, in order, a batch per write; close it at the end."""
    framer = Framer(FromWorker)
    async with outbox, wire:
        async for message in outbox:
            chunk = [framer.frame(message)]
            while len(chunk) < 64:
                try:
                    chunk.append(framer.frame(outbox.receive_nowait()))
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await wire.send_all(b"".join(chunk))
    done.set()


def main() -> int:
    """The worker's entry point (``python -m engine.shard.worker``); its exit status."""
    wire_fd = os.dup(1)
    os.dup2(2, 1)  # from now on a stray print goes to stderr, never into the frames
    inbox_fd = os.dup(0)
    try:
        return trio.run(
            functools.partial(
                serve, trio.lowlevel.FdStream(inbox_fd), trio.lowlevel.FdStream(wire_fd)
            )
        )
    except Exception as exc:  # the last line of a worker: one line, no traceback
        print(f"steno: worker {os.getpid()} failed: {exc!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
