"""One stream through the real session actor against the in-memory simulator (virtual time).

Shared by the property and integration tests that run real components end to
end: :func:`fault_tolerant_config` is the session they use (fast retries, short
deadlines), :func:`stream_pcm` feeds 100 ms frames (paced in virtual time, or
as fast as accepted) and collects every event the session emits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from engine.actors import session
from engine.config import Secret, SessionConfig
from engine.events import AudioFrame, Event
from engine.policy import RestartPolicy

if TYPE_CHECKING:
    import numpy as np

    from adapters.dashscope.ws import Dialer

RATE = 16000
FRAME = 1600  # 100 ms


def fault_tolerant_config(model: str, **overrides: Any) -> SessionConfig:
    """A session that retries quickly and finishes within short deadlines."""
    settings: dict[str, Any] = {
        "stream": "s",
        "model": model,
        "url": "ws://sim/api-ws/v1/inference",
        "api_key": Secret("sk"),
        "seed": 1,
        "policy": RestartPolicy(max_attempts=12, backoff_base_s=0.2, backoff_cap_s=2.0),
        "finish_timeout_s": 3.0,
        "ping_interval_s": 2.0,
        "pong_timeout_s": 2.0,
    }
    settings.update(overrides)
    return SessionConfig(**settings)


async def stream_pcm(
    pcm: np.ndarray, config: SessionConfig, dial: Dialer, *, speed: float | None = 1.0
) -> list[Event]:
    """Run one session over ``pcm`` (int16 samples at 16 kHz); return its events.

    ``speed`` paces the frames relative to real time (virtual time under a
    MockClock); None sends them as fast as the session takes them.
    """
    frames_send, frames_recv = trio.open_memory_channel[AudioFrame](8)
    events_send, events_recv = trio.open_memory_channel[Event](1000)
    events: list[Event] = []

    async def feed() -> None:
        async with frames_send:
            t0 = trio.current_time()
            for i, start in enumerate(range(0, len(pcm), FRAME)):
                if speed is not None:
                    await trio.sleep_until(t0 + i * FRAME / RATE / speed)
                chunk = pcm[start : start + FRAME].astype("<i2").tobytes()
                await frames_send.send(AudioFrame(start, chunk, RATE))

    async def collect() -> None:
        async for event in events_recv:
            events.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        nursery.start_soon(collect)
        await session.run(inbox=frames_recv, outbox=events_send, config=config, dial=dial)
    return events
