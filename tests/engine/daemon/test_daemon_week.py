"""Seven days of a daemon in virtual time: faults, idle periods, a reload, bounded state.

MockClock(autojump_threshold=0) and the in-memory simulator (scripted tone
recognizer; a seeded fault plan drops every third connection after 12
messages), with 5 s source blocks, so a week runs in seconds:

* ``su`` speaks one sentence an hour all week and is silent in between: the
  suspend policy finishes its task during every silence and resumes with a
  pre-roll; its transcript must stay on the continuous global timeline.
* ``ka`` keeps its task alive (padding + heartbeat) through 10-minute pauses for
  the first six hours; on day 6.5 a reload changes it, which restarts it for
  six more hours while ``su`` is untouched. (A whole week of keep-alive
  traffic costs minutes of CPU in virtual time: each WebSocket message is ~1 ms.)

Every hour a watcher samples what must stay bounded.
"""

from __future__ import annotations

import itertools
import logging
import pathlib

import pytest
import structlog
import trio
import trio.testing
from daemon_helpers import (
    KEY,
    RATE,
    _inline_threads,  # noqa: F401 - the inline_threads fixture
    config,
    expected_start_s,
    memory_env,
    sentence,
    synthetic,
    task_count,
)

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import split_words
from adapters.sim.config import SimConfig
from adapters.sim.faults import parse_fault_spec
from adapters.sim.memory import open_memory_net
from engine.daemon.manager import Daemon
from engine.daemon.runner import EDGES
from engine.events import AudioGap, AudioSkipped, Final, SessionOpened, decode_jsonl_line
from engine.wiring import EDGES as ENGINE_EDGES

HOUR, DAY, DAYS = 3600, 24 * 3600, 7
SU_CYCLE, SU_CYCLES = 3600.0, DAYS * 24
KA_CYCLE, KA_CYCLES = 600.0, 36  # six hours

TOML = """
[daemon]
drain-deadline-s = 60

[[stream]]
id = "su"
source = { kind = "file", path = "synthetic:su" }
idle = { policy = "suspend", after-s = 10, preroll-ms = 500, threshold-dbfs = -60, finish-after-s = 8 }
session = { frame-ms = 1000 }
outputs = { formats = ["jsonl", "srt"], rotate = "day", max-bytes = 16384 }

[[stream]]
id = "ka"
source = { kind = "file", path = "synthetic:ka" }
idle = { policy = "keepalive" }
session = { frame-ms = 500, idle-timeout-s = 20, ping-interval-s = 60, rotate-task-after-s = 3600 }
outputs = { formats = ["jsonl", "txt"], rotate = "hour" }
"""


def opener(spec, ctx):  # type: ignore[no-untyped-def]
    if spec.path.endswith("su"):
        source = synthetic(
            cycles=SU_CYCLES, cycle_s=SU_CYCLE, block_s=5.0, idle="silence", quiet_block_s=300.0
        )
    else:  # pauses after a 10 s silent tail (rotation happens at a pause with audio flowing)
        source = synthetic(cycles=KA_CYCLES, cycle_s=KA_CYCLE, block_s=5.0, idle="pause", tail_s=10)
    return source(spec, ctx)


