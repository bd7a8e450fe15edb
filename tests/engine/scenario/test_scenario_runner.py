"""The run's ticker (abort-on-fail, history, progress) in virtual time, and the pure helpers
of a run and of one stream (rate-limit split, loopback, fault seeds, error codes)."""

from __future__ import annotations

import io
import pathlib

import msgspec
import trio
import trio.testing

from engine.scenario.executor import Iteration
from engine.scenario.metrics import Recorder
from engine.scenario.play import error_code, stream_fault
from engine.scenario.report import threshold_defs
from engine.scenario.runner import is_loopback, split_limits
from engine.scenario.schedule import Segment
from engine.scenario.spec import FaultStep, decode_scenario
from engine.scenario.ticker import Progress, Ticker, progress_line

FILE = """
[run]
history-interval = "2s"

[[scenario]]
name = "rooms"
executor = "constant-sessions"
sessions = 1
duration = "1m"
audio = { file = "x.wav" }

[thresholds]
first_package_delay = [{ threshold = "p(95)<800", abort-on-fail = true, delay-abort-eval = "3s" }]
wer = ["max<0.1"]
"""


class TestTicker:
    async def test_abort_on_fail_after_its_delay(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """A breached abort-on-fail threshold stops the executors once delay-abort-eval passed;
        history rows are appended every interval; the progress line is drawn each second."""
        file = decode_scenario(FILE)
        rec = Recorder()
        rec.observe("first_package_delay", "rooms", 950.0)
        rec.observe("wer", "rooms", 0.5)  # breached too, but not abort-on-fail
        history = tmp_path / "history.csv"
        progress = io.StringIO()
        ticker = Ticker(
            file, rec, {"rooms": 1}, threshold_defs(file.threshold_items()), history, progress
        )
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as executors:
                nursery.start_soon(ticker.run, start, executors)
                await trio.sleep(100)
            nursery.cancel_scope.cancel()
        assert executors.cancelled_caught
        assert trio.current_time() - start == 3.0
        assert ticker.aborted == "first_package_delay: p(95)<800 failed (abort-on-fail)"
        assert [w.t for w in ticker.windows] == [2.0]
        assert "2,rooms,first_package_delay,1," in history.read_text()
        assert "active: rooms 1" in progress.getvalue() and "\r" in progress.getvalue()

    async def test_no_abort_while_thresholds_hold(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        file = decode_scenario(FILE)
        rec = Recorder()
        rec.observe("first_package_delay", "rooms", 120.0)
        ticker = Ticker(
            file,
            rec,
            {"rooms": 0},
            threshold_defs(file.threshold_items()),
            tmp_path / "h.csv",
            None,
        )
        with trio.move_on_after(10.5) as timeout:
            with trio.CancelScope() as executors:
                await ticker.run(trio.current_time(), executors)
        assert timeout.cancelled_caught and not executors.cancel_called
        assert ticker.aborted is None and len(ticker.windows) == 5


class TestHelpers:
    def test_rate_limits_split(self) -> None:
        """Each of N segments gets 1/N of every family's task-start rate (and burst, at least 1)."""
        limits = split_limits(Segment(0, 4))
        assert limits["paraformer"].rate == 5.0 and limits["paraformer"].capacity == 5
        assert limits["livetranslate"].rate == 2.5 and limits["livetranslate"].per_s == 60.0

    def test_loopback(self) -> None:
        assert is_loopback("ws://127.0.0.1:8765/api-ws/v1/inference")
        assert is_loopback("ws://localhost:1/x") and is_loopback("ws://[::1]:1/x")
        assert not is_loopback("wss://dashscope.aliyuncs.com/api-ws/v1/inference")

    def test_each_stream_gets_its_own_plan_seed(self) -> None:
        """Same stream, same plan (replayable); another stream, another seed (counted apart)."""
        a = Iteration("s", 3, 0, 0.0, 1.0)
        b = Iteration("s", 4, 0, 0.0, 1.0)
        fa, fb = stream_fault("drop:at=3;first=1", 7, a), stream_fault("drop:at=3;first=1", 7, b)
        assert fa == stream_fault("drop:at=3;first=1", 7, a)
        assert fa is not None and fb is not None and fa != fb
        assert fa.startswith("drop:at=3") and "first=1" in fa

    def test_fault_timeline_and_share(self) -> None:
        """The last step at or before the stream's start applies, to its share of streams."""
        steps = (
            FaultStep(plan="throttle", at="0s", share=0.0),
            FaultStep(plan="drop:at=1", at="10s", share=0.5),
        )
        early = [stream_fault(steps, 1, Iteration("s", k, 0, 0.0, 5.0)) for k in range(200)]
        late = [stream_fault(steps, 1, Iteration("s", k, 0, 0.0, 12.0)) for k in range(200)]
        assert early == [None] * 200
        hit = [f for f in late if f is not None]
        assert 70 < len(hit) < 130 and all(f.startswith("drop:at=1") for f in hit)
        assert stream_fault(None, 1, Iteration("s", 0, 0, 0.0, 0.0)) is None

    def test_error_codes(self) -> None:
        """Service codes from failure texts; the category otherwise."""
        assert (
            error_code("server: task failed: Throttling.RateQuota: slow down", "server")
            == "Throttling.RateQuota"
        )
        assert error_code("network: connect failed: HTTP 503 at upgrade", "network") == "http-503"
        assert error_code("network: the server closed the connection", "network") == "network"
        assert msgspec.json.encode(error_code("x", "y")) == b'"y"'


class TestProgress:
    async def test_status_file_and_sum(
        self, autojump_clock: trio.testing.MockClock, tmp_path: pathlib.Path
    ) -> None:
        """A --processes child writes its numbers each second; the parent sums segments."""
        file = decode_scenario(FILE)
        rec = Recorder()
        rec.add("sessions_started", "rooms", 4)
        rec.observe("first_package_delay", "rooms", 300.0)
        ticker = Ticker(file, rec, {"rooms": 2}, [], tmp_path / "h.csv", None)
        ticker.status = tmp_path / "status.json"
        with trio.move_on_after(1.5), trio.CancelScope() as executors:
            await ticker.run(trio.current_time(), executors)
        one = msgspec.json.decode(ticker.status.read_bytes(), type=Progress)
        assert (one.active, one.started, one.phases) == ({"rooms": 2}, 4, {"rooms": "waiting"})
        other = msgspec.structs.replace(one, started=6, errors=1, p95_first_package_delay_ms=900.0)
        line = progress_line([one, other])
        assert "active: rooms 4" in line and "started 10" in line and "errors 1" in line
        assert "max p95 of 2 first_package_delay 900ms" in line
