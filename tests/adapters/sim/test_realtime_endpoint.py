"""The realtime endpoint's session: routing and models, session.update, bad frames, images, idle."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import structlog
import trio
import trio.testing
from conftest import deadline
from rtclient import MODEL, TARGET, TRANSLATOR, ZH, of_type, open_client, zh
from simclient import AUTH, GateRecognizer, loud, silence
from trio_websocket import ConnectionClosed, ConnectionRejected

from adapters.dashscope import realtime_messages as m
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import MemoryNet, SimConfig, open_memory_net
from engine.errors import LocalProtocolError

JPEG = b"\xff\xd8\xff\xe0" + bytes(1000) + b"\xff\xd9"
SDK_1X_DEFAULT_UPDATE = {
    "event_id": "event_ec94",
    "type": "session.update",
    "session": {
        "modalities": ["text", "audio"],
        "voice": None,
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_transcription": {"model": None},
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.2,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 800,
        },
        "translation": {"language": "en"},
    },
}
"""What ``OmniRealtimeConversation.update_session()`` sends by default (DASHSCOPE.md §5.6)."""


@pytest.fixture(name="net")
async def _net() -> AsyncIterator[MemoryNet]:
    async with open_memory_net(
        SimConfig(api_keys=["sk-test"]), ScriptedRecognizer.tone(), translator=TRANSLATOR
    ) as net:
        yield net


def image(jpeg: bytes) -> dict[str, str]:
    return {"type": "input_image_buffer.append", "image": base64.b64encode(jpeg).decode()}


class TestRouting:
    @deadline(10)
    async def test_session_created_at_once(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The first frame, unprompted: the model's default session with an id."""
        client = await open_client(net)
        created = await client.recv()
        assert created["type"] == "session.created"
        session = created["session"]
        assert session["id"].startswith("sess_")
        assert (session["object"], session["model"]) == ("realtime.session", MODEL)
        assert session["modalities"] == ["text", "audio"]
        assert (session["voice"], session["sample_rate"]) == ("Tina", 16000)
        assert session["input_audio_transcription"] == {"model": "qwen3-asr-flash-realtime"}
        assert session["turn_detection"]["type"] == "server_vad"
        assert session["translation"] == {"language": "en"}

    @deadline(10)
    async def test_trailing_slash(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await open_client(net, f"/api-ws/v1/realtime/?model={MODEL}")
        assert (await client.recv())["type"] == "session.created"

    @pytest.mark.parametrize(
        ("target", "code", "words"),
        [
            ("/api-ws/v1/realtime", "invalid_value", "model query parameter is required"),
            ("/api-ws/v1/realtime?model=qwen-nope", "Model.NotExist", "qwen-nope"),
            (
                "/api-ws/v1/realtime?model=paraformer-realtime-v2",
                "Model.NotExist",
                "inference protocol",
            ),
        ],
    )
    @deadline(10)
    async def test_bad_model(
        self,
        net: MemoryNet,
        target: str,
        code: str,
        words: str,
        autojump_clock: trio.testing.MockClock,
    ) -> None:
        """The upgrade is accepted; an invalid_request_error names the model, then a 1008 close."""
        client = await open_client(net, target)
        frame = await client.recv()
        assert frame["type"] == "error"
        error = frame["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            code,
            "model",
        )
        assert words in error["message"]
        assert await client.closed() == 1008

    @deadline(10)
    async def test_unknown_path_and_bad_key(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        with pytest.raises(ConnectionRejected) as unknown:
            await net.connect("/api-ws/v1/elsewhere", AUTH)
        assert unknown.value.status_code == 404
        message = json.loads(unknown.value.body)["message"]
        assert "/api-ws/v1/inference" in message and "/api-ws/v1/realtime" in message
        with pytest.raises(ConnectionRejected) as bad_key:
            await net.connect(TARGET, {"Authorization": "Bearer sk-wrong"})
        assert bad_key.value.status_code == 401
        ok = await net.connect(TARGET.replace("?", "?api_key=sk-test&"))
        assert json.loads(await ok.get_message())["type"] == "session.created"


class TestSessionUpdate:
    @deadline(10)
    async def test_sdk_1x_defaults_are_accepted(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """pcm16 formats, voice null, ASR model null (§5.6): session.updated, ASR off."""
        client = await open_client(net)
        await client.recv()
        client.checking = False  # a raw update: the core did not send it
        await client.send_json(SDK_1X_DEFAULT_UPDATE)
        updated = await client.recv()
        assert updated["type"] == "session.updated"
        session = updated["session"]
        assert (session["input_audio_format"], session["voice"]) == ("pcm16", "Tina")
        assert session["input_audio_transcription"] == {"model": None}
        assert session["turn_detection"]["silence_duration_ms"] == 800

    @deadline(10)
    async def test_update_before_created_is_read(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The 1.x SDK updates right after connecting: created, then updated."""
        client = await open_client(net)
        client.checking = False
        await client.send_json(SDK_1X_DEFAULT_UPDATE)
        assert [(await client.recv())["type"] for _ in range(2)] == [
            "session.created",
            "session.updated",
        ]

    @deadline(10)
    async def test_rejected_update_keeps_the_session(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await open_client(net)
        await client.configure(zh(voice="Cherry"))
        await client.send_json(
            {
                "event_id": "event_bad",
                "type": "session.update",
                "session": {"modalities": ["audio"]},
            }
        )
        error = (await client.recv())["error"]
        assert (error["type"], error["code"], error["param"], error["event_id"]) == (
            "invalid_request_error",
            "invalid_value",
            "session.modalities",
            "event_bad",
        )
        client.checking = False
        await client.send_json({"type": "session.update", "session": {}})
        session = (await client.recv())["session"]
        assert (session["voice"], session["translation"]) == ("Cherry", {"language": "zh"})
        assert session["modalities"] == ["text", "audio"]

    @deadline(10)
    async def test_bad_frames_are_errors(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Binary, unknown types and garbage: non-fatal errors; the session goes on."""
        client = await open_client(net)
        await client.configure()
        await client.ws.send_message(b"\x00\x01")
        await client.send_json({"event_id": "event_x", "type": "response.create", "response": {}})
        await client.ws.send_message("{not json")
        errors = [(await client.recv())["error"] for _ in range(3)]
        assert {e["type"] for e in errors} == {"invalid_request_error"}
        assert "binary" in errors[0]["message"]
        assert errors[1]["event_id"] == "event_x" and "response.create" in errors[1]["message"]
        assert [f["type"] for f in await client.talk(silence(100))] == ["session.finished"]

    @deadline(10)
    async def test_opus_is_refused_once(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await open_client(net)
        await client.configure(zh(input_audio_format="opus"))
        frames = await client.talk(loud(300))
        errors = of_type(frames, "error")
        assert [e["error"]["code"] for e in errors] == ["unsupported_format"]
        assert frames[-1]["type"] == "session.finished"


class TestImages:
    @deadline(30)
    async def test_accepted_and_counted(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Two a second pass; a third within the second is refused; the session counts them."""
        with structlog.testing.capture_logs() as logs:
            client = await open_client(net)
            await client.configure()
            await client.send(m.AppendImage(JPEG))
            await client.send(m.AppendImage(JPEG))
            await client.send(m.AppendImage(JPEG))
            refused = (await client.recv())["error"]
            assert (refused["type"], refused["code"], refused["param"]) == (
                "invalid_request_error",
                "rate_limit_exceeded",
                "image",
            )
            await trio.sleep(1)
            await client.send(m.AppendImage(JPEG))
            frames = await client.talk(b"")
            assert [f["type"] for f in frames] == ["session.finished"]
            await client.ws.aclose()
            await client.closed()
            await trio.testing.wait_all_tasks_blocked()
        (ended,) = [e for e in logs if e["event"] == "realtime session ended"]
        assert (ended["images"], ended["outcome"]) == (3, "finished")

    @pytest.mark.parametrize(
        ("jpeg", "words"),
        [(b"\xff\xd8\xff" + bytes(m.MAX_IMAGE_BYTES), "exceeds 500 KB"), (b"GIF89a", "not a JPEG")],
    )
    @deadline(10)
    async def test_refused(
        self, net: MemoryNet, jpeg: bytes, words: str, autojump_clock: trio.testing.MockClock
    ) -> None:
        client = await open_client(net)
        await client.configure()
        await client.send_json({**image(jpeg), "event_id": "event_img"})
        error = (await client.recv())["error"]
        assert (error["code"], error["param"], error["event_id"]) == (
            "invalid_value",
            "image",
            "event_img",
        )
        assert words in error["message"]

    @deadline(10)
    async def test_bad_base64(self, net: MemoryNet, autojump_clock: trio.testing.MockClock) -> None:
        client = await open_client(net)
        await client.configure()
        await client.send_json({"type": "input_image_buffer.append", "image": "not base64!"})
        error = (await client.recv())["error"]
        assert error["type"] == "invalid_request_error"
        assert "input_image_buffer.append" in error["message"]


class TestLimits:
    @deadline(60)
    async def test_audio_faster_than_recognized(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """More than max_audio_queue_s waiting for a stuck recognizer: fatal Throttling."""
        config = SimConfig(max_audio_queue_s=1.0)
        async with open_memory_net(config, GateRecognizer(), translator=TRANSLATOR) as net:
            client = await open_client(net)
            await client.configure(ZH)
            async with trio.open_nursery() as nursery:

                async def upload() -> None:
                    with contextlib.suppress(ConnectionClosed, LocalProtocolError):
                        await client.append(loud(3000), pace=False)

                nursery.start_soon(upload)
                frames = await client.until("error")
            error = frames[-1]["error"]
            assert (error["type"], error["code"]) == ("server_error", "Throttling")
            assert await client.closed() == 1000

    @deadline(60)
    async def test_manual_buffer_limit(self, autojump_clock: trio.testing.MockClock) -> None:
        config = SimConfig(max_audio_queue_s=1.0)
        async with open_memory_net(config, GateRecognizer(), translator=TRANSLATOR) as net:
            client = await open_client(net)
            await client.configure(zh(turn_detection=None))
            await client.append(loud(1500), pace=False)
            assert (await client.recv())["error"]["code"] == "Throttling"


class TestIdle:
    @deadline(60)
    async def test_silent_client_times_out(
        self, net: MemoryNet, autojump_clock: trio.testing.MockClock
    ) -> None:
        """No frame for idle_timeout_s: a fatal error (CLIENT_ERROR), then a normal close."""
        client = await open_client(net)
        await client.configure()
        start = trio.current_time()
        frame = await client.recv()
        assert trio.current_time() - start == pytest.approx(SimConfig().idle_timeout_s)
        error = frame["error"]
        assert (error["type"], error["code"]) == ("server_error", "CLIENT_ERROR")
        assert error["message"] == "request timeout after 23 seconds."
        assert isinstance(client.events[-1], m.FatalServerError)
        assert await client.closed() == 1000

    @deadline(200)
    async def test_not_while_the_worker_is_busy(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A client waiting for slow results is not idle; the timer starts when the work is done."""
        recognizer = GateRecognizer()
        async with open_memory_net(SimConfig(), recognizer, translator=TRANSLATOR) as net:
            client = await open_client(net)
            await client.configure(ZH)
            await client.append(loud(500))
            assert (await client.recv())["type"] == "input_audio_buffer.speech_started"
            with trio.move_on_after(100) as waiting:
                await client.recv()
            assert waiting.cancelled_caught
            released = trio.current_time()
            recognizer.release.set()
            while (frame := await client.recv())["type"] != "error":
                pass
            assert trio.current_time() - released == pytest.approx(SimConfig().idle_timeout_s)
            assert frame["error"]["code"] == "CLIENT_ERROR"
