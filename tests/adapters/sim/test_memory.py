"""MemoryNet as the engine's dialer: the engine's client core talks to the simulator."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from conftest import deadline
from simclient import API_KEY, tone_pcm

from adapters.dashscope import messages as m
from adapters.dashscope.inference import InferenceClient
from adapters.dashscope.ws import connect
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import SimConfig, open_memory_net
from engine.errors import AuthError

URL = "ws://sim/api-ws/v1/inference"


@pytest.mark.usefixtures("any_transport")  # both WebSocket client transports
class TestDial:
    @deadline(60)
    async def test_engine_client_core_round_trip(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """InferenceClient over adapters.dashscope.ws, dialed through the net."""
        config = SimConfig(api_keys=[API_KEY])
        async with open_memory_net(config, ScriptedRecognizer.tone()) as net:
            transport_cm = connect(
                URL, api_key=API_KEY, user_agent="test", connect_timeout=5, dial=net.dial
            )
            async with transport_cm as transport:
                core = InferenceClient()
                params = {"format": "pcm", "sample_rate": 16000}
                await transport.send(core.send(m.RunTask("t1", "fun-asr-realtime", params)))
                events: list[object] = []

                async def read_until_finished() -> None:
                    while True:
                        core.receive_data(await transport.receive())
                        for event in core.events():
                            events.append(event)
                            if isinstance(event, m.TaskStarted):
                                started.set()
                            if isinstance(event, m.TaskFinished | m.TaskFailed):
                                return

                started = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_until_finished)
                    await started.wait()
                    pcm = tone_pcm(["good morning"])
                    for i in range(0, len(pcm), 3200):
                        await transport.send(core.send(m.SendAudio(pcm[i : i + 3200])))
                        await trio.sleep(0.1)
                    await transport.send(core.send(m.FinishTask()))
        finals = [
            e.output.sentence.text
            for e in events
            if isinstance(e, m.ResultGenerated) and e.output.sentence and e.output.sentence.is_final
        ]
        assert finals == ["Good morning."]
        assert isinstance(events[-1], m.TaskFinished)
        assert events[-1].usage == {"duration": 2}

    @deadline(10)
    async def test_wrong_key_is_an_auth_error(self, autojump_clock: trio.testing.MockClock) -> None:
        async with open_memory_net(SimConfig(api_keys=[API_KEY]), ScriptedRecognizer.tone()) as net:
            with pytest.raises(AuthError):
                async with connect(
                    URL, api_key="nope", user_agent="test", connect_timeout=5, dial=net.dial
                ):
                    pass
