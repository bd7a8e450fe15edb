"""Seeded fault plans: the spec, and what a raw client observes for each fault."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
import structlog
import trio
import trio.testing
from conftest import deadline
from simclient import AUTH, SimClient, finals, tone_pcm
from trio_websocket import ConnectionClosed, ConnectionRejected, wrap_client_stream

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import (
    INFERENCE_PATH,
    MemoryNet,
    SimConfig,
    SimServer,
    open_memory_net,
    open_simulator,
)
from adapters.sim._faultstream import FaultStream
from adapters.sim.faults import (
    THROTTLE_CODE,
    THROTTLE_MESSAGE,
    Connections,
    DelayEvents,
    Drop,
    FailTask,
    FaultPlan,
    FaultSpecError,
    HalfOpen,
    RejectUpgrade,
    parse_fault_spec,
    random_plan,
)

HEADER = "X-Steno-Fault"


def net_with(spec: str | None = None, **kwargs: Any) -> Any:
    faults = parse_fault_spec(spec) if spec is not None else kwargs.pop("faults", None)
    return open_memory_net(SimConfig(), ScriptedRecognizer.tone(), faults=faults)


async def connect(net: MemoryNet, fault: str | None = None, target: str | None = None) -> SimClient:
    headers = {**AUTH, HEADER: fault} if fault is not None else AUTH
    if target is None:
        return SimClient(await net.connect(headers=headers))
    return SimClient(await net.connect(target, headers))


async def started(client: SimClient) -> None:
    await client.run_task()
    assert (await client.recv())["header"]["event"] == "task-started"


async def status_of(net: MemoryNet, fault: str | None = None, target: str | None = None) -> int:
    """The upgrade's HTTP status (101 when accepted)."""
    try:
        client = await connect(net, fault, target)
    except ConnectionRejected as exc:
        return int(exc.status_code)
    await client.ws.aclose()
    return 101


class TestSpec:
    @pytest.mark.parametrize(
        ("text", "plan"),
        [
            ("drop:at=2.5;seed=7", FaultPlan(faults=(Drop(at_s=2.5),), seed=7)),
            (
                "half-open:after=3;only=1,3",
                FaultPlan(faults=(HalfOpen(after_frames=3),), connections=Connections(only=(1, 3))),
            ),
            (
                "delay:0.5,jitter=0.1;first=2;p=0.25",
                FaultPlan(
                    faults=(DelayEvents(0.5, 0.1),), connections=Connections(first_n=2, p=0.25)
                ),
            ),
            (
                "fail-task:InvalidParameter,message=no%2C%20thanks,at=1 ; reject:503",
                FaultPlan(
                    faults=(
                        FailTask("InvalidParameter", "no, thanks", at_s=1.0),
                        RejectUpgrade(503),
                    )
                ),
            ),
        ],
    )
    def test_compact(self, text: str, plan: FaultPlan) -> None:
        """The compact syntax parses into the plan; its spec and JSON parse back to it."""
        assert parse_fault_spec(text) == plan
        assert parse_fault_spec(plan.to_spec()) == plan
        assert parse_fault_spec(msgspec.json.encode(plan).decode()) == plan

    def test_toml_scenario_shape(self) -> None:
        """Plans decode from TOML with kebab-case keys and a type tag; typos fail."""
        raw = b'seed = 7\nconnections = { first-n = 1 }\nfaults = [{ type = "drop", at-s = 2.0 }]\n'
        plan = msgspec.toml.decode(raw, type=FaultPlan)
        assert plan == FaultPlan(faults=(Drop(at_s=2.0),), seed=7, connections=Connections(1))
        with pytest.raises(msgspec.ValidationError, match="at_s"):
            msgspec.toml.decode(b'faults = [{ type = "drop", at_s = 2.0 }]', type=FaultPlan)

    def test_repr_carries_the_seed(self) -> None:
        plan = parse_fault_spec("throttle;seed=1234")
        assert "seed=1234" in repr(plan)
        assert str(FaultPlan()) == "seed=0"

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ("", "empty"),
            ("bogus", "unknown fault 'bogus'"),
            ("drop", "at-s or after-frames"),
            ("drop:at=1,after=2", "at most one"),
            ("drop:at=soon", r"\$\.faults\[0\]\.at-s"),
            ("drop:at=1,zap=2", "zap"),
            ("reject:200", "400–599"),
            ("throttle:3", "no bare value"),
            ("seed=1;seed=2", "twice"),
            ("frist=1;throttle", "unknown option 'frist'"),
            ("throttle;p=2", "p must be"),
            ("{not json", "bad fault spec"),
        ],
    )
    def test_bad_specs(self, text: str, match: str) -> None:
        with pytest.raises(FaultSpecError, match=match):
            parse_fault_spec(text)

    def test_random_plans_replay(self) -> None:
        """Same seed, same plan; every drawn plan survives its own compact spec."""
        plans = [random_plan(seed, count=3) for seed in range(300)]
        assert plans == [random_plan(seed, count=3) for seed in range(300)]
        assert len({p.faults for p in plans}) > 200
        for plan in plans:
            assert parse_fault_spec(plan.to_spec()) == plan
        only_drops = {
            type(f) for s in range(50) for f in random_plan(s, weights={"drop": 1}).faults
        }
        assert only_drops == {Drop}
        with pytest.raises(FaultSpecError):
            random_plan(1, weights={"explode": 1.0})

    def test_connection_selection(self) -> None:
        """first/every/only combine with AND; p draws from each connection's own stream."""
        select = Connections(first_n=5, every=2)
        plan = FaultPlan(connections=select)
        assert [n for n in range(1, 9) if select.selects(n, plan.rng(n))] == [1, 3, 5]
        lucky = FaultPlan(seed=9, connections=Connections(p=0.5))
        chosen = [n for n in range(1, 41) if lucky.connections.selects(n, lucky.rng(n))]
        assert 5 < len(chosen) < 35
        assert chosen == [n for n in range(1, 41) if lucky.connections.selects(n, lucky.rng(n))]


