"""What our client sends, frame for frame, against what the official SDK sends.

For each model family the official ``dashscope`` SDK and ``steno`` (a real
process, through its command line) stream the same audio (``weather.wav``,
16 kHz mono PCM) with the same parameters to one simulator. A
:class:`FrameRecorder` on the simulator (its ``FrameTap`` seam) keeps every
client message per connection, so the comparison is of what arrived on the
wire, whatever shape our client code takes inside:

* inference protocol (paraformer-realtime-v2, fun-asr-realtime,
  gummy-realtime-v1, gummy-chat-v1): the ``run-task`` JSON and the
  ``finish-task`` JSON equal the SDK's field for field; the binary frames carry
  exactly the same PCM bytes;
* realtime protocol (qwen3.5-livetranslate-flash-realtime): ``session.update``
  equals the SDK's except for the fields listed in ``REALTIME_DIFFERENCES``,
  each with why; the appended audio is the same PCM; ``session.finish`` is the same.

Where ours legitimately differs, the test says why next to the check: ids are
random per task or event; our frames are not all 100 ms (see
:func:`check_frame_sizes`). Planted bug it catches: gummy's run-task sending
``source_lang`` instead of ``source_language`` — our simulator accepts it (an
unknown parameter is ignored, as the service does) and every other test passed;
here both gummy tests fail. Every other test talks to our own simulator, written
from the same reading of the protocol as the client.

Real clock, real sockets, the SDK's own threads and a ``steno`` process.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import pathlib
import re
import sys
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeVar

import dashscope
import pytest
import trio
from conftest import DEMO_AUDIO
from dashscope.audio.asr import (
    Recognition,
    RecognitionCallback,
    TranslationRecognizerCallback,
    TranslationRecognizerChat,
    TranslationRecognizerRealtime,
)
from dashscope.audio.qwen_omni import MultiModality, OmniRealtimeCallback, OmniRealtimeConversation
from dashscope.audio.qwen_omni.omni_realtime import TranslationParams

from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.sim import SimConfig, SimulatorHandle, open_simulator
from adapters.sim.translate import ScriptedTranslator

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(240)]

T = TypeVar("T")

API_KEY = "sk-interop"
WAV = DEMO_AUDIO / "weather.wav"
PCM = WAV.read_bytes()[44:]  # the demo files have the canonical 44-byte header
FRAME = 3200  # 100 ms: what the SDK is given, as the SDK's own examples do
MAX_FRAME: Final = 16000  # the service's recommended largest binary frame
DEADLINE_S = 60.0
LIVETRANSLATE = "qwen3.5-livetranslate-flash-realtime"
TASK_ID = re.compile(r"^[0-9a-f]{32}$")
EVENT_ID = re.compile(r"^event_[0-9a-f]{32}$")

Frame = bytes | str


class FrameRecorder:
    """Simulator hooks that change nothing and keep every client message per connection."""

    def __init__(self) -> None:
        self.frames: dict[int, list[Frame]] = defaultdict(list)
        self._lock = threading.Lock()

    def on_upgrade(self, path: str) -> int | None:
        return None

    def on_run_task(self, spec: object) -> None:
        return None

    async def before_send(self, frame: str) -> str | None:
        return frame

    def received(self, conn_id: int, frame: Frame) -> None:
        with self._lock:
            self.frames[conn_id].append(frame)

    def connections(self) -> list[list[Frame]]:
        """The frames of each connection, in the order they were opened."""
        with self._lock:
            return [list(self.frames[c]) for c in sorted(self.frames)]


# ---------------------------------------------------------------------------- the two clients


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking SDK code in a thread; fail (abandoning it) after the deadline."""
    with trio.fail_after(DEADLINE_S):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


