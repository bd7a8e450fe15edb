"""``workers = N``: the setting, the placement of streams, the merged view, the worker pipes."""

from __future__ import annotations

import argparse
import pathlib

import msgspec
import pytest
import trio
import trio.testing

from engine.cli.daemon import daemon_command, describe_sharding
from engine.daemon.config import DaemonConfig, StreamSpec
from engine.daemon.health import daemon_health, render_health
from engine.daemon.metrics import DaemonSnapshot, StreamMetrics, StreamSnapshot
from engine.daemon.shard import (
    WorkerView,
    assign,
    burst_workers,
    merge,
    rate_share,
    reassign,
    resolve_workers,
)
from engine.daemon.worker_wire import (
    MAX_FRAME,
    Drain,
    FrameReader,
    Report,
    Start,
    WireError,
    encode,
)
from engine.errors import ConfigError
from tests.engine.daemon.daemon_helpers import config

KEY = "sk-worker-pipe-5e1d0c"


def streams_toml(*ids: str) -> str:
    return "".join(
        f'[[stream]]\nid = "{i}"\nsource = {{ kind = "url", url = "rtsp://cam/{i}" }}\n'
        for i in ids
    )


def cfg(workers: str, *ids: str) -> DaemonConfig:
    return config(f"[daemon]\nworkers = {workers}\n" + streams_toml(*ids))


def specs(*ids: str) -> list[StreamSpec]:
    return list(cfg("1", *ids).streams)


class TestSetting:
    @pytest.mark.parametrize(
        ("workers", "cpus", "streams", "expected"),
        [
            ("1", 8, 5, 1),
            ("3", 8, 5, 3),
            ("3", 1, 2, 2),  # never more workers than streams
            ('"auto"', 4, 10, 4),
            ('"auto"', 4, 3, 3),
            ('"auto"', 1, 3, 1),
        ],
    )
    def test_resolved(self, workers: str, cpus: int, streams: int, expected: int) -> None:
        """N or "auto" (the CPUs), capped by the number of streams; 1 runs in-process."""
        ids = [f"s{i}" for i in range(streams)]
        assert resolve_workers(cfg(workers, *ids), cpus) == expected

    @pytest.mark.parametrize(
        ("models", "workers", "expected"),
        [
            (["paraformer-realtime-v2"] * 25, "25", 20),  # paraformer's burst: 20 starts
            (["gummy-realtime-v1"] * 12, "12", 10),  # gummy's: 10
            (["paraformer-realtime-v2"] * 11 + ["gummy-realtime-v1"], "12", 10),  # the tightest
            (["paraformer-realtime-v2"] * 12, "12", 12),
        ],
    )
    def test_capped_by_the_task_start_burst(
        self, models: list[str], workers: str, expected: int
    ) -> None:
        """Each worker needs a whole start of every budget it shares: never more workers
        than the tightest family's burst, so the shares never add up past the budget."""
        streams = "".join(
            f'[[stream]]\nid = "s{i}"\nmodel = "{m}"\n'
            f'source = {{ kind = "url", url = "rtsp://cam/{i}" }}\n'
            for i, m in enumerate(models)
        )
        config_ = config(f"[daemon]\nworkers = {workers}\n" + streams)
        assert resolve_workers(config_, 64) == expected
        assert burst_workers(config_) <= 20
        if expected < len(models):
            why = f"(workers = {workers}, at most {expected}: the task-start burst split"
            assert why in describe_sharding(config_, expected)

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("0", r"workers must be 1–256 or \"auto\", got 0; fix: .* - at `\$\.daemon`"),
            ("257", r"workers must be 1–256"),
            (
                '"many"',
                r"Expected `int \| str`|Invalid enum value 'many' - at `\$\.daemon\.workers`",
            ),
            ("true", r"- at `\$\.daemon\.workers`"),
            ("2.5", r"- at `\$\.daemon\.workers`"),
        ],
    )
    def test_refused_in_one_line(self, value: str, message: str) -> None:
        with pytest.raises(ConfigError, match=message) as caught:
            cfg(value, "a")
        assert "\n" not in str(caught.value)

    def test_a_stdin_stream_needs_one_process(self) -> None:
        toml = '[daemon]\nworkers = 2\n[[stream]]\nid = "in"\nsource = { kind = "stdin", rate = 16000 }\n'
        with pytest.raises(ConfigError, match=r"fix: workers = 1 - at `\$\.stream\[0\]\.source`"):
            config(toml)

    def test_rate_shares_add_up_to_one_budget(self) -> None:
        for n in (1, 2, 3, 7, 64):
            share = float(rate_share(n))
            assert 0 < share <= 1 and share * n == pytest.approx(1.0)
            assert share * n <= 1.0 + 1e-12