class TestUpgradeFaults:
    @pytest.mark.parametrize(
        ("status", "code"),
        [(401, "InvalidApiKey"), (403, "AccessDenied"), (503, "ServiceUnavailable")],
    )
    @deadline(10)
    async def test_reject(
        self, status: int, code: str, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The upgrade fails with the status and the service's JSON error body."""
        async with net_with(f"reject:{status}") as net:
            with pytest.raises(ConnectionRejected) as caught:
                await connect(net)
        assert caught.value.status_code == status
        assert json.loads(caught.value.body)["code"] == code

    @deadline(30)
    async def test_slow_accept(self, autojump_clock: trio.testing.MockClock) -> None:
        """The upgrade is answered late; a client with a shorter timeout gives up."""
        async with net_with("slow-accept:3") as net:
            start = trio.current_time()
            client = await connect(net)
            assert trio.current_time() - start == pytest.approx(3)
            await started(client)
            with trio.move_on_after(1) as waiting:
                await connect(net)
            assert waiting.cancelled_caught


class TestStreamFaults:
    @deadline(30)
    async def test_drop_at_time(self, autojump_clock: trio.testing.MockClock) -> None:
        """At t the socket is gone: abnormal closure (1006), no close frame."""
        async with net_with("drop:at=2.5;seed=3") as net:
            client = await connect(net)
            accepted = trio.current_time()
            await started(client)
            with pytest.raises(ConnectionClosed) as caught:
                await client.recv()
            assert trio.current_time() - accepted == pytest.approx(2.5)
            assert caught.value.reason.code == 1006

    @deadline(30)
    async def test_drop_after_frames(self, autojump_clock: trio.testing.MockClock) -> None:
        """The 3rd client message (run-task, audio, audio) drops the socket."""
        async with net_with("drop:after=3") as net:
            client = await connect(net)
            await started(client)
            await client.ws.send_message(bytes(3200))
            await client.ws.send_message(bytes(3200))
            with pytest.raises(ConnectionClosed) as caught:
                await client.recv()
            assert caught.value.reason.code == 1006

    @deadline(20)
    async def test_drop_over_tcp(self) -> None:
        """Over loopback TCP the drop is a reset: the client sees 1006, not a close frame."""
        plan = parse_fault_spec("drop:after=2")
        async with open_simulator(SimConfig(), ScriptedRecognizer.tone(), faults=plan) as sim:
            # our own stream: trio-websocket does not close it after an abnormal closure
            stream = await trio.open_tcp_stream(sim.host, sim.port)
            async with stream, trio.open_nursery() as nursery:
                target = INFERENCE_PATH + "?api_key=k"
                client = SimClient(await wrap_client_stream(nursery, stream, sim.host, target))
                await started(client)
                await client.ws.send_message(bytes(3200))
                with pytest.raises(ConnectionClosed) as caught:
                    await client.recv()
                assert caught.value.reason.code == 1006
                nursery.cancel_scope.cancel()

    @deadline(300)
    async def test_half_open(self, autojump_clock: trio.testing.MockClock) -> None:
        """After t: pings go unanswered, nothing arrives, and the socket is never closed."""
        async with net_with("half-open:at=2") as net:
            client = await connect(net)
            await started(client)
            await client.ws.ping()  # answered while healthy
            await trio.sleep(2)
            with trio.move_on_after(5) as ping_wait:
                await client.ws.ping()
            assert ping_wait.cancelled_caught
            await client.finish()
            # well past the server's own idle (23 s) and close (10 s) timers
            with trio.move_on_after(120) as read_wait:
                await client.ws.get_message()
            assert read_wait.cancelled_caught, "a half-open socket delivers nothing, not even EOF"
            with trio.move_on_after(1):
                await client.ws.aclose()

    @deadline(60)
    async def test_half_open_after_frames(self, autojump_clock: trio.testing.MockClock) -> None:
        """The run-task itself is the last message the server reads: no task-started."""
        async with net_with("half-open:after=1") as net:
            client = await connect(net)
            await client.run_task()
            with trio.move_on_after(30) as waiting:
                await client.recv()
            assert waiting.cancelled_caught


async def timed_task(client: SimClient) -> tuple[float, list[tuple[str, float]]]:
    """Run a paced task; task-started's latency, and each later event's time since upload start."""
    sent = trio.current_time()
    await started(client)
    latency = trio.current_time() - sent
    upload_start = trio.current_time()
    events: list[tuple[str, float]] = []

    async def upload() -> None:
        await client.send_audio(tone_pcm(["hello world"]), pace=True)
        await client.finish()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upload)
        for event in await client.until_end():
            events.append((event["header"]["event"], trio.current_time() - upload_start))
    return latency, events


