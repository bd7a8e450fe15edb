from __future__ import annotations

import errno
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from adapters.audio._batchread import current_write_batcher
from adapters.sinks import Sink, open_sinks
from engine.actors import renderer
from engine.events import (
    AudioFrame,
    Event,
    Final,
    Partial,
    StreamEnded,
    StreamError,
    TranslatedAudio,
)

EVENTS: list[Event] = [
    Partial(0, 0, "he", stream="s"),
    AudioFrame(0, b"\0\0", 16_000, stream="s"),
    Final(0, 0, 16_000, "hello", stream="s"),
    TranslatedAudio("r", b"\0\0", stream="s"),
    StreamEnded("ok", finals=1, stream="s"),
]
NON_AUDIO = [e for e in EVENTS if not isinstance(e, AudioFrame | TranslatedAudio)]


class RecordingSink:
    def __init__(self, *, fail_on: type[Event] | None = None, fail_close: bool = False) -> None:
        self.events: list[Event] = []
        self.closed = 0
        self.path = Path(f"/out/{'bad' if fail_on or fail_close else 'good'}.x")
        self._fail_on = fail_on
        self._fail_close = fail_close

    def touches_file(self, events: Sequence[Event]) -> bool:
        return True  # a recording stands for a file: every batch takes the thread hop

    def write(self, event: Event) -> None:
        if self.closed:
            raise ValueError("write after close")
        if self._fail_on is not None and isinstance(event, self._fail_on):
            raise OSError(errno.ENOSPC, "No space left on device")
        self.events.append(event)

    def close(self) -> None:
        self.closed += 1
        if self._fail_close:
            raise OSError(errno.EIO, "Input/output error")


async def _render(
    events: list[Event],
    sinks: Sequence[Sink],
    *,
    forward: bool = True,
) -> list[Event]:
    """Run the renderer over ``events``; return what it forwarded."""
    send, inbox = trio.open_memory_channel[Event](len(events) + 1)
    fwd_send, fwd_recv = trio.open_memory_channel[Event](2)
    forwarded: list[Event] = []

    async def console() -> None:
        async with fwd_recv:
            async for event in fwd_recv:
                forwarded.append(event)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            if forward:
                nursery.start_soon(console)
            else:
                fwd_recv.close()
            await nursery.start(
                lambda task_status: renderer.run(
                    inbox=inbox,
                    sinks=sinks,
                    forward=fwd_send if forward else None,
                    task_status=task_status,
                )
            )
            async with send:
                for event in events:
                    await send.send(event)
    return forwarded