class TestCheck:
    @pytest.mark.parametrize(
        ("workers", "line"),
        [
            ("2", "workers: 2 - 0: a, c; 1: b)"),
            ("5", "workers: 3 (workers = 5, at most one per stream) - 0: a; 1: b; 2: c)"),
        ],
    )
    async def test_check_reports_the_sharding(
        self, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], workers: str, line: str
    ) -> None:
        """--check names which worker runs which stream; --dump shows the setting."""
        path = tmp_path / "d.toml"
        head = f'[daemon]\nsimulator = "scripted"\nworkers = {workers}\n'
        path.write_text(head + streams_toml("a", "b", "c"))
        args = argparse.Namespace(config=str(path), check=True, dump=True)
        assert await daemon_command(args, environ={}) == 0
        out, err = capsys.readouterr()
        assert f"workers = {workers}" in out
        assert err.endswith(line + "\n") and err.count("\n") == 1


class TestPlacement:
    def test_round_robin_in_file_order(self) -> None:
        """Balanced, and the same file places the same way on every start."""
        placed = assign(specs("a", "b", "c", "d", "e"), 2)
        assert placed == {"a": 0, "b": 1, "c": 0, "d": 1, "e": 0}
        assert assign(specs("a", "b", "c", "d", "e"), 2) == placed

    def test_a_reload_never_moves_a_kept_stream(self) -> None:
        """Removed streams free their place; added ones go to the emptiest worker."""
        placed = assign(specs("a", "b", "c", "d"), 2)  # a c | b d
        after = reassign(placed, specs("b", "c", "d", "x", "y"), 2)
        assert {k: after[k] for k in "bcd"} == {"b": 1, "c": 0, "d": 1}
        assert after["x"] == 0  # worker 0 had one stream, worker 1 two
        assert after["y"] == 0  # a tie: the lowest index
        assert list(after) == ["b", "c", "d", "x", "y"]  # each stream exactly once

    @pytest.mark.parametrize("workers", [1, 2, 3, 5])
    def test_every_stream_in_exactly_one_worker(self, workers: int) -> None:
        ids = [f"s{i}" for i in range(11)]
        placed = assign(specs(*ids), workers)
        assert sorted(placed) == sorted(ids)
        loads = [list(placed.values()).count(w) for w in range(workers)]
        assert max(loads) - min(loads) <= 1


def reported(spec: StreamSpec, **changes: object) -> StreamSnapshot:
    snap = StreamMetrics(spec.id, source="url", model=spec.model).snapshot(0.0)
    return msgspec.structs.replace(snap, **changes)


class TestMerge:
    def test_every_stream_once_with_the_workers_states(self) -> None:
        """Reported, not yet reported (starting) and dead (restarting, with the reason)."""
        a, b, c, d = specs("a", "b", "c", "d")
        live = DaemonSnapshot(
            uptime_s=3,
            draining=False,
            streams=(reported(a, state="running", finals=4),),
            ratelimit_wait_s=0.5,
        )
        views = [
            WorkerView(worker=0, streams=(a, b), snapshot=live, down_s=2.0),
            WorkerView(
                worker=1,
                streams=(c, d),
                down="worker 1 (pid 42) was killed by SIGKILL; restarting in 0.5 s",
                down_s=1.0,
                restarts=1,
            ),
        ]
        merged = merge(views, uptime_s=9.0, draining=False, wall_time=1_700_000_000.0)
        by_id = {s.stream: s for s in merged.streams}
        assert list(by_id) == ["a", "b", "c", "d"]
        assert (by_id["a"].state, by_id["a"].finals) == ("running", 4)
        assert (by_id["b"].state, by_id["b"].outage_s) == ("starting", 2.0)
        assert by_id["c"].state == by_id["d"].state == "restarting"
        assert merged.ratelimit_wait_s == 0.5 and merged.uptime_s == 9.0
        code, word, verdicts = daemon_health(merged, 5.0)
        assert (code, word) == (200, "degraded")
        assert verdicts["c"].reasons == (
            "restarting: worker 1 (pid 42) was killed by SIGKILL; restarting in 0.5 s",
        )
        assert verdicts["b"].status == "ok"  # starting, within the grace
        assert render_health(merged, 5.0)[0] == 200

    def test_a_restarted_worker_counts_in_the_streams_restarts(self) -> None:
        (a,) = specs("a")
        live = DaemonSnapshot(uptime_s=1, draining=False, streams=(reported(a, restarts=1),))
        view = WorkerView(worker=0, streams=(a,), snapshot=live, restarts=2)
        (merged,) = merge([view], uptime_s=1, draining=False, wall_time=0.0).streams
        assert merged.restarts == 3


