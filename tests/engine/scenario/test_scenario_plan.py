"""``check``'s plan and the stream estimates a remote run states before asking for --yes."""

from __future__ import annotations

from engine.scenario.plan import estimate, plan_text
from engine.scenario.schedule import Segment
from engine.scenario.spec import decode_scenario

AUDIO = 'audio = { file = "x.wav" }\n'


def one(body: str):  # type: ignore[no-untyped-def]
    return decode_scenario(f'[[scenario]]\nname = "s"\n{AUDIO}{body}').scenarios[0]


class TestEstimate:
    def test_each_executor(self) -> None:
        """Upper bounds of streams from each executor's parameters (9.5 s audio = 10 s a stream)."""
        cases = {
            'executor = "per-session-iterations"\nsessions = 4\niterations = 3\n': 12,
            'executor = "constant-sessions"\nsessions = 2\nduration = "1m"\n': 12,
            'executor = "session-arrival-rate"\nrate = 2\nduration = "10s"\nmax-sessions = 5\n': 20,
        }
        for body, streams in cases.items():
            e = estimate(one(body), 9.5)
            assert e.streams == streams, body
            assert e.audio_s == streams * 9.5

    def test_segments_share_the_estimate(self) -> None:
        spec = one(
            'executor = "session-arrival-rate"\nrate = 3\nduration = "10s"\nmax-sessions = 5\n'
        )
        parts = [estimate(spec, 5.0, Segment(i, 4)).streams for i in range(4)]
        assert sum(parts) == estimate(spec, 5.0).streams == 30

    def test_ramping_sessions_bound(self) -> None:
        """At least the session-seconds over the stream length, plus one stream per session."""
        spec = one(
            'executor = "ramping-sessions"\nstart-sessions = 0\nstages = [{ target = 10, duration = "20s" }]\n'
        )
        assert estimate(spec, 4.5).streams >= 10 * 20 / 2 / 5


def test_plan_shows_sessions_over_time() -> None:
    file = decode_scenario(
        f'[[scenario]]\nname = "a"\n{AUDIO}executor = "ramping-sessions"\nstart-sessions = 0\n'
        'stages = [{ target = 4, duration = "4s" }]\n'
        f'[[scenario]]\nname = "b"\n{AUDIO}executor = "session-arrival-rate"\nrate = 2\n'
        'duration = "4s"\nmax-sessions = 9\nstart-time = "2s"\n'
    )
    text = plan_text(file, {"a": 3.0, "b": 3.0})
    lines = text.splitlines()
    assert lines[1].strip() == "sessions per 1s: 0 1 2 3 0 0"
    assert lines[3].strip() == "starts/s per 1s: 0 0 2 2 2 2"
    assert lines[-1].startswith("total: at most")