class TestFanOut:
    async def test_every_sink_gets_every_event(self) -> None:
        """Each sink sees all events in order, audio included, and is closed once."""
        sinks = [RecordingSink(), RecordingSink()]
        await _render(EVENTS, sinks)
        for sink in sinks:
            assert sink.events == EVENTS
            assert sink.closed == 1

    async def test_forwards_non_audio(self) -> None:
        """The console gets every non-audio event, in order."""
        assert await _render(EVENTS, [RecordingSink()]) == NON_AUDIO

    async def test_forwards_only_what_the_console_wants(self) -> None:
        """With forward_if, the rest is written to the sinks but never sent to the console."""
        send, inbox = trio.open_memory_channel[Event](len(EVENTS))
        fwd_send, fwd_recv = trio.open_memory_channel[Event](len(EVENTS))
        for event in EVENTS:
            send.send_nowait(event)
        send.close()
        sink = RecordingSink()
        with trio.fail_after(10):
            await renderer.run(
                inbox=inbox,
                sinks=[sink],
                forward=fwd_send,
                forward_if=lambda e: not isinstance(e, Partial),
            )
        async with fwd_recv:
            forwarded = [event async for event in fwd_recv]
        assert forwarded == [e for e in NON_AUDIO if not isinstance(e, Partial)]
        assert sink.events == EVENTS

    async def test_without_console(self) -> None:
        """With no console the sinks are still written."""
        sink = RecordingSink()
        assert await _render(EVENTS, [sink], forward=False) == []
        assert sink.events == EVENTS

    async def test_queued_events_share_a_thread_hop(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Events already waiting are written in one batch, up to MAX_BATCH."""
        batches: list[int] = []
        real = renderer.write_batch

        def spy(sinks: list[RecordingSink], events: list[Event]) -> list[renderer.SinkFailure]:
            batches.append(len(events))
            return real(sinks, events)

        monkeypatch.setattr(renderer, "write_batch", spy)
        monkeypatch.setattr(renderer, "MAX_BATCH", 4)
        send, inbox = trio.open_memory_channel[Event](10)
        for i in range(10):
            send.send_nowait(Partial(i, 0, "x"))
        send.close()
        sink = RecordingSink()
        with trio.fail_after(10):
            await renderer.run(inbox=inbox, sinks=[sink])
        assert batches == [4, 4, 2]
        assert len(sink.events) == 10

    async def test_batches_that_stay_in_memory_take_no_thread_hop(self) -> None:
        """A batch no sink writes to a file for is written in the renderer's thread; a batch
        with a final (here: the sink's only file write) in a worker thread; order kept."""
        main = threading.get_ident()

        class FinalsToFile(RecordingSink):
            def __init__(self) -> None:
                super().__init__()
                self.threads: list[tuple[str, bool]] = []

            def touches_file(self, events: Sequence[Event]) -> bool:
                return any(isinstance(e, Final) for e in events)

            def write(self, event: Event) -> None:
                self.threads.append((type(event).__name__, threading.get_ident() == main))
                super().write(event)

        send, inbox = trio.open_memory_channel[Event](10)
        events: list[Event] = [Partial(0, 0, "he"), Partial(0, 0, "hel")]
        final: Event = Final(0, 0, 16_000, "hello")
        sink = FinalsToFile()
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: renderer.run(inbox=inbox, sinks=[sink]))
                for event in events:
                    send.send_nowait(event)
                await trio.testing.wait_all_tasks_blocked()
                await send.send(final)
                await send.aclose()
        assert sink.events == [*events, final]
        assert sink.threads == [("Partial", True), ("Partial", True), ("Final", False)]

    async def test_the_streams_writes_and_closes_share_thread_hops(self) -> None:
        """Twenty renderers with a final each: their writes (and then their closes) go
        in a few worker-thread hops of the run's write batcher, not a hop each."""
        batcher = current_write_batcher()
        sinks = [RecordingSink() for _ in range(20)]
        final: Event = Final(0, 0, 16_000, "hello")
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for sink in sinks:
                    send, inbox = trio.open_memory_channel[Event](1)
                    send.send_nowait(final)
                    send.close()
                    nursery.start_soon(lambda i=inbox, s=sink: renderer.run(inbox=i, sinks=[s]))
        assert all(s.events == [final] and s.closed == 1 for s in sinks)
        assert batcher.jobs == 40  # 20 writes, 20 closes
        assert batcher.batches <= 4

    async def test_writes_real_files(self, tmp_path: Path) -> None:
        """With the real sinks, the subtitle and event files come out complete."""
        sinks = open_sinks(tmp_path, "talk", ["srt", "jsonl"])
        await _render(EVENTS, sinks)
        assert (tmp_path / "talk.srt").read_text() == (
            "1\n00:00:00,000 --> 00:00:01,000\nhello\n\n"
        )
        assert len((tmp_path / "talk.jsonl").read_bytes().splitlines()) == len(NON_AUDIO)


class TestSinkFailure:
    async def test_failure_is_isolated_and_reported(self) -> None:
        """A full disk on one sink drops it, reports it, and the others get everything."""
        good, bad = RecordingSink(), RecordingSink(fail_on=Final)
        forwarded = await _render(EVENTS, [bad, good])
        assert bad.events == EVENTS[:2]
        assert bad.closed == 1
        errors = [e for e in forwarded if isinstance(e, StreamError)]
        assert len(errors) == 1
        assert errors[0].kind == "sink"
        assert errors[0].stream == "s"
        assert "/out/bad.x" in errors[0].message
        assert "No space left on device" in errors[0].message
        assert good.events[: len(EVENTS)] == EVENTS
        assert good.events[len(EVENTS) :] == errors
        assert [e for e in forwarded if not isinstance(e, StreamError)] == NON_AUDIO

    async def test_close_failure_is_reported(self) -> None:
        """A sink failing at close is reported; the other sinks are closed too."""
        good, bad = RecordingSink(), RecordingSink(fail_close=True)
        forwarded = await _render(EVENTS, [bad, good])
        assert good.closed == 1
        assert bad.closed == 1
        error = forwarded[-1]
        assert isinstance(error, StreamError)
        assert error.message.startswith("closing /out/bad.x failed (Input/output error)")

    async def test_all_sinks_failing(self) -> None:
        """When every sink fails the events still reach the console."""
        forwarded = await _render(EVENTS, [RecordingSink(fail_on=Partial)])
        assert [e for e in forwarded if not isinstance(e, StreamError)] == NON_AUDIO


class TestChannels:
    async def test_closes_inbox_and_forward(self) -> None:
        """At end of input the renderer closes its inbox and its forward channel."""
        send, inbox = trio.open_memory_channel[Event](1)
        fwd_send, fwd_recv = trio.open_memory_channel[Event](1)
        other_send = send.clone()
        send.close()
        other_send.close()
        with trio.fail_after(10):
            await renderer.run(inbox=inbox, sinks=[], forward=fwd_send)
            with pytest.raises(trio.EndOfChannel):
                await fwd_recv.receive()
        with pytest.raises(trio.ClosedResourceError):
            inbox.receive_nowait()

    async def test_closed_console_is_ignored(self) -> None:
        """If the console is gone, the renderer keeps writing its sinks."""
        sink = RecordingSink()
        send, inbox = trio.open_memory_channel[Event](len(EVENTS))
        fwd_send, fwd_recv = trio.open_memory_channel[Event](1)
        fwd_recv.close()
        for event in EVENTS:
            send.send_nowait(event)
        send.close()
        with trio.fail_after(10):
            await renderer.run(inbox=inbox, sinks=[sink], forward=fwd_send)
        assert sink.events == EVENTS

    async def test_blocks_on_a_full_console(self) -> None:
        """The console lane is back-pressured (policy block): the renderer waits, drops nothing."""
        send, inbox = trio.open_memory_channel[Event](len(EVENTS))
        fwd_send, fwd_recv = trio.open_memory_channel[Event](0)
        for event in NON_AUDIO:
            send.send_nowait(event)
        send.close()
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                # No sinks, so no worker thread: quiescence is deterministic.
                nursery.start_soon(lambda: renderer.run(inbox=inbox, sinks=[], forward=fwd_send))
                await trio.testing.wait_all_tasks_blocked()
                assert fwd_send.statistics().tasks_waiting_send == 1
                async with fwd_recv:
                    received = [event async for event in fwd_recv]
        assert received == NON_AUDIO

    async def test_cancel_closes_sinks(self) -> None:
        """A cancelled renderer still closes (flushes, fsyncs) its sinks and channels."""
        sink = RecordingSink()
        send, inbox = trio.open_memory_channel[Event](1)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: renderer.run(
                        inbox=inbox, sinks=[sink], task_status=task_status
                    )
                )
                await send.send(EVENTS[0])
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
        assert sink.events == EVENTS[:1]
        assert sink.closed == 1
        with pytest.raises(trio.BrokenResourceError):
            send.send_nowait(EVENTS[0])


