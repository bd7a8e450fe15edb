"""The outcome table (README "Exit codes and outcomes"): how a stream ended → its
``StreamEnded.status`` → the CLI's exit code, one test per row (issue #13).

Planted bug (today's before this table): the status followed the type of the last
error, so a service that throttled every retry ended ``failed`` (exit 1) while one
that went half-open on every retry ended ``partial`` (exit 3), for the same loss.
"""

from __future__ import annotations

import numpy as np
import pytest
import trio
import trio.testing

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from adapters.sim.faults import parse_fault_spec
from adapters.sim.memory import open_memory_net
from engine._stream_input import INTERRUPTED
from engine.actors._report import outcome_status
from engine.cli._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LOST_AUDIO, EXIT_OK, exit_code
from engine.events import Event, Final, StreamEnded
from engine.policy import RestartPolicy
from tests.engine.session_harness import fault_tolerant_config, stream_pcm

RATE = 16000


@pytest.mark.parametrize(
    ("gave_up", "permanent", "finals", "lost", "status", "code"),
    [
        pytest.param(False, False, 3, 0, "ok", EXIT_OK, id="everything recognized"),
        pytest.param(False, False, 0, 0, "ok", EXIT_OK, id="silence, nothing to recognize"),
        pytest.param(False, False, 3, 800, "partial", EXIT_LOST_AUDIO, id="exact gaps"),
        pytest.param(True, False, 3, 800, "partial", EXIT_LOST_AUDIO, id="gave up after finals"),
        pytest.param(True, False, 0, 800, "failed", EXIT_FAILED, id="gave up, nothing heard"),
        pytest.param(True, True, 3, 800, "failed", EXIT_FAILED, id="permanent error"),
    ],
)
def test_each_row_of_the_table(
    gave_up: bool, permanent: bool, finals: int, lost: int, status: str, code: int
) -> None:
    """The pure rule gives the row's status, and the CLI maps that status to its code."""
    got = outcome_status(gave_up=gave_up, permanent=permanent, finals=finals, lost=lost)
    assert got == status
    assert exit_code([StreamEnded(got, finals=finals)]) == code


def test_an_interrupted_stream_exits_130_whatever_else_happened() -> None:
    """Ctrl-C wins over every other status in a run of several files."""
    ended = [StreamEnded("failed"), StreamEnded(INTERRUPTED), StreamEnded("partial")]
    assert exit_code(ended) == EXIT_INTERRUPTED


def _tones(seconds: float) -> np.ndarray:
    return synthesize(["good morning the weather"] * max(1, round(seconds / 1.8)), RATE)


def _ended_under(spec: str) -> tuple[StreamEnded, list[Event]]:
    """One session over 6 s of speech against a simulator applying ``spec`` to every
    connection, with a short CLI-like retry policy, in virtual time."""

    async def main() -> list[Event]:
        plan = parse_fault_spec(spec)
        async with open_memory_net(SimConfig(), ScriptedRecognizer.tone(), faults=plan) as net:
            config = fault_tolerant_config(
                "paraformer-realtime-v2",
                policy=RestartPolicy(max_attempts=3, backoff_base_s=0.2, backoff_cap_s=1.0),
            )
            with trio.fail_after(600):
                return await stream_pcm(_tones(6.0), config, net.dial)

    events = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    (ended,) = [e for e in events if isinstance(e, StreamEnded)]
    return ended, events


@pytest.mark.usefixtures("any_transport")  # both WebSocket client transports
@pytest.mark.parametrize("spec", ["throttle", "half-open:at=0.05"])
def test_a_service_that_never_serves_fails_the_same_way_whatever_the_error(spec: str) -> None:
    """Throttled on every retry or half-open on every retry: nothing recognized, all the
    audio lost, so both are ``failed`` (exit 1), not one failed and the other partial."""
    ended, events = _ended_under(spec)
    assert not [e for e in events if isinstance(e, Final)]
    assert ended.audio_lost_ms > 0
    assert (ended.status, exit_code([ended])) == ("failed", EXIT_FAILED)
