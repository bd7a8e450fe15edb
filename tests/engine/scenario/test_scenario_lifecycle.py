"""The scenario lifecycle table: every (phase × step) is legal or a sticky ERROR; the
executor drives it in order."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import LocalProtocolError
from engine.scenario.executor import Iteration, run_executor
from engine.scenario.lifecycle import TRANSITIONS, Lifecycle, Phase, Step
from engine.scenario.metrics import Recorder
from engine.scenario.spec import decode_scenario


@given(phase=st.sampled_from(Phase), step=st.sampled_from(Step))
def test_sweep(phase: Phase, step: Step) -> None:
    """A listed pair moves to its phase; any other pair raises and leaves ERROR, for good."""
    life = Lifecycle()
    life.phase = phase
    if (phase, step) in TRANSITIONS:
        assert life.fire(step) is TRANSITIONS[phase, step]
        assert life.interrupted is (step is Step.CANCELLED)
    else:
        with pytest.raises(LocalProtocolError):
            life.fire(step)
        assert life.phase is Phase.ERROR
        for later in Step:
            with pytest.raises(LocalProtocolError):
                life.fire(later)


def test_done_is_final() -> None:
    assert not [k for k in TRANSITIONS if k[0] in (Phase.DONE, Phase.ERROR)]


def spec(body: str):  # type: ignore[no-untyped-def]
    return decode_scenario(
        f'[[scenario]]\nname = "s"\naudio = {{ file = "x.wav" }}\n{body}'
    ).scenarios[0]


class Recorded(Lifecycle):
    """A lifecycle that notes each phase with the virtual time it began."""

    def __init__(self, t0: float) -> None:
        super().__init__()
        self.t0 = t0
        self.seen = [(0.0, self.phase)]

    def fire(self, step: Step) -> Phase:
        phase = super().fire(step)
        self.seen.append((trio.current_time() - self.t0, phase))
        return phase


async def phases_of(body: str, hold: float) -> tuple[list[tuple[float, Phase]], Lifecycle]:
    t0 = trio.current_time()
    life = Recorded(t0)

    async def play(it: Iteration) -> None:
        await trio.sleep(hold)

    await run_executor(spec(body), play, Recorder(), run_start=t0, lifecycle=life)
    return life.seen, life


async def test_phases_in_order(autojump_clock: trio.testing.MockClock) -> None:
    """waiting until start-time, running, stopping at the end, done once streams ended."""
    seen, life = await phases_of(
        'executor = "session-arrival-rate"\nrate = 1\nduration = "3s"\nmax-sessions = 9\nstart-time = "2s"\n',
        hold=1.7,
    )
    assert [p for _, p in seen] == [Phase.WAITING, Phase.RUNNING, Phase.STOPPING, Phase.DONE]
    assert [t for t, _ in seen] == pytest.approx([0.0, 2.0, 5.0, 5.7])
    assert not life.interrupted


async def test_cut_at_graceful_stop(autojump_clock: trio.testing.MockClock) -> None:
    """Streams still running at the stop deadline: cancelled, and the scenario says so."""
    seen, life = await phases_of(
        'executor = "constant-sessions"\nsessions = 1\nduration = "2s"\ngraceful-stop = "1s"\n',
        hold=10.0,
    )
    assert seen[-1] == (3.0, Phase.DONE) and life.interrupted


async def test_early_end(autojump_clock: trio.testing.MockClock) -> None:
    """per-session-iterations that finish before max-duration go straight to done."""
    seen, _ = await phases_of('executor = "per-session-iterations"\niterations = 2\n', hold=1.0)
    assert seen == [(0.0, Phase.WAITING), (0.0, Phase.RUNNING), (2.0, Phase.DONE)]