async def _render_in_place(events: list[Event], sinks: Sequence[Sink]) -> list[Event]:
    """:func:`renderer.render` over ``events`` in this task; return what it forwarded."""
    fwd_send, fwd_recv = trio.open_memory_channel[Event](2)
    forwarded: list[Event] = []

    async def source() -> AsyncIterator[Event]:
        for event in events:
            await trio.lowlevel.checkpoint()
            yield event

    async def console() -> None:
        async with fwd_recv:
            async for event in fwd_recv:
                forwarded.append(event)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(console)
            await renderer.render(source(), sinks=sinks, forward=fwd_send)
    return forwarded


class TestRenderInPlace:
    async def test_same_files_as_the_actor(self, tmp_path: Path) -> None:
        """In the caller's task, the real sinks write byte for byte what the actor writes."""
        formats = ["txt", "srt", "vtt", "jsonl"]
        await _render(EVENTS, open_sinks(tmp_path / "actor", "talk", formats))
        forwarded = await _render_in_place(EVENTS, open_sinks(tmp_path / "here", "talk", formats))
        assert forwarded == NON_AUDIO
        for name in ("talk.txt", "talk.srt", "talk.vtt", "talk.jsonl"):
            assert (tmp_path / "here" / name).read_bytes() == (
                tmp_path / "actor" / name
            ).read_bytes()

    async def test_failure_is_isolated_and_reported(self) -> None:
        """A sink that fails is dropped and reported right after the event it failed on."""
        good, bad = RecordingSink(), RecordingSink(fail_on=Final)
        forwarded = await _render_in_place(EVENTS, [bad, good])
        errors = [e for e in forwarded if isinstance(e, StreamError)]
        assert len(errors) == 1 and "/out/bad.x" in errors[0].message
        assert bad.events == EVENTS[:2] and bad.closed == 1
        assert good.events == [*EVENTS[:3], *errors, *EVENTS[3:]] and good.closed == 1

    async def test_cancel_closes_sinks_and_forward(self) -> None:
        """Cancelled while waiting for an event: the sinks are closed, the console lane too."""
        sink = RecordingSink()
        fwd_send, fwd_recv = trio.open_memory_channel[Event](8)

        async def stalls() -> AsyncIterator[Event]:
            yield EVENTS[0]
            await trio.sleep_forever()
            yield EVENTS[1]  # pragma: no cover - never reached

        with trio.move_on_after(1):
            await renderer.render(stalls(), sinks=[sink], forward=fwd_send)
        assert sink.events == [EVENTS[0]] and sink.closed == 1
        assert fwd_recv.receive_nowait() == EVENTS[0]
        with pytest.raises(trio.EndOfChannel):
            fwd_recv.receive_nowait()