GUMMY_PARAMS: dict[str, Any] = {
    "transcription_enabled": True,
    "translation_enabled": True,
    "translation_target_languages": ["zh"],
    "source_language": "en",
    # The SDK passes extra keywords on as parameters: ours keeps the task alive
    # through silences with the documented heartbeat, so the SDK is asked for it too.
    "heartbeat": True,
}


def sdk_recognition(model: str) -> None:
    """Recognition: start / send_audio_frame ×N (100 ms) / stop."""
    recognition = Recognition(
        model=model,
        format="pcm",
        sample_rate=16000,
        callback=RecognitionCallback(),
        heartbeat=True,  # as steno transcribe asks (extra keywords become parameters)
    )
    recognition.start()
    for i in range(0, len(PCM), FRAME):
        recognition.send_audio_frame(PCM[i : i + FRAME])
    recognition.stop()


def sdk_gummy(model: str) -> None:
    """TranslationRecognizerRealtime to zh from en (gummy-realtime-v1)."""
    recognizer = TranslationRecognizerRealtime(
        model=model,
        format="pcm",
        sample_rate=16000,
        callback=TranslationRecognizerCallback(),
        **GUMMY_PARAMS,
    )
    recognizer.start()
    for i in range(0, len(PCM), FRAME):
        recognizer.send_audio_frame(PCM[i : i + FRAME])
    recognizer.stop()


def sdk_gummy_chat(model: str) -> None:
    """TranslationRecognizerChat: one utterance, fed until ``send_audio_frame`` says stop."""
    chat = TranslationRecognizerChat(
        model=model,
        format="pcm",
        sample_rate=16000,
        callback=TranslationRecognizerCallback(),
        **GUMMY_PARAMS,
    )
    chat.start()
    for i in range(0, len(PCM), FRAME):
        if not chat.send_audio_frame(PCM[i : i + FRAME]):
            break
        time.sleep(FRAME / 32000 / 10)  # real-time: 10x, so the SDK reads the sentence end
    chat.stop()


def sdk_livetranslate(url: str) -> None:
    """OmniRealtimeConversation (1.x) with what ``steno translate --to zh --from en`` asks."""
    conversation = OmniRealtimeConversation(
        model=LIVETRANSLATE, callback=OmniRealtimeCallback(), url=url, api_key=API_KEY
    )
    conversation.connect()
    conversation.update_session(
        output_modalities=[MultiModality.TEXT],
        voice="Tina",
        input_audio_transcription_model="qwen3-asr-flash-realtime",
        turn_detection_silence_duration_ms=1000,
        translation_params=TranslationParams(language="zh"),
    )
    for i in range(0, len(PCM), FRAME):
        conversation.append_audio(base64.b64encode(PCM[i : i + FRAME]).decode())
    conversation.end_session(timeout=20)
    conversation.close()


def steno_command() -> list[str]:
    script = pathlib.Path(sys.executable).with_name("steno")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "engine.cli"]