class TestAWeek:
    async def test_seven_days_with_faults_idle_periods_and_a_reload(
        self,
        autojump_clock: trio.testing.MockClock,
        tmp_path: pathlib.Path,
        inline_threads: None,
    ) -> None:
        """Every sentence once at its global time, nothing lost; buffers, tasks, files bounded."""
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
        samples: list[dict[str, int]] = []
        plan = parse_fault_spec("drop:after=12;every=3;seed=1")
        sim = SimConfig(api_keys=[KEY], feed_chunk_ms=1000)
        async with open_memory_net(sim, ScriptedRecognizer.tone(), faults=plan) as net:
            env = memory_env(net, {"file": opener})
            daemon = Daemon(config(TOML, tmp_path / "out"), env)

            async def watch() -> None:
                while True:
                    await trio.sleep(HOUR)
                    point = {"tasks": task_count()}
                    for name, m in daemon.metrics.items():
                        if (stats := m.stats) is not None:
                            point[f"{name}.buffer"] = stats.buffered_samples
                            point[f"{name}.session_tasks"] = stats.live_tasks
                            assert stats.buffered_samples <= stats.max_buffered_samples
                        for queue, depth in m.queues.items():
                            assert depth() <= {**EDGES, **ENGINE_EDGES}[queue].size
                    samples.append(point)

            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                nursery.start_soon(watch)
                su = daemon.handles["su"]
                await trio.sleep(6.5 * DAY)
                assert daemon.metrics["ka"].state == "finished"
                changed = TOML.replace('rotate = "hour"', 'rotate = "day"')
                plan_ = daemon.reload(config(changed, tmp_path / "out"))
                assert (plan_.changed, plan_.unchanged) == (("ka",), ("su",))
                for handle in list(daemon.handles.values()):
                    await handle.done.wait()
                assert daemon.handles["su"] is su and su.runs == 1  # never disturbed
                assert trio.current_time() >= DAYS * DAY
                daemon.request_drain()
                nursery.cancel_scope.cancel()

        su_m, ka_m = daemon.metrics["su"], daemon.metrics["ka"]
        assert (su_m.finals, ka_m.finals) == (SU_CYCLES, 2 * KA_CYCLES)
        assert su_m.audio_lost_s == ka_m.audio_lost_s == 0.0
        assert (
            su_m.reconnects >= 20 and ka_m.reconnects >= 1
        )  # the fault plan hit both (how often the
        # keep-alive stream is hit depends on how many connections its rotations open)
        assert su_m.skipped_s > 0.95 * DAYS * DAY  # suspended nearly all week
        assert ka_m.restarts == 1

        # Bounded: the replay buffer, the session's tasks, the whole task tree.
        assert len(samples) >= DAYS * 24 - 1
        assert max(p.get("su.buffer", 0) for p in samples) <= 120 * RATE
        assert max(p.get("ka.session_tasks", 0) for p in samples) <= 6
        first_day = max(p["tasks"] for p in samples[:24])
        assert max(p["tasks"] for p in samples[24:]) <= first_day

        # su's outputs: each sentence once, in order, at its place on the global timeline.
        events = _events(tmp_path / "out", "su", "jsonl")
        finals = [e for e in events if isinstance(e, Final)]
        assert [split_words(f.text) for f in finals] == [
            split_words(sentence(k)) for k in range(SU_CYCLES)
        ]
        for k, final in enumerate(finals):
            assert abs(final.start / RATE - expected_start_s(k, SU_CYCLE)) < 0.3, (k, final.start)
        assert not [e for e in events if isinstance(e, AudioGap)]
        # Every suspension is on the timeline as a skipped span, in order, never overlapping;
        # so is silence after a final that a dropped connection's backoff committed (no task
        # ever heard it: "silence"), never a gap.
        skips = [e for e in events if isinstance(e, AudioSkipped)]
        suspended = [e for e in skips if e.reason == "suspended"]
        assert len(suspended) >= SU_CYCLES - 1
        assert {e.reason for e in skips} <= {"suspended", "silence"}
        assert all(a.end <= b.start for a, b in itertools.pairwise(skips))
        assert sum(e.end - e.start for e in skips) / RATE == pytest.approx(su_m.skipped_s)
        opened = [e.offset for e in events if isinstance(e, SessionOpened)]
        assert opened == sorted(opened)  # tasks open further along the timeline, never back
        su_jsonl = list((tmp_path / "out").glob("su-*.jsonl"))
        assert len(su_jsonl) > DAYS  # by day, and the size cap split each day
        assert all(p.stat().st_size < 16384 + 4096 for p in su_jsonl)

        # ka: hourly files during its first six hours, daily ones after the reload.
        ka = [e for e in _events(tmp_path / "out", "ka", "jsonl") if isinstance(e, Final)]
        words = [split_words(sentence(k)) for k in range(KA_CYCLES)]
        assert [split_words(f.text) for f in ka] == words + words
        hourly = [p for p in (tmp_path / "out").glob("ka-*.txt") if p.name.count("-") == 2]
        assert 6 <= len(hourly) <= 8
        assert all(p.read_text().count("\n") in (5, 6) for p in sorted(hourly)[1:-1])


def _events(directory: pathlib.Path, stream: str, ext: str) -> list[object]:
    """Every event of ``stream``'s rolling files, oldest file first."""
    paths = sorted(directory.glob(f"{stream}-*.{ext}"), key=lambda p: p.stat().st_mtime_ns)
    return [decode_jsonl_line(line) for p in paths for line in p.read_bytes().splitlines()]
