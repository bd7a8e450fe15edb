"""A simulated 24-hour soak: several streams, a fault every few minutes, bounded state.

Virtual time (MockClock) over a channel-backed fake WebSocket, with 1 s frames, so a
day of three streams runs in well under a minute of CI time.
"""

from __future__ import annotations

import random

import trio
import trio.testing
from supervisor_helpers import GROUP, RATE, Behaviour, ChannelServer, config, frame_pcm

from engine.actors import session
from engine.events import AudioFrame, AudioGap, Event, Final, StreamEnded
from engine.policy import DAEMON

FRAME_S = 5
FRAME = RATE * FRAME_S
DAY = 24 * 3600
STREAMS = 3


def day_of_faults(seed: int, connections: int = 2000) -> list[Behaviour]:
    """A fault every 1-7 minutes: failed tasks, dropped sockets, refused reconnects, stalls."""
    rng = random.Random(seed)
    plan: list[Behaviour] = []
    for _ in range(connections):
        after = max(1, rng.randint(60, 420) // FRAME_S)
        kind = rng.choice(["fail", "close", "throttle", "mute", "refuse"])
        if kind == "refuse":
            plan.append(Behaviour(reject=rng.choice([502, 503])))
            plan.append(Behaviour(close_after=after))
        elif kind == "fail":
            plan.append(Behaviour(fail_after=after))
        elif kind == "throttle":
            plan.append(Behaviour(fail_after=after, fail_code="Throttling.RateQuota"))
        elif kind == "mute":
            plan.append(Behaviour(mute_after=after))
        else:
            plan.append(Behaviour(close_after=after))
    return plan


class TestSoak:
    async def test_a_day_with_faults_every_few_minutes(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """24 h, 3 streams: every sentence once, 0 ms lost, buffers and tasks stay bounded."""
        samples: dict[str, list[tuple[int, int, int]]] = {}
        results: dict[str, tuple[int, StreamEnded | None, int]] = {}

        async def one(name: str, seed: int) -> None:
            server = ChannelServer(*day_of_faults(seed), frame=FRAME)
            server.keep_history = False
            frames_send, frames_recv = trio.open_memory_channel[AudioFrame](8)
            events_send, events_recv = trio.open_memory_channel[Event](64)
            finals = gaps = 0
            ended: StreamEnded | None = None
            done = trio.Event()
            cfg = config(
                stream=name,
                seed=seed,
                policy=DAEMON,
                frame_ms=FRAME_S * 1000,
                stall_timeout_s=20.0,
                finish_timeout_s=5.0,
            )

            async def feed() -> None:
                async with frames_send:
                    t0 = trio.current_time()
                    for i in range(DAY // FRAME_S):
                        await trio.sleep_until(t0 + i * FRAME_S)
                        await frames_send.send(AudioFrame(i * FRAME, frame_pcm(i, FRAME), RATE))

            async def collect() -> None:
                nonlocal finals, gaps, ended
                async for event in events_recv:
                    if isinstance(event, Final):
                        assert event.text == f"group {finals}", (name, event.text)
                        assert event.start == finals * GROUP * FRAME
                        finals += 1
                    elif isinstance(event, AudioGap):
                        gaps += 1
                    elif isinstance(event, StreamEnded):
                        ended = event
                        done.set()

            async def watch(stats: session.SessionStats) -> None:
                points = samples.setdefault(name, [])
                while True:
                    await trio.sleep(3600)
                    points.append((stats.buffered_samples, stats.live_tasks, stats.tasks_opened))
                    assert stats.buffered_samples <= stats.max_buffered_samples

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                nursery.start_soon(collect)
                stats = await nursery.start(
                    lambda task_status: session.run(
                        inbox=frames_recv,
                        outbox=events_send,
                        config=cfg,
                        dial=server.dial,
                        task_status=task_status,
                    )
                )
                async with trio.open_nursery() as watchers:
                    watchers.start_soon(watch, stats)
                    await done.wait()
                    watchers.cancel_scope.cancel()
            results[name] = (finals, ended, len(server.connections))

        async with trio.open_nursery() as nursery:
            for n in range(STREAMS):
                nursery.start_soon(one, f"s{n}", 1000 + n)

        for name, (finals, ended, connections) in results.items():
            assert ended is not None
            assert finals == DAY // FRAME_S // GROUP, name
            assert ended.audio_lost_ms == 0, name
            assert ended.status == "ok", name
            assert ended.reconnects >= 150, name  # a fault every few minutes, all day
            assert connections <= ended.reconnects + 2, name
            points = samples[name]
            assert len(points) >= 23
            assert max(p[0] for p in points) <= 120 * RATE  # the replay buffer bound
            assert max(p[1] for p in points) <= 6  # conversations do not pile up
