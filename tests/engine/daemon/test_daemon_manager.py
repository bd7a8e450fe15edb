"""The daemon manager in virtual time: reload by id, restarts, failures, drain and signals."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator

import numpy as np
import pytest
import structlog
import trio
import trio.testing
from daemon_helpers import (
    KEY,
    RATE,
    _inline_threads,  # noqa: F401 - the inline_threads fixture
    config,
    memory_env,
    sentence,
    speech,
    synthetic,
)

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import LEAD_IN_MS
from adapters.sim.config import SimConfig
from adapters.sim.faults import parse_fault_spec
from adapters.sim.memory import open_memory_net
from engine.daemon.config import StreamSpec
from engine.daemon.manager import Daemon, plan_reload
from engine.daemon.sources import SourceContext, SourceLost
from engine.events import (
    AudioGap,
    Final,
    SessionClosed,
    StreamEnded,
    TaskMetrics,
    Translation,
    decode_jsonl_line,
)
from engine.messages import RawBlock

pytestmark = pytest.mark.usefixtures("inline_threads")

STREAM = """
[[stream]]
id = "{id}"
source = {{ kind = "file", path = "synthetic" }}
session = {{ frame-ms = 1000 }}
outputs = {{ formats = ["jsonl"] }}
restart = {{ backoff-base-s = 2, backoff-cap-s = 2, jitter = false }}
"""


def streams(*ids: str, extra: str = "") -> str:
    return "[daemon]\ndrain-deadline-s = 30\n" + "".join(STREAM.format(id=i) + extra for i in ids)


def talk(
    spec: object, ctx: SourceContext
) -> contextlib.AbstractAsyncContextManager[AsyncIterator[RawBlock]]:
    """A sentence every 60 s, pauses in between, for 20 minutes."""
    return synthetic(cycles=20, cycle_s=60.0, block_s=1.0, idle="pause")(spec, ctx)  # type: ignore[arg-type]


def jsonl(out: pathlib.Path, stream: str) -> list[object]:
    return [
        decode_jsonl_line(line)
        for path in sorted(out.glob(f"{stream}*.jsonl"), key=lambda p: p.stat().st_mtime_ns)
        for line in path.read_bytes().splitlines()
    ]


@contextlib.asynccontextmanager
async def net_of(faults: str | None = None, keys: list[str] | None = None) -> AsyncIterator[object]:
    plan = parse_fault_spec(faults) if faults else None
    sim = SimConfig(api_keys=keys or [KEY], feed_chunk_ms=1000)
    async with open_memory_net(sim, ScriptedRecognizer.tone(), faults=plan) as net:
        yield net


class TestPlanReload:
    def test_diff_by_id(self) -> None:
        """Added, removed, changed and unchanged ids; a new key changes all; failed ones retry."""
        a, b, c = (config(streams(i)).streams[0] for i in "abc")
        b2 = StreamSpec(id="b", source=b.source, model=b.model, language_hints=("en",))
        plan = plan_reload({"a": a, "b": b, "c": c}, [b2, c, config(streams("d")).streams[0]])
        assert (plan.added, plan.removed, plan.changed, plan.unchanged) == (
            ("d",),
            ("a",),
            ("b",),
            ("c",),
        )
        assert plan_reload({"c": c}, [c], everything_changed=True).changed == ("c",)
        assert plan_reload({"c": c}, [c], retry=frozenset({"c"})).changed == ("c",)


class TestReload:
    async def test_reload_leaves_an_untouched_stream_alone(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """Remove a (drained), change b (restarted), add d; c keeps its task and its files."""
        out = tmp_path / "out"
        async with net_of() as net, trio.open_nursery() as nursery:
            daemon = Daemon(config(streams("a", "b", "c"), out), memory_env(net, {"file": talk}))
            await nursery.start(daemon.run)
            await trio.sleep(150)
            old = dict(daemon.handles)
            c_tasks = daemon.metrics["c"].tasks_opened
            new = streams("b", "c", "d").replace(
                'id = "b"\n', 'id = "b"\nlanguage-hints = ["en"]\n'
            )
            plan = daemon.reload(config(new, out))
            assert (plan.added, plan.removed, plan.changed, plan.unchanged) == (
                ("d",), ("a",), ("b",), ("c",),
            )  # fmt: skip
            await old["a"].done.wait()
            await trio.sleep(150)
            assert daemon.handles["c"] is old["c"] and old["c"].runs == 1
            assert daemon.metrics["c"].tasks_opened == c_tasks == 1
            assert daemon.handles["b"] is not old["b"] and daemon.metrics["b"].restarts == 1
            assert "a" not in daemon.metrics and daemon.metrics["d"].state == "running"
            daemon.request_drain()
        a = jsonl(out, "a")
        assert isinstance(a[-1], StreamEnded) and a[-1].status == "ok"  # a finished properly
        assert any(isinstance(e, TaskMetrics) for e in a)
        c = jsonl(out, "c")
        assert [type(e) for e in c].count(SessionClosed) == 1  # only at the final drain
        assert len([e for e in c if isinstance(e, Final)]) >= 5

    async def test_a_new_translation_target_restarts_only_that_stream(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """SIGHUP with a's target zh → ja: a is drained and restarted (ja from then on);
        b, which translates too, keeps its task."""
        out = tmp_path / "out"
        gummy = '\nmodel = "gummy-realtime-v1"\ntranslation = {{ to = ["{to}"], from = "en" }}\n'
        before = streams("a", "b").replace('id = "a"\n', 'id = "a"' + gummy.format(to="zh"))
        before = before.replace('id = "b"\n', 'id = "b"' + gummy.format(to="de"))
        async with net_of() as net, trio.open_nursery() as nursery:
            daemon = Daemon(config(before, out), memory_env(net, {"file": talk}))
            await nursery.start(daemon.run)
            await trio.sleep(150)
            old = dict(daemon.handles)
            plan = daemon.reload(config(before.replace('to = ["zh"]', 'to = ["ja"]'), out))
            assert (plan.changed, plan.unchanged) == (("a",), ("b",))
            await old["a"].done.wait()
            t_reload = trio.current_time()
            await trio.sleep(150)
            assert daemon.handles["b"] is old["b"] and old["b"].runs == 1
            assert daemon.metrics["b"].tasks_opened == 1
            assert daemon.handles["a"] is not old["a"] and daemon.metrics["a"].restarts == 1
            assert daemon.metrics["a"].state == "running"
            daemon.request_drain()
        a = [e for e in jsonl(out, "a") if isinstance(e, Translation) and e.final]
        langs = [e.lang for e in a]
        assert langs[0] == "zh" and langs[-1] == "ja"
        assert langs == sorted(langs, key=lambda lang: lang == "ja")  # zh, then only ja
        assert all(e.t > t_reload for e in a if e.lang == "ja")
        b = [e for e in jsonl(out, "b") if isinstance(e, Translation) and e.final]
        assert len(b) >= 5 and {e.lang for e in b} == {"de"}
        assert [type(e) for e in jsonl(out, "b")].count(SessionClosed) == 1


class TestFailures:
    async def test_a_crash_is_restarted_with_backoff(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """An unexpected exception restarts the stream after its backoff, counted and logged."""
        opened = 0

        def flaky(
            spec: object, ctx: SourceContext
        ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[RawBlock]]:
            nonlocal opened
            opened += 1
            if opened == 1:
                raise RuntimeError("boom")
            return talk(spec, ctx)

        async with net_of() as net, trio.open_nursery() as nursery:
            daemon = Daemon(config(streams("a"), tmp_path), memory_env(net, {"file": flaky}))
            with structlog.testing.capture_logs() as logs:
                await nursery.start(daemon.run)
                await trio.sleep(1.0)
                assert daemon.metrics["a"].state == "restarting"
                await trio.sleep(100)
            m = daemon.metrics["a"]
            assert (m.restarts, m.state, opened) == (1, "running", 2)
            assert m.finals >= 1
            crash = next(e for e in logs if e["event"] == "daemon.stream.crashed")
            assert crash["delay_s"] == 2.0
            daemon.request_drain()

    async def test_permanent_failures_stop_the_stream_until_a_reload(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """A missing file and a rejected key: 'failed', health degraded; a reload retries."""
        cfg = config(
            streams("good")
            + '[[stream]]\nid = "nofile"\nsource = { kind = "file", path = "missing.wav" }\n',
            tmp_path,
        )
        async with net_of() as net, trio.open_nursery() as nursery:
            env = memory_env(net, {"file": _only_synthetic})
            daemon = Daemon(cfg, env)
            await nursery.start(daemon.run)
            # Opening the file runs in a worker thread, which the autojump clock does
            # not wait for: wait for the stream's end, not for a span of virtual time.
            with trio.fail_after(300):
                await daemon.handles["nofile"].done.wait()
            bad = daemon.metrics["nofile"]
            assert bad.state == "failed" and "audio file not found" in (bad.error or "")
            health = daemon.http_app("GET", "/healthz")
            assert health.status == 200 and b'"degraded"' in health.body
            first = daemon.handles["nofile"]
            plan = daemon.reload(cfg)
            assert plan.changed == ("nofile",) and plan.unchanged == ("good",)
            assert daemon.handles["nofile"] is not first
            with trio.fail_after(300):
                await daemon.handles["nofile"].done.wait()
            assert daemon.metrics["nofile"].state == "failed"
            daemon.request_drain()

    async def test_a_rejected_key_fails_the_stream(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        async with net_of(keys=["another-key"]) as net, trio.open_nursery() as nursery:
            daemon = Daemon(config(streams("a"), tmp_path), memory_env(net, {"file": talk}))
            await nursery.start(daemon.run)
            await daemon.handles["a"].done.wait()
            m = daemon.metrics["a"]
            assert m.state == "failed" and (m.error or "").startswith("auth:")
            assert KEY not in (m.error or "")
            daemon.request_drain()


class TestLiveSource:
    async def test_an_outage_keeps_wall_time(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """A live source that breaks is reopened after its backoff; the outage stays on the timeline."""
        opens: list[float] = []

        @contextlib.asynccontextmanager
        async def camera(
            spec: object, ctx: SourceContext
        ) -> AsyncIterator[AsyncIterator[RawBlock]]:
            k = len(opens)
            opens.append(trio.current_time())

            async def blocks() -> AsyncGenerator[RawBlock, None]:
                silence = np.zeros(RATE, dtype=np.float32)
                for block in [*speech(k, RATE), *[silence] * 5]:
                    await trio.sleep(1.0)
                    yield RawBlock(block, RATE)
                if k == 0:
                    raise SourceLost("camera: connection reset")
                await trio.sleep_forever()

            gen = blocks()
            try:
                yield gen
            finally:
                await gen.aclose()

        toml = streams("cam").replace(
            'kind = "file", path = "synthetic"', 'kind = "url", url = "rtsp://cam/1"'
        )
        async with net_of() as net, trio.open_nursery() as nursery:
            daemon = Daemon(config(toml, tmp_path), memory_env(net, {"url": camera}))
            await nursery.start(daemon.run)
            await trio.sleep(40)
            m = daemon.metrics["cam"]
            assert (m.source_restarts, m.finals, len(opens)) == (1, 2, 2)
            daemon.request_drain()
        finals = [e for e in jsonl(tmp_path, "cam") if isinstance(e, Final)]
        assert [f.text.lower().rstrip(".") for f in finals] == [sentence(0), sentence(1)]
        # The second sentence sits where it was spoken: after the first open's audio *and* the outage.
        expected = opens[1] - opens[0] + LEAD_IN_MS / 1000
        assert abs(finals[1].start / RATE - expected) < 0.3
        # The outage is on the timeline as lost audio: from the last block to the reopening.
        (gap,) = [e for e in jsonl(tmp_path, "cam") if isinstance(e, AudioGap)]
        assert gap.reason == "source"
        assert abs(gap.end / RATE - (opens[1] - opens[0])) < 0.01
        assert daemon.metrics["cam"].gaps == {"source": 1}


def _only_synthetic(
    spec: object, ctx: SourceContext
) -> contextlib.AbstractAsyncContextManager[AsyncIterator[RawBlock]]:
    from engine.daemon.sources import open_source

    if getattr(spec, "path", "") == "synthetic":
        return talk(spec, ctx)
    return open_source(spec, SourceContext())  # type: ignore[arg-type]


SIGTERM_CHILD = """
import json, os, pathlib, signal, sys
import trio, trio.testing

