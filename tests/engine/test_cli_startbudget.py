"""``engine.cli._startbudget``: the run's task-start budget — the user's, a simulator's, the service's."""

from __future__ import annotations

import pytest
import trio

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim.config import SimConfig
from adapters.sim.server import open_simulator
from engine.cli._common import Endpoint
from engine.cli._startbudget import choose_budget, is_loopback, probe_declared, resolve_budget
from engine.config import Secret
from engine.errors import ConfigError
from engine.policy import RATE_LIMITS, RateLimit
from engine.ratelimit import DeclaredLimits
from tests.conftest import deadline


class TestChooseBudget:
    def test_the_service_by_default(self) -> None:
        """No option and no declaration: the service's per-model budgets."""
        assert choose_budget(None, None) == (RATE_LIMITS, "service")

    def test_a_simulators_declaration(self) -> None:
        """A simulator's declared budgets replace the service's (empty: no limit)."""
        assert choose_budget(None, DeclaredLimits({})) == ({}, "simulator")
        declared = DeclaredLimits({"paraformer": RateLimit(100)})
        assert choose_budget(None, declared).limits == {"paraformer": RateLimit(100)}

    @pytest.mark.parametrize(
        ("text", "limit"),
        [("50", RateLimit(50)), ("10/min", RateLimit(10, per_s=60.0)), ("unlimited", None)],
    )
    def test_the_option_wins(self, text: str, limit: RateLimit | None) -> None:
        """``--start-rate`` is every family's budget, over any declaration."""
        budget = choose_budget(text, DeclaredLimits({}))
        assert budget.source == "--start-rate"
        assert budget.limits == ({} if limit is None else dict.fromkeys(RATE_LIMITS, limit))

    def test_a_bad_option_is_one_line(self) -> None:
        """A bad ``--start-rate`` is a configuration error naming the fix."""
        with pytest.raises(ConfigError, match=r"^bad --start-rate 'fast'.*fix: e\.g\.") as info:
            choose_budget("fast", None)
        assert "\n" not in str(info.value)


def test_loopback_hosts() -> None:
    """localhost and loopback addresses are this machine; anything else is not."""
    assert is_loopback("ws://127.0.0.1:1/x") and is_loopback("ws://localhost/x")
    assert is_loopback("ws://[::1]:8765/x")
    assert not is_loopback("wss://dashscope.aliyuncs.com/api-ws/v1/inference")
    assert not is_loopback("ws://10.0.0.7:8765/x")


@deadline(30)
async def test_a_running_simulator_declares_no_limit() -> None:
    """A ``--url`` to a simulator on this machine: its own budget (none), not 20/s."""
    async with open_simulator(SimConfig(), ScriptedRecognizer.tone()) as sim:
        assert await probe_declared(sim.inference_url) == DeclaredLimits({})
        budget = await resolve_budget(None, Endpoint(sim.inference_url, Secret("k"), False))
    assert budget == ({}, "simulator")


async def _serve_once(answer: bytes, task_status: trio.TaskStatus[int]) -> None:
    """A TCP server on 127.0.0.1 that answers each connection with ``answer`` (b"": never)."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(4096)
            if not answer:
                await trio.sleep_forever()
            await stream.send_all(answer)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nnot-js!",
        b"garbage\r\n\r\n",
        # a declaration no bucket can keep is no declaration
        b"HTTP/1.1 200 OK\r\nContent-Length: 48\r\nConnection: close\r\n\r\n"
        b'{"task_starts":{"paraformer":{"rate":0.0}}}     ',
        b"",  # a server that never answers: the probe gives up on its deadline
    ],
)
@deadline(30)
async def test_a_local_url_that_is_not_a_simulator_keeps_the_service_budget(
    answer: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    """A proxy or tunnel on this machine (404, a bad body, silence): the service's budget."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve_once, answer)
        url = f"ws://127.0.0.1:{port}/api-ws/v1/inference"
        assert await resolve_budget(None, Endpoint(url, Secret("k"), False)) == (
            RATE_LIMITS,
            "service",
        )
        nursery.cancel_scope.cancel()


@deadline(30)
async def test_nothing_listening_keeps_the_service_budget() -> None:
    """A refused probe is no declaration."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    assert await probe_declared(f"ws://127.0.0.1:{port}/x") is None


@deadline(30)
async def test_a_remote_url_is_never_probed() -> None:
    """A URL off this machine keeps the service's budget without a connection."""
    endpoint = Endpoint("wss://192.0.2.1/api-ws/v1/inference", Secret("k"), False)
    assert await resolve_budget(None, endpoint) == (RATE_LIMITS, "service")