class TestCarry:
    def test_counters_carry_on_across_a_worker_restart(self) -> None:
        """A dead worker's last counts are added to its replacement's, during the restart too;
        gauges are the new worker's alone."""
        (a,) = specs("a")
        metrics = StreamMetrics("a", source="url", model=a.model)
        metrics.push_lateness.observe(0.02)
        first = msgspec.structs.replace(
            metrics.snapshot(0.0), finals=7, gaps={"network": 1}, audio_lost_s=1.5, restarts=1
        )
        carried = {"a": first}
        down = WorkerView(worker=0, streams=(a,), down="died", restarts=1, carried=carried)
        (during,) = merge([down], uptime_s=1, draining=False, wall_time=0.0).streams
        assert (during.state, during.finals, during.restarts) == ("restarting", 7, 2)
        assert during.push_lateness.count == 1

        metrics.push_lateness.observe(5.0)
        now = msgspec.structs.replace(
            metrics.snapshot(0.0), state="running", finals=2, gaps={"network": 1, "source": 2}
        )
        live = DaemonSnapshot(uptime_s=1, draining=False, streams=(now,))
        view = WorkerView(worker=0, streams=(a,), snapshot=live, restarts=1, carried=carried)
        (after,) = merge([view], uptime_s=1, draining=False, wall_time=0.0).streams
        assert (after.state, after.finals, after.restarts) == ("running", 9, 2)
        assert after.gaps == {"network": 2, "source": 2}
        assert after.audio_lost_s == 1.5
        lateness = after.push_lateness
        assert (lateness.count, lateness.sum) == (3, pytest.approx(0.02 + 0.02 + 5.0))
        assert lateness.cumulative[-1] == 3


class TestWire:
    async def test_messages_round_trip_framed(self) -> None:
        """Frames split anywhere are reassembled; the config and snapshot survive intact."""
        send, recv = trio.testing.memory_stream_pair()
        daemon = cfg("2", "a", "b")
        start = Start(worker=1, workers=2, config=daemon, url="ws://x", api_key=KEY)
        (a,) = specs("a")
        report = Report(snapshot=DaemonSnapshot(uptime_s=1, draining=False, streams=(reported(a),)))
        data = encode(start) + encode(Drain()) + encode(report)
        reader = FrameReader(recv)
        for i in range(0, len(data), 7):  # a pipe delivers whatever it likes
            await send.send_all(data[i : i + 7])
        await send.aclose()
        assert await reader.receive() == start
        assert await reader.receive() == Drain()
        assert await reader.receive() == report
        assert await reader.receive() is None

    def test_the_key_never_shows_in_a_repr(self) -> None:
        start = Start(worker=0, workers=2, config=cfg("2", "a", "b"), url="ws://x", api_key=KEY)
        assert KEY not in repr(start) and "***" in repr(start)

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (encode(Drain())[:-1], "inside a frame"),
            (b"\x00\x00", "inside a frame header"),
            ((MAX_FRAME + 1).to_bytes(4, "big"), "bound"),
            (b"\x00\x00\x00\x02\xc1\xc1", "not a worker message"),
        ],
    )
    async def test_a_broken_peer_is_an_error(self, data: bytes, message: str) -> None:
        send, recv = trio.testing.memory_stream_pair()
        await send.send_all(data)
        await send.aclose()
        with pytest.raises(WireError, match=message):
            await FrameReader(recv).receive()