class TestEventFaults:
    @deadline(120)
    async def test_delay_shifts_every_event(self, autojump_clock: trio.testing.MockClock) -> None:
        """Each event arrives exactly the delay late — not cumulatively — in order."""
        async with net_with("delay:1.5;only=2") as net:
            base_latency, base = await timed_task(await connect(net))
            latency, delayed = await timed_task(await connect(net))
        assert base_latency == pytest.approx(0)
        assert latency == pytest.approx(1.5)
        assert [name for name, _ in delayed] == [name for name, _ in base]
        assert len(base) > 3
        assert [t for _, t in delayed] == pytest.approx([t + 1.5 for _, t in base])

    @deadline(60)
    async def test_delay_keeps_pings_answered(self, autojump_clock: trio.testing.MockClock) -> None:
        async with net_with("delay:20") as net:
            client = await connect(net)
            await client.run_task()
            before = trio.current_time()
            await client.ws.ping()
            assert trio.current_time() == before
            assert (await client.recv())["header"]["event"] == "task-started"
            assert trio.current_time() - before == pytest.approx(20)

    @deadline(60)
    async def test_delay_jitter_replays(self, autojump_clock: trio.testing.MockClock) -> None:
        """The jitter comes from the connection's seeded stream: same seed, same timing."""
        spec = "delay:1,jitter=0.5;seed=11"
        latencies = []
        for _ in range(2):
            async with net_with(spec) as net:
                latency, _events = await timed_task(await connect(net))
                latencies.append(latency)
        rng = parse_fault_spec(spec).rng(1)
        rng.random()  # the selection draw comes first
        assert latencies == pytest.approx([1 + rng.uniform(0, 0.5)] * 2)

    @deadline(60)
    async def test_no_task_finished(self, autojump_clock: trio.testing.MockClock) -> None:
        """Results come, finish-task gets no reply, and the connection stays healthy."""
        async with net_with("no-task-finished") as net:
            client = await connect(net)
            await started(client)
            await client.send_audio(tone_pcm(["hello world"]), pace=True)
            await client.finish()
            events = []
            with trio.move_on_after(30):
                while True:
                    events.append(await client.recv())
            assert finals(events) == ["Hello world."]
            assert "task-finished" not in [e["header"]["event"] for e in events]
            await client.ws.ping()

    @deadline(30)
    async def test_fail_task_at_run_task(self, autojump_clock: trio.testing.MockClock) -> None:
        async with net_with("fail-task:Arrearage,message=pay%20up") as net:
            client = await connect(net)
            await client.run_task()
            header = (await client.recv())["header"]
            assert (header["event"], header["error_code"]) == ("task-failed", "Arrearage")
            assert header["error_message"] == "pay up"
            assert await client.closed()

    @deadline(30)
    async def test_fail_task_at_time(self, autojump_clock: trio.testing.MockClock) -> None:
        """Mid-task at t: task-failed with the code, then a normal close."""
        async with net_with("fail-task:InternalError,at=4") as net:
            client = await connect(net)
            accepted = trio.current_time()
            await started(client)
            header = (await client.recv())["header"]
            assert trio.current_time() - accepted == pytest.approx(4)
            assert (header["event"], header["error_code"]) == ("task-failed", "InternalError")
            with pytest.raises(ConnectionClosed) as caught:
                await client.recv()
            assert caught.value.reason.code == 1000

    @deadline(30)
    async def test_fail_task_waits_for_a_task(self, autojump_clock: trio.testing.MockClock) -> None:
        """Triggered with no task open, the failure answers the next run-task."""
        async with net_with("fail-task:ServiceUnavailable,at=1") as net:
            client = await connect(net)
            await trio.sleep(3)
            await client.run_task()
            assert (await client.recv())["header"]["error_code"] == "ServiceUnavailable"

    @deadline(30)
    async def test_fail_task_after_frames(self, autojump_clock: trio.testing.MockClock) -> None:
        async with net_with("fail-task:InvalidParameter,after=3") as net:
            client = await connect(net)
            await started(client)
            await client.ws.send_message(bytes(3200))
            await client.ws.send_message(bytes(3200))
            assert (await client.recv())["header"]["error_code"] == "InvalidParameter"

    @deadline(30)
    async def test_throttle(self, autojump_clock: trio.testing.MockClock) -> None:
        async with net_with("throttle") as net:
            client = await connect(net)
            await client.run_task()
            header = (await client.recv())["header"]
            assert (header["error_code"], header["error_message"]) == (
                THROTTLE_CODE,
                THROTTLE_MESSAGE,
            )


