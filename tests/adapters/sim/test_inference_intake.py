"""An inference task's incoming audio, frame by frame: the silence timers and the queue's bound.

Synchronous: :func:`take_audio` takes ``now`` and never awaits."""

from __future__ import annotations

import struct

from adapters.dashscope import messages as m
from adapters.sim.config import SimConfig
from adapters.sim.inference_intake import Dropped, Failed, Heartbeat, queue_audio, take_audio
from adapters.sim.inference_task import Task
from adapters.sim.shaping import heartbeat_output
from adapters.sim.validation import GummyOptions, TaskSpec

RATE = 16000
VOICED = struct.pack("<h", 3000) * 1600  # 100 ms, RMS 3000
SILENT = bytes(3200)  # 100 ms of zeros


def make_task(
    *,
    heartbeat: bool = False,
    audio_format: str = "pcm",
    limit: int = 1 << 20,
    gummy: GummyOptions | None = None,
) -> Task:
    spec = TaskSpec(
        task_id="t1",
        model="paraformer-realtime-v2" if gummy is None else "gummy-realtime-v1",
        audio_format=audio_format,
        sample_rate=RATE,
        language=None,
        heartbeat=heartbeat,
        gummy=gummy,
    )
    return Task(spec, limit, 0.0)


class TestTakeAudio:
    def test_voiced_audio_is_queued_and_resets_the_silence_timer(self) -> None:
        """A voiced frame goes into the queue and counts as the last voice."""
        task = make_task()
        assert take_audio(task, VOICED, 5.0, SimConfig()) is None
        assert task.queue.queued_bytes == len(VOICED)
        assert task.last_voice_at == 5.0

    def test_the_sessions_meter_gives_the_level(self) -> None:
        """With the session's meter (task.level) the timers use its level; where it
        declines (None) the frame is measured here."""
        task = make_task()
        heard: list[bytes] = []

        def meter(pcm: bytes) -> float | None:
            heard.append(pcm)
            return 0.0 if len(heard) == 1 else None

        task.level = meter
        assert take_audio(task, VOICED, 5.0, SimConfig()) is None
        assert task.last_voice_at == 0.0  # the meter said silent
        assert take_audio(task, VOICED, 6.0, SimConfig()) is None
        assert task.last_voice_at == 6.0  # measured here: voiced
        assert heard == [VOICED, VOICED]

    def test_silence_past_the_timeout_drops_the_task(self) -> None:
        """Without heartbeat, silence for silence_timeout_s cancels the task and says why."""
        task = make_task()
        config = SimConfig(silence_timeout_s=2.0)
        assert take_audio(task, SILENT, 1.9, config) is None
        answer = take_audio(task, SILENT, 2.0, config)
        assert answer == Dropped("no speech for 2 seconds")
        assert task.outcome == "dropped: silence"
        assert task.scope.cancel_called
        assert task.cancelled
        assert task.queue.queued_bytes == len(SILENT)  # the dropping frame is not queued

    def test_heartbeat_silence_asks_for_a_heartbeat_result_then_the_queue(self) -> None:
        """With heartbeat, silence earns one heartbeat per interval; its audio waits for it."""
        task = make_task(heartbeat=True)
        config = SimConfig(heartbeat_interval_s=1.0, silence_timeout_s=0.5)
        assert take_audio(task, SILENT, 0.9, config) is None  # never dropped with heartbeat
        answer = take_audio(task, SILENT, 1.0, config)
        assert answer == Heartbeat(m.SendResult(heartbeat_output(200)), SILENT)
        assert task.heartbeats == 1
        assert task.last_heartbeat_at == 1.0
        assert task.queue.queued_bytes == len(SILENT)  # the heartbeat's frame is the caller's
        assert take_audio(task, SILENT, 1.5, config) is None  # the next one is an interval away

    def test_gummy_is_kept_alive_without_heartbeat_results(self) -> None:
        """gummy's heartbeat keeps the task but sends no result."""
        task = make_task(heartbeat=True, gummy=GummyOptions())
        assert take_audio(task, SILENT, 100.0, SimConfig(heartbeat_interval_s=1.0)) is None
        assert task.heartbeats == 0

    def test_audio_after_the_utterance_is_ignored(self) -> None:
        """gummy-chat after its sentence end: nothing is queued or counted."""
        task = make_task()
        task.utterance_over = True
        assert take_audio(task, VOICED, 1.0, SimConfig()) is None
        assert task.queue.queued_bytes == 0
        assert task.audio.duration_ms == 0

    def test_a_wav_header_at_another_rate_fails_the_task(self) -> None:
        """A WAV header that contradicts run-task is UNSUPPORTED_FORMAT."""
        task = make_task(audio_format="wav")
        fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
        header = b"RIFF" + bytes(4) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
        answer = take_audio(task, header + b"data" + bytes(4), 0.0, SimConfig())
        assert answer == Failed(
            "UNSUPPORTED_FORMAT", "wav header says 8000 Hz but run-task sample_rate is 16000"
        )

    def test_a_full_queue_throttles(self) -> None:
        """Audio over the queue's bound fails the task with Throttling, saying how much waits."""
        task = make_task(limit=len(VOICED))
        config = SimConfig(max_audio_queue_s=0.1)
        assert take_audio(task, VOICED, 0.0, config) is None
        answer = take_audio(task, VOICED, 0.1, config)
        assert answer == Failed(
            "Throttling",
            "audio arrives faster than it is recognized (0.1 s queued, limit 0.1 s)",
        )


class TestQueueAudio:
    def test_within_the_bound_nothing_is_left(self) -> None:
        """PCM that fits is queued."""
        task = make_task(limit=4)
        assert queue_audio(task, b"ab", SimConfig()) is None
        assert queue_audio(task, b"cd", SimConfig()) is None
        assert isinstance(queue_audio(task, b"ef", SimConfig()), Failed)
