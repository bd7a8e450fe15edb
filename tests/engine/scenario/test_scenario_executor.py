"""Executors in virtual time: starts per second as k6 defines them, dropped starts, stops,
and execution segments that partition a run exactly."""

from __future__ import annotations

import collections
import math

import msgspec
import pytest
import trio
import trio.testing

from engine.scenario.executor import Iteration, run_executor
from engine.scenario.metrics import Recorder
from engine.scenario.schedule import WHOLE, Segment, arrival_offsets, ramp_steps, target_at
from engine.scenario.spec import Executor, ScenarioFile, decode_scenario

AUDIO = 'audio = { file = "x.wav" }\n'


def scenario(body: str) -> Executor:
    file: ScenarioFile = decode_scenario(f'[[scenario]]\nname = "s"\n{AUDIO}{body}')
    return file.scenarios[0]


class Log:
    """A body that sleeps ``hold`` seconds and notes every start (virtual time)."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.starts: list[tuple[float, int, int]] = []
        self.t0 = trio.current_time()
        self.running = 0
        self.peak = 0

    async def __call__(self, it: Iteration) -> None:
        self.starts.append((round(trio.current_time() - self.t0, 6), it.session, it.iteration))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(self.hold)
        finally:
            self.running -= 1

    def per_second(self) -> list[int]:
        counts = collections.Counter(int(t + 1e-9) for t, _, _ in self.starts)
        return [counts[i] for i in range(max(counts) + 1)] if counts else []


async def drive(spec: Executor, hold: float, segment: Segment = WHOLE) -> tuple[Log, Recorder]:
    log, recorder = Log(hold), Recorder()
    await run_executor(spec, log, recorder, segment=segment, run_start=log.t0)
    return log, recorder


class TestArrivalRate:
    async def test_rate_starts_per_second(self, autojump_clock: trio.testing.MockClock) -> None:
        """5 per 1s for 10 s: 5 starts every second, the first at 0, nothing dropped."""
        spec = scenario(
            'executor = "session-arrival-rate"\nrate = 5\nduration = "10s"\nmax-sessions = 100\n'
        )
        log, rec = await drive(spec, hold=3.0)
        assert log.per_second() == [5] * 10
        assert log.starts[0][0] == 0.0 and log.starts[1][0] == pytest.approx(0.2)
        assert rec.count("sessions_started") == 50 and rec.count("sessions_dropped") == 0

    async def test_time_unit(self, autojump_clock: trio.testing.MockClock) -> None:
        """rate 30 per 1m is one start every 2 s."""
        spec = scenario(
            'executor = "session-arrival-rate"\nrate = 30\ntime-unit = "1m"\nduration = "10s"\nmax-sessions = 9\n'
        )
        log, _ = await drive(spec, hold=0.1)
        assert [t for t, _, _ in log.starts] == [0.0, 2.0, 4.0, 6.0, 8.0]

    async def test_busy_sessions_drop_starts(self, autojump_clock: trio.testing.MockClock) -> None:
        """10/s with 3 sessions each busy 0.95 s: 3 starts a second, the other 7 dropped."""
        spec = scenario(
            'executor = "session-arrival-rate"\nrate = 10\nduration = "2s"\nmax-sessions = 3\n'
        )
        log, rec = await drive(spec, hold=0.95)
        assert [t for t, _, _ in log.starts] == pytest.approx([0.0, 0.1, 0.2, 1.0, 1.1, 1.2])
        assert rec.count("sessions_dropped") == 14
        assert log.peak == 3

    async def test_ramping_rate_follows_the_integral(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """0 → 10/s over 10 s: start k when t²/2 reaches k, so second i gets the k in [i²/2, (i+1)²/2)."""
        spec = scenario(
            'executor = "ramping-session-arrival-rate"\nstart-rate = 0\nmax-sessions = 1000\n'
            'stages = [{ target = 10, duration = "10s" }]\n'
        )
        log, rec = await drive(spec, hold=0.5)
        expected = [sum(1 for k in range(50) if i <= math.sqrt(2 * k) < i + 1) for i in range(10)]
        assert log.per_second() == expected
        assert rec.count("sessions_started") == 50

    async def test_graceful_stop_interrupts(self, autojump_clock: trio.testing.MockClock) -> None:
        """Streams still running graceful-stop after the end are cancelled and counted."""
        spec = scenario(
            'executor = "session-arrival-rate"\nrate = 1\nduration = "3s"\nmax-sessions = 9\n'
            'graceful-stop = "1s"\n'
        )
        log, rec = await drive(spec, hold=2.5)
        assert len(log.starts) == 3
        assert rec.count("sessions_interrupted") == 1  # started at 2 s, due to end at 4.5 > 3 + 1


class TestClosedModel:
    async def test_constant_sessions_loop(self, autojump_clock: trio.testing.MockClock) -> None:
        """3 sessions of 3 s streams for 10 s: each starts at 0, 3, 6, 9; none after the end."""
        spec = scenario('executor = "constant-sessions"\nsessions = 3\nduration = "10s"\n')
        log, rec = await drive(spec, hold=3.0)
        by_session = collections.defaultdict(list)
        for t, k, j in log.starts:
            by_session[k].append((t, j))
        assert dict(by_session) == {k: [(0.0, 0), (3.0, 1), (6.0, 2), (9.0, 3)] for k in range(3)}
        assert rec.count("sessions_interrupted") == 0

    async def test_start_time_delays(self, autojump_clock: trio.testing.MockClock) -> None:
        """start-time shifts every start."""
        spec = scenario(
            'executor = "per-session-iterations"\nsessions = 2\niterations = 3\nstart-time = "5s"\n'
        )
        log, rec = await drive(spec, hold=1.0)
        assert sorted(log.starts) == [(5.0 + j, k, j) for j in range(3) for k in range(2)]
        assert rec.count("sessions_started") == 6

    async def test_max_duration_and_graceful_stop(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """per-session-iterations starts nothing after max-duration; graceful-stop cuts the rest."""
        spec = scenario(
            'executor = "per-session-iterations"\nsessions = 1\niterations = 10\n'
            'max-duration = "5s"\ngraceful-stop = "1s"\n'
        )
        log, rec = await drive(spec, hold=2.1)  # the third ends at 6.3, past 5 + 1
        assert [t for t, _, _ in log.starts] == pytest.approx([0.0, 2.1, 4.2])
        assert rec.count("sessions_interrupted") == 1

    def test_ramp_steps(self) -> None:
        """One session per step, on the straight line between stages (k6's ramping-vus)."""
        spec = scenario(
            'executor = "ramping-sessions"\nstart-sessions = 0\n'
            'stages = [{ target = 4, duration = "4s" }, { target = 0, duration = "2s" }]\n'
        )
        assert isinstance(spec, type(spec))
        steps = ramp_steps(spec)  # type: ignore[arg-type]
        assert steps == [
            (0.0, 0),
            (1.0, 1),
            (2.0, 2),
            (3.0, 3),
            (4.0, 4),
            (4.5, 3),
            (5.0, 2),
            (5.5, 1),
            (6.0, 0),
        ]
        assert [target_at(steps, t) for t in (0.5, 1.0, 3.9, 4.7, 6.0)] == [0, 1, 3, 3, 0]

    async def test_ramping_sessions_follow_the_target(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Sessions join as the target rises and stop starting streams as it falls."""
        spec = scenario(
            'executor = "ramping-sessions"\nstart-sessions = 0\n'
            'stages = [{ target = 4, duration = "4s" }, { target = 0, duration = "4s" }]\n'
        )
        log, rec = await drive(spec, hold=0.25)
        first = {k: min(t for t, s, _ in log.starts if s == k) for k in range(4)}
        last = {k: max(t for t, s, _ in log.starts if s == k) for k in range(4)}
        assert first == {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}
        # ramping down 4 → 0 over 4 s: session 3 goes at 5 s, 2 at 6 s, 1 at 7 s, 0 at 8 s
        assert {k: math.floor(t) for k, t in last.items()} == {3: 4, 2: 5, 1: 6, 0: 7}
        assert rec.count("sessions_interrupted") == 0


SEGMENTED = [
    'executor = "session-arrival-rate"\nrate = 7\nduration = "5s"\nmax-sessions = 1000\n',
    'executor = "ramping-session-arrival-rate"\nstart-rate = 2\nmax-sessions = 1000\n'
    'stages = [{ target = 12, duration = "3s" }, { target = 4, duration = "3s" }]\n',
    'executor = "constant-sessions"\nsessions = 7\nduration = "5s"\n',
    'executor = "per-session-iterations"\nsessions = 5\niterations = 2\n',
    'executor = "ramping-sessions"\nstart-sessions = 1\n'
    'stages = [{ target = 6, duration = "3s" }, { target = 2, duration = "3s" }]\n',
]


class TestSegments:
    def test_parse(self) -> None:
        """I/N with 0 <= I < N; anything else is refused with the fix."""
        assert Segment.parse("1/4") == Segment(1, 4)
        for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
            with pytest.raises(ValueError, match="I/N"):
                Segment.parse(bad)

    @pytest.mark.parametrize("body", SEGMENTED, ids=lambda b: b.split('"')[1])
    async def test_segments_partition_the_run(
        self, body: str, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The starts of segments 0/3, 1/3, 2/3 are exactly the whole run's starts."""
        spec = scenario(body)
        whole, _ = await drive(spec, hold=0.7)
        parts = []
        for i in range(3):
            log, _ = await drive(spec, hold=0.7, segment=Segment(i, 3))
            parts.append(log.starts)
        union = sorted(s for part in parts for s in part)
        assert union == sorted(whole.starts)
        assert all(parts) and all(not set(a) & set(b) for a in parts for b in parts if a is not b)

    def test_rates_and_sessions_split(self) -> None:
        """Each segment gets a 1/N share of starts and of max-sessions."""
        spec = scenario(
            'executor = "session-arrival-rate"\nrate = 10\nduration = "10s"\nmax-sessions = 7\n'
        )
        assert isinstance(spec, msgspec.Struct)
        counts = [len(list(arrival_offsets(spec, Segment(i, 4)))) for i in range(4)]  # type: ignore[arg-type]
        assert counts == [25, 25, 25, 25]
        assert [Segment(i, 4).share(7) for i in range(4)] == [2, 2, 2, 1]
