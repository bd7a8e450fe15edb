"""Closing a PortAudio stream from a device actor: never raising, never hanging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
import trio.testing
from structlog.testing import capture_logs

from adapters.audio.backend import DeviceFailed
from engine.actors._devicecalls import close_stream, quiet_close
from engine.actors._handoff import BoundedCalls, in_thread


class Handle:
    """An input handle whose stop and close may fail; it records the calls."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.active = self.stopped = False

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")
        if self.fail:
            raise DeviceFailed("Stream is stopped")

    def close(self) -> None:
        self.calls.append("close")
        if self.fail:
            raise DeviceFailed("device gone")


class TestQuietClose:
    def test_stops_then_closes(self) -> None:
        """Graceful: stop first (PortAudio finishes what it holds), then close."""
        handle = Handle()
        quiet_close(handle, stop=True, actor="mic")
        assert handle.calls == ["stop", "close"]

    def test_failures_are_logged_not_raised(self) -> None:
        """A dying device's stop and close failures become debug lines under the actor's name."""
        handle = Handle(fail=True)
        with capture_logs() as logs:
            quiet_close(handle, stop=True, actor="playback")
        assert handle.calls == ["stop", "close"]
        assert [e["event"] for e in logs] == ["playback.stop_failed", "playback.close_failed"]

    def test_none_is_nothing(self) -> None:
        """No stream, nothing to close."""
        quiet_close(None, stop=True, actor="mic")


class TestCloseStream:
    async def test_closes_in_a_thread(self) -> None:
        """Without stop, only close runs, through the bounded calls."""
        handle = Handle()
        await close_stream(
            BoundedCalls(in_thread, 5.0), handle, stop=False, what="closing it", actor="mic"
        )
        assert handle.calls == ["close"]

    async def test_a_stuck_close_is_abandoned_and_logged(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """PortAudio hanging in close: abandoned after the timeout, logged, not raised."""
        release = trio.Event()

        async def hang(fn: Callable[[], Any]) -> Any:
            await release.wait()
            return fn()

        calls = BoundedCalls(hang, 2.0)
        with capture_logs() as logs:
            await close_stream(calls, Handle(), stop=False, what="closing it", actor="mic")
        assert trio.current_time() == 2.0
        assert logs[-1]["event"] == "mic.close_failed" and logs[-1]["log_level"] == "error"
        assert calls.stuck == ["closing it"]

    async def test_shielded_close_runs_while_cancelled(self) -> None:
        """shield=True: the stream is closed even when the caller is cancelled."""
        handle = Handle()
        with trio.CancelScope() as scope:
            scope.cancel()
            await close_stream(
                BoundedCalls(in_thread, 5.0),
                handle,
                stop=True,
                what="closing the device",
                actor="playback",
                shield=True,
            )
        assert handle.calls == ["stop", "close"]
