"""The engine against the real simulator under random seeded fault plans (virtual time).

Real components end to end, in memory: the session actor, trio-websocket, the
simulator's handler with its fault layer, and the scripted tone recognizer.
For any plan of transient faults on the first connections, the finals equal the
fault-free run's, word for word and on the same global times, with 0 ms lost.

Every drawn plan is used (tests/engine/fault_plans.py makes it transient instead of
``assume`` discarding ~28 % of the examples), and each example must see a fault
fire: a plan whose triggers all lie past the stream would prove nothing. Planted
bug it catches: a fault layer that never fires (or a plan the server never applies)
— every example used to pass on a fault-free run.
"""

from __future__ import annotations

import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from adapters.sim.faults import FaultPlan
from adapters.sim.memory import open_memory_net
from engine.events import AudioGap, Event, Final, StreamEnded
from tests.engine.fault_plans import fired, transient_plan
from tests.engine.session_harness import fault_tolerant_config, stream_pcm

SENTENCES = [
    "good morning",
    "the weather is sunny today",
    "we will have the budget",
    "please stop the train",
    "thank you",
]
PCM = synthesize(SENTENCES, 16000)
FRAME = 1600


async def transcribe(plan: FaultPlan | None, seed: int) -> list[Event]:
    config = fault_tolerant_config("paraformer-realtime-v2", seed=seed)
    sim = SimConfig(api_keys=["sk"])
    async with open_memory_net(sim, ScriptedRecognizer.tone(), faults=plan) as net:
        return await stream_pcm(PCM, config, net.dial)


def run(plan: FaultPlan | None, seed: int) -> list[Event]:
    async def main() -> list[Event]:
        with trio.fail_after(3600):
            return await transcribe(plan, seed)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def finals(events: list[Event]) -> list[tuple[str, int, int]]:
    return [(e.text, e.start, e.end) for e in events if isinstance(e, Final)]


CLEAN: list[tuple[str, int, int]] = []


@pytest.mark.usefixtures("any_transport")  # both WebSocket client transports
class TestSimulatorFaultPlans:
    def test_clean_run_recognizes_every_sentence(self) -> None:
        """The baseline: every tone-coded sentence, in order."""
        got = finals(run(None, 1))
        assert [text.rstrip(".").lower() for text, _, _ in got] == SENTENCES
        assert all(np.diff([start for _, start, _ in got]) > 0)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.integers(0, 2**20), count=st.integers(1, 3), hits=st.integers(1, 3))
    def test_random_transient_plans_change_nothing(self, seed: int, count: int, hits: int) -> None:
        """Seeded random plans on the first connections: same finals, same times, 0 ms lost."""
        plan = transient_plan(seed, count=count, hits=hits, horizon_s=8.0, max_frames=60)
        if not CLEAN:
            CLEAN.extend(finals(run(None, 1)))
        with fired() as faults:
            events = run(plan, seed)
        event(f"faults fired: {min(len(faults), 3)}{'+' if len(faults) > 3 else ''}")
        assert faults, f"no fault of {plan} fired"
        assert finals(events) == CLEAN, plan
        ended = next(e for e in events if isinstance(e, StreamEnded))
        assert ended.audio_lost_ms == 0, plan
        assert not [e for e in events if isinstance(e, AudioGap)], plan