async def steno(sim: SimulatorHandle, model: str, out: pathlib.Path) -> None:
    """``steno transcribe|translate weather.wav`` against the simulator, as a user runs it."""
    translate = model.startswith(("gummy", "qwen"))
    command = ["translate", "--to", "zh", "--from", "en"] if translate else ["transcribe"]
    args = [*command, str(WAV), "--model", model, "--url", sim.inference_url, "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env |= {"DASHSCOPE_API_KEY": API_KEY, "CI": "true"}
    with trio.fail_after(DEADLINE_S):  # real time: a real process
        done = await trio.run_process(
            [*steno_command(), *args, "--speed", "10"],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]


@pytest.fixture(name="recorded")
async def _recorded() -> AsyncIterator[tuple[SimulatorHandle, FrameRecorder]]:
    recorder = FrameRecorder()
    saved = (dashscope.base_websocket_api_url, dashscope.api_key)
    lines = (DEMO_AUDIO / "weather.txt").read_text(encoding="utf-8").splitlines()
    try:
        async with open_simulator(
            SimConfig(api_keys=[API_KEY]),
            ScriptedRecognizer.transcript(lines),
            faults=recorder,
            translator=ScriptedTranslator.demo(),
        ) as sim:
            dashscope.base_websocket_api_url = sim.inference_url
            dashscope.api_key = API_KEY
            yield sim, recorder
    finally:
        dashscope.base_websocket_api_url, dashscope.api_key = saved


# ------------------------------------------------------------------------------ comparisons


def texts(frames: list[Frame]) -> list[dict[str, Any]]:
    return [json.loads(f) for f in frames if isinstance(f, str)]


def audio(frames: list[Frame]) -> list[bytes]:
    return [f for f in frames if isinstance(f, bytes)]


def task_shape(frames: list[Frame]) -> tuple[dict[str, Any], list[bytes], dict[str, Any]]:
    """One inference connection: run-task, then only audio, then finish-task (nothing else)."""
    assert isinstance(frames[0], str) and isinstance(frames[-1], str), "text first and last"
    assert all(isinstance(f, bytes) for f in frames[1:-1]), "only audio between"
    run, finish = json.loads(frames[0]), json.loads(frames[-1])
    assert (run["header"]["action"], finish["header"]["action"]) == ("run-task", "finish-task")
    task_id = run["header"]["task_id"]
    assert TASK_ID.match(task_id), task_id  # both make a fresh uuid4 hex per task
    assert finish["header"]["task_id"] == task_id
    return run, audio(frames), finish


def without_task_id(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame with its task id blanked: it is random per task, in the SDK and in ours."""
    return {**frame, "header": {**frame["header"], "task_id": "…"}}


def check_frame_sizes(frames: list[bytes], start: int = 0) -> None:
    """Our binary frames end on 100 ms boundaries of the file (but the last), each at
    most MAX_FRAME bytes; ``start`` is where in the file the first one begins.

    Legitimately unlike the SDK's (whatever size the application hands it, here
    always 3200 B): audio that waited while the task started is replayed in frames
    of up to MAX_FRAME bytes, the service's recommended largest, then live audio
    goes out a 100 ms frame at a time. A task that starts mid-file (gummy-chat's
    next utterance) begins where the previous sentence ended, off the 100 ms grid.
    """
    assert all(len(f) <= MAX_FRAME for f in frames), [len(f) for f in frames]
    ends = list(itertools.accumulate((len(f) for f in frames), initial=start))[1:]
    assert all(end % FRAME == 0 for end in ends[:-1]), (start, [len(f) for f in frames])


INFERENCE = {
    "paraformer-realtime-v2": sdk_recognition,
    "fun-asr-realtime": sdk_recognition,
    "gummy-realtime-v1": sdk_gummy,
}


class TestInferenceProtocol:
    @pytest.mark.parametrize("model", list(INFERENCE))
    async def test_same_run_task_audio_and_finish_task(
        self, recorded: tuple[SimulatorHandle, FrameRecorder], model: str, tmp_path: pathlib.Path
    ) -> None:
        """run-task and finish-task equal the SDK's but for the task id; the same PCM bytes."""
        sim, recorder = recorded
        await in_thread(lambda: INFERENCE[model](model))
        await steno(sim, model, tmp_path)
        theirs, ours = recorder.connections()  # one connection each: no fault, no retry
        sdk_run, sdk_audio, sdk_finish = task_shape(theirs)
        run, sent, finish = task_shape(ours)
        assert without_task_id(run) == without_task_id(sdk_run)
        assert without_task_id(finish) == without_task_id(sdk_finish)
        assert b"".join(sdk_audio) == b"".join(sent) == PCM
        assert {len(f) for f in sdk_audio[:-1]} == {FRAME}
        check_frame_sizes(sent)

    async def test_gummy_chat_every_task_as_the_sdk_starts_one(
        self, recorded: tuple[SimulatorHandle, FrameRecorder], tmp_path: pathlib.Path
    ) -> None:
        """gummy-chat: the SDK's object carries one utterance, ours a task per utterance.

        Every one of our tasks starts and finishes exactly as the SDK's does (but for
        the task id); its audio is a contiguous piece of the file, the first from the
        start (like the SDK's), the last to the end.
        """
        model = "gummy-chat-v1"
        sim, recorder = recorded
        await in_thread(lambda: sdk_gummy_chat(model))
        await steno(sim, model, tmp_path)
        theirs, *ours = recorder.connections()
        sdk_run, sdk_audio, sdk_finish = task_shape(theirs)
        assert PCM.startswith(b"".join(sdk_audio))
        assert len(ours) >= 3, "weather.wav has three sentences: a task each"
        pieces = []
        for connection in ours:
            run, sent, finish = task_shape(connection)
            assert without_task_id(run) == without_task_id(sdk_run)
            assert without_task_id(finish) == without_task_id(sdk_finish)
            piece = b"".join(sent)
            start = PCM.find(piece)
            assert start >= 0 and start % 2 == 0, "a contiguous piece of the file's samples"
            check_frame_sizes(sent, start)
            pieces.append(piece)
        assert PCM.startswith(pieces[0]) and PCM.endswith(pieces[-1])


REALTIME_DIFFERENCES: Final[dict[str, tuple[object, object, str]]] = {
    # field path: (ours, the 1.x SDK's, why)
    "input_audio_format": (
        "pcm",
        "pcm16",
        "pcm is the documented 3.5 value; the 1.x SDK sends the legacy pcm16 (accepted)",
    ),
    "output_audio_format": ("pcm", "pcm16", "as input_audio_format"),
    "sample_rate": (16000, None, "ours states the input rate; the SDK leaves the default 16000"),
    "turn_detection.prefix_padding_ms": (
        None,
        300,
        "the SDK always sends its omni default; it is no livetranslate input (only echoed)",
    ),
    "input_audio_transcription.language": (
        "en",
        None,
        "--from en; the 1.x SDK cannot send a source language beside the ASR model",
    ),
}


def pop_path(session: dict[str, Any], path: str) -> object:
    *parents, leaf = path.split(".")
    node = session
    for key in parents:
        node = node.get(key, {})
    return node.pop(leaf, None)


class TestRealtimeProtocol:
    async def test_same_session_update_audio_and_finish(
        self, recorded: tuple[SimulatorHandle, FrameRecorder], tmp_path: pathlib.Path
    ) -> None:
        """session.update equals the SDK's but for REALTIME_DIFFERENCES; the same PCM;
        session.finish the same. Event ids are random (``event_`` + 32 hex) in both."""
        sim, recorder = recorded
        await in_thread(lambda: sdk_livetranslate(sim.realtime_url))
        await steno(sim, LIVETRANSLATE, tmp_path)
        theirs, ours = (texts(c) for c in recorder.connections())
        for frames in (theirs, ours):
            assert all(EVENT_ID.match(f.pop("event_id")) for f in frames)
            kinds = [f["type"] for f in frames]
            assert kinds[0] == "session.update" and kinds[-1] == "session.finish"
            assert set(kinds[1:-1]) == {"input_audio_buffer.append"}, kinds
        sdk_session, session = theirs[0]["session"], ours[0]["session"]
        for path, (mine, sdk, why) in REALTIME_DIFFERENCES.items():
            assert (pop_path(session, path), pop_path(sdk_session, path)) == (mine, sdk), why
        assert session == sdk_session
        assert ours[-1] == theirs[-1] == {"type": "session.finish"}
        sdk_audio = [base64.b64decode(f["audio"]) for f in theirs[1:-1]]
        sent = [base64.b64decode(f["audio"]) for f in ours[1:-1]]
        assert b"".join(sdk_audio) == b"".join(sent) == PCM
        check_frame_sizes(sent)
