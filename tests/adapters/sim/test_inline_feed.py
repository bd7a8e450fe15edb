"""A synchronous recognizer session fed inline by the read hub (``inference_task.py``'s
``_feed_inline``): its failure fails the task as an awaited feed's would."""

from __future__ import annotations

import json

import trio
from conftest import deadline
from golden_wire import _MASK, _UPGRADE, _server_messages, _text_frame

from adapters.recognizers.base import Hypothesis
from adapters.recognizers.scripted import ScriptedRecognizer, ScriptedSession
from adapters.recognizers.tonecode import synthesize
from adapters.sim import SimConfig
from adapters.sim.server import open_simulator
from adapters.websocket.frames import Opcode, build_frame


class FailingScripted:
    """The tone recognizer, but every session's ``fail_at``-th synchronous feed raises."""

    name = "failing"

    def __init__(self, fail_at: int) -> None:
        self._inner = ScriptedRecognizer.tone()
        self._fail_at = fail_at

    async def open_session(self, *, sample_rate: int, language: str | None) -> ScriptedSession:
        session = await self._inner.open_session(sample_rate=sample_rate, language=language)
        feed = session.feed_nowait
        fed = 0

        def feed_nowait(pcm: bytes) -> list[Hypothesis]:
            nonlocal fed
            fed += 1
            if fed == self._fail_at:
                raise RuntimeError("decoder exploded")
            return feed(pcm)

        session.feed_nowait = feed_nowait
        return session

    async def aclose(self) -> None:
        await self._inner.aclose()


class TestInlineFeed:
    @deadline(20)
    async def test_a_failing_feed_fails_the_task_and_closes_1011(self) -> None:
        """The hub's inline feed that raises: task-failed InternalError naming the
        recognizer's error, then the close with 1011."""
        pcm = synthesize(["hello world"], 16000).tobytes()
        async with open_simulator(SimConfig(), FailingScripted(fail_at=5)) as sim:  # type: ignore[arg-type]
            stream = await trio.open_tcp_stream("127.0.0.1", sim.port)
            async with stream:
                await stream.send_all(_UPGRADE)
                head = b""
                while b"\r\n\r\n" not in head:
                    head += await stream.receive_some(1 << 16)
                buf = bytearray(head.partition(b"\r\n\r\n")[2])
                header = {"action": "run-task", "task_id": "t", "streaming": "duplex"}
                params = {"format": "pcm", "sample_rate": 16000}
                payload = {
                    "task_group": "audio",
                    "task": "asr",
                    "function": "recognition",
                    "model": "paraformer-realtime-v2",
                    "parameters": params,
                    "input": {},
                }
                await stream.send_all(_text_frame({"header": header, "payload": payload}))
                started = json.loads((await _server_messages(stream, buf))[0])
                assert started["header"]["event"] == "task-started"
                for i in range(0, len(pcm), 3200):  # the hub reads them, fed inline
                    await stream.send_all(build_frame(Opcode.BINARY, pcm[i : i + 3200], mask=_MASK))
                events: list[dict[str, object]] = []
                closed = ""
                try:
                    while True:
                        events += [json.loads(m) for m in await _server_messages(stream, buf)]
                except ConnectionError as exc:
                    closed = str(exc)
        failed = [e for e in events if e["header"]["event"] == "task-failed"]  # type: ignore[index]
        assert len(failed) == 1
        assert failed[0]["header"]["error_code"] == "InternalError"  # type: ignore[index]
        assert "decoder exploded" in failed[0]["header"]["error_message"]  # type: ignore[index]
        assert "\\x03\\xf3" in closed  # close code 1011