async def run_sync(fn, *args, **_):  # inline threads, as the inline_threads fixture does
    await trio.lowlevel.checkpoint()
    return fn(*args)

trio.to_thread.run_sync = run_sync
from daemon_helpers import config, memory_env
from test_daemon_manager import net_of, streams, talk
from engine.daemon.manager import run_daemon

async def main(out):
    result = []
    async with net_of() as net:
        env = memory_env(net, {"file": talk})
        async with trio.open_nursery() as nursery:
            async def daemon():
                result.append(await run_daemon(config(streams("a", "b"), out), env, listen=False))
            nursery.start_soon(daemon)
            await trio.sleep(70)
            os.kill(os.getpid(), signal.SIGTERM)  # the child's own pid: pytest never sees it
    print(json.dumps(result))

trio.run(main, pathlib.Path(sys.argv[1]), clock=trio.testing.MockClock(autojump_threshold=0))
"""
"""``test_sigterm_drains_every_stream``'s daemon, run in a child process on virtual time."""


class TestDrain:
    def test_sigterm_drains_every_stream(self, tmp_path: pathlib.Path) -> None:
        """SIGTERM: every stream sends finish-task, reads task-finished, closes its files.

        A real SIGTERM goes to a child process running the daemon (on virtual time),
        never to the pytest process: had the daemon not installed its handler, the
        signal would kill the whole test run instead of failing one test.
        """
        here = pathlib.Path(__file__).resolve().parent
        root = here.parents[2]
        path = os.pathsep.join(map(str, (here, root / "tests", root)))
        done = subprocess.run(
            [sys.executable, "-c", SIGTERM_CHILD, str(tmp_path)],
            env={**os.environ, "PYTHONPATH": path},
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,  # real time: a child process; its daemon runs on virtual time
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.splitlines()[-1]) == [True]
        for name in ("a", "b"):
            events = jsonl(tmp_path, name)
            assert isinstance(events[-1], StreamEnded) and events[-1].status == "ok"
            last = [e for e in events if isinstance(e, TaskMetrics)][-1]
            assert last.last_package_delay_ms is not None  # task-finished arrived

    async def test_the_deadline_bounds_a_stream_that_cannot_finish(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """The server never sends task-finished and the finish deadline is longer than the
        drain's: the drain gives up at its own deadline."""
        toml = streams("a").replace("frame-ms = 1000", "frame-ms = 1000, finish-timeout-s = 60")
        async with net_of("no-task-finished") as net:
            daemon = Daemon(config(toml, tmp_path), memory_env(net, {"file": talk}))
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                await trio.sleep(70)
                t0 = trio.current_time()
                daemon.request_drain()
            assert daemon.clean is False
            assert 30 <= trio.current_time() - t0 < 31

    async def test_a_draining_stream_is_not_retried(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """Once draining, a finish that times out is reported (an exact gap), not retried:
        the stream ends within its finish deadline and the drain is clean."""
        async with net_of("no-task-finished") as net:
            daemon = Daemon(config(streams("a"), tmp_path), memory_env(net, {"file": talk}))
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                await trio.sleep(70)
                t0 = trio.current_time()
                daemon.request_drain()
            assert daemon.clean is True
            assert trio.current_time() - t0 < 12  # the 10 s finish deadline, no reconnect
        events = jsonl(tmp_path, "a")
        ended = events[-1]
        assert isinstance(ended, StreamEnded) and ended.status == "partial"
        assert ended.reconnects == 0
        gaps = [e for e in events if isinstance(e, AudioGap)]
        assert [g.reason for g in gaps] == ["finish-deadline"]
        assert daemon.metrics["a"].audio_lost_s == pytest.approx(ended.audio_lost_ms / 1000)