class TestSelection:
    @deadline(30)
    async def test_server_plan_counts_connections(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """only=1,3: the 1st and 3rd connection are refused, the others served."""
        async with net_with("reject:503;only=1,3") as net:
            assert [await status_of(net) for _ in range(4)] == [503, 101, 503, 101]

    @deadline(30)
    async def test_first_n_then_healthy(self, autojump_clock: trio.testing.MockClock) -> None:
        """A reconnecting client: the first attempt drops, the second works."""
        async with net_with("drop:after=1;first=1") as net:
            client = await connect(net)
            await client.run_task()
            with pytest.raises(ConnectionClosed):
                await client.recv()
            await started(await connect(net))

    @deadline(30)
    async def test_plan_factory(self, autojump_clock: trio.testing.MockClock) -> None:
        plan = FaultPlan(faults=(RejectUpgrade(403),))
        async with net_with(faults=lambda n: plan if n == 2 else None) as net:
            assert [await status_of(net) for _ in range(3)] == [101, 403, 101]

    @deadline(30)
    async def test_seeded_probability_replays(self, autojump_clock: trio.testing.MockClock) -> None:
        """p draws per connection from the seed: two runs refuse the same connections."""
        spec = "reject:503;p=0.5;seed=9"
        runs = []
        for _ in range(2):
            async with net_with(spec) as net:
                runs.append([await status_of(net) for _ in range(12)])
        plan = parse_fault_spec(spec)
        expected = [503 if plan.connections.selects(n, plan.rng(n)) else 101 for n in range(1, 13)]
        assert runs[0] == runs[1] == expected
        assert {101, 503} == set(expected)

    @deadline(30)
    async def test_header_and_query(self, autojump_clock: trio.testing.MockClock) -> None:
        """Clients pick faults per connection; the header wins over the query."""
        async with net_with() as net:
            assert await status_of(net, "reject:503") == 503
            assert (
                await status_of(net, target="/api-ws/v1/inference?steno_fault=reject%3A403") == 403
            )
            both = "/api-ws/v1/inference?steno_fault=reject%3A403"
            assert await status_of(net, "reject:401", target=both) == 401
            assert await status_of(net) == 101

    @deadline(30)
    async def test_header_plans_count_their_own_connections(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The same requested plan on every reconnect: only its first connection drops."""
        async with net_with("reject:503;only=1") as net:
            assert await status_of(net) == 503
            fault = "drop:after=1;first=1;seed=5"
            client = await connect(net, fault)
            await client.run_task()
            with pytest.raises(ConnectionClosed):
                await client.recv()
            await started(await connect(net, fault))

    @pytest.mark.parametrize(
        ("fault", "target"),
        [("bogus", None), (None, "/api-ws/v1/inference?steno_fault=drop%3Aat%3Dsoon")],
    )
    @deadline(30)
    async def test_bad_request_spec_is_400(
        self, fault: str | None, target: str | None, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with net_with() as net:
            with pytest.raises(ConnectionRejected) as caught:
                await connect(net, fault, target)
        assert caught.value.status_code == 400
        body = json.loads(caught.value.body)
        assert body["code"] == "InvalidParameter"
        assert "bad fault spec" in body["message"]

    @deadline(30)
    async def test_logs_carry_the_seed(self, autojump_clock: trio.testing.MockClock) -> None:
        with structlog.testing.capture_logs() as logs:
            async with net_with("drop:at=1;seed=42") as net:
                client = await connect(net)
                with pytest.raises(ConnectionClosed):
                    await client.recv()
        faults = [e for e in logs if e["event"].startswith("fault.")]
        assert [e["event"] for e in faults] == ["fault.plan", "fault.applied"]
        assert all(e["seed"] == 42 for e in faults)
        assert faults[0]["plan"] == "drop:at=1.0;seed=42"
        assert faults[1]["fault"] == "drop:at=1.0"


class TestFaultStream:
    async def test_pass_through_then_drop(self) -> None:
        """Bytes flow until drop(); then the peer sees EOF and our writes break."""
        peer, inner = trio.testing.memory_stream_pair()
        stream = FaultStream(inner)
        await peer.send_all(b"up")
        assert await stream.receive_some() == b"up"
        await stream.send_all(b"down")
        assert await peer.receive_some() == b"down"
        await stream.abort()
        assert await peer.receive_some() == b""
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"lost")
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()

    async def test_drop_interrupts_a_waiting_read(self) -> None:
        _peer, inner = trio.testing.memory_stream_pair()
        stream = FaultStream(inner)
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                with pytest.raises(trio.BrokenResourceError):
                    await stream.receive_some()

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            stream.drop()

    @deadline(100)
    async def test_half_open_holds_until_the_peer_leaves(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Frozen: nothing either way, aclose keeps the socket; peer EOF ends the linger."""
        peer, inner = trio.testing.memory_stream_pair()
        stream = FaultStream(inner)
        stream.freeze()
        await stream.send_all(b"swallowed")
        await peer.send_all(b"ignored")
        await stream.aclose()
        with trio.move_on_after(50) as waiting:
            await peer.receive_some()
        assert waiting.cancelled_caught, "no bytes and no EOF for the peer"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.linger)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            await trio.sleep(5)
            await peer.aclose()
        assert trio.current_time() - start == pytest.approx(5)

    @deadline(300)
    async def test_server_releases_a_half_open_socket(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """serve_stream outlives its own timers while half-open; returns once the client left."""
        plan = parse_fault_spec("half-open:at=1")
        server = SimServer(SimConfig(), ScriptedRecognizer.tone(), faults=plan)
        client_stream, server_stream = trio.testing.memory_stream_pair()
        served = trio.Event()

        async def serve() -> None:
            await server.serve_stream(server_stream)
            served.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            target = INFERENCE_PATH + "?api_key=k"
            await started(
                SimClient(await wrap_client_stream(nursery, client_stream, "sim", target))
            )
            await trio.sleep(100)  # the server's idle (23 s) and close (10 s) timers ran out
            assert not served.is_set()
            await client_stream.aclose()
            with trio.fail_after(1):
                await served.wait()
