"""A task's two send lanes book a frame identically (``engine/actors/_task.py``).

The fast lane (:meth:`Task.try_send_audio`, the pump's synchronous step) inlines
what the awaited lane (:meth:`Task.skip_to` then :meth:`Task.send_audio`, the
pump's task) does through the connection's ``SendPath``: the task's clock and
sent end, the connection's audio count, first-audio time and stall watch. Any
mix of lanes must leave the same state as the awaited lane alone.
"""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dashscope._liveness import Liveness
from adapters.dashscope._send_path import SendPath
from adapters.dashscope.connection import LinkSettings
from engine.actors._task import Task
from engine.events import AudioFrame

RATE = 16000


class Wire:
    """A transport that takes every frame on either lane."""

    def __init__(self) -> None:
        self.frames: list[bytes | str] = []

    def send_nowait(self, frame: bytes | str) -> bool:
        self.frames.append(frame)
        return True

    async def send(self, frame: bytes | str) -> None:  # pragma: no cover - never waits
        self.frames.append(frame)
        await trio.lowlevel.checkpoint()


class Core:
    def send(self, command: bytes) -> bytes:
        return command


class Link(SendPath[bytes]):
    """The send half of a started connection, over a :class:`Wire`."""

    task_id = "t"

    def __init__(self) -> None:
        self.settings = LinkSettings(url="ws://x/", api_key="", user_agent="t", rate=RATE)
        self.error = None
        self.first_audio_t = None
        self.finish_sent_t = None
        self.audio_samples = 0
        self.wire = Wire()
        self._core = Core()
        self._transport = self.wire  # type: ignore[assignment]
        self._live = Liveness(stall_s=30.0, ping_interval_s=15.0, pong_timeout_s=10.0)
        self._reported = True
        self._over = False
        self._held = None

    def _audio(self, pcm: bytes) -> bytes:
        return pcm


def state(task: Task) -> tuple[object, ...]:
    link = task.link
    assert isinstance(link, Link)
    clock = task.clock
    return (
        task.sent_until,
        clock.task_samples,
        clock.global_end,
        clock._anchors,
        link.audio_samples,
        link.first_audio_t,
        link._live.unanswered_since,
        link.wire.frames,
    )


# One frame: (samples, hole before it, voiced, fast lane?, heard an answer before it?)
plan_st = st.lists(
    st.tuples(
        st.sampled_from([1, 160, 1600]),
        st.sampled_from([0, 0, 0, 800]),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    min_size=1,
    max_size=30,
)


class TestLanesBookAlike:
    @settings(max_examples=100, deadline=None)
    @given(plan=plan_st, offset=st.sampled_from([0, 4800]))
    def test_any_mix_of_lanes_books_as_the_awaited_lane(
        self, plan: list[tuple[int, int, bool, bool, bool]], offset: int
    ) -> None:
        """Clock, sent end, audio count, first-audio time, stall watch and wire all equal."""

        async def main() -> None:
            mixed = Task(Link(), offset, RATE, 1)  # type: ignore[arg-type]
            awaited = Task(Link(), offset, RATE, 1)  # type: ignore[arg-type]
            start = offset
            for samples, hole, voiced, fast, heard in plan:
                await trio.sleep(0.1)
                frame = AudioFrame(start + hole, bytes(2 * samples), RATE)
                start = frame.end
                for task in (mixed, awaited):
                    if heard:
                        task.link._live.heard(trio.current_time())
                if not (fast and mixed.try_send_audio(frame, voiced=voiced)):
                    await awaited_send(mixed, frame, voiced)
                await awaited_send(awaited, frame, voiced)
                assert state(mixed) == state(awaited)

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    async def test_the_fast_lane_wakes_a_waiter_on_the_audio_it_sent(self) -> None:
        """audio_reaches returns once a fast-lane frame reaches its sample."""
        task = Task(Link(), 0, RATE, 1)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task.audio_reaches, 1600)
            await trio.testing.wait_all_tasks_blocked()
            assert task.try_send_audio(AudioFrame(0, bytes(1600), RATE), voiced=True)
            await trio.testing.wait_all_tasks_blocked()
            assert nursery.child_tasks  # 800 samples: not there yet
            assert task.try_send_audio(AudioFrame(800, bytes(1600), RATE), voiced=True)
        assert task.sent_until == 1600


async def awaited_send(task: Task, frame: AudioFrame, voiced: bool) -> None:
    """What the pump's task does with a live frame (``Pump._send_run`` of one frame)."""
    if frame.start > task.sent_until:
        task.skip_to(frame.start)
    await task.send_audio(frame.pcm, frame.end, voiced=voiced)
