"""The realtime endpoint's input audio: VAD segments or the manual buffer, as worker ops."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from simclient import loud, silence

from adapters.dashscope import realtime_messages as m
from adapters.dashscope.realtime_server import RealtimeServer
from adapters.sim import realtime_ops as ops
from adapters.sim.realtime_intake import AudioIntake, Refused, Throttled

MODEL = "qwen3.5-livetranslate-flash-realtime"


def ids() -> Any:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter)}"


def update(core: RealtimeServer, **session: Any) -> None:
    """Apply a client ``session.update`` to the core (as the reader would)."""
    core.receive_data(json.dumps({"type": "session.update", "session": session}))
    events = list(core.events())
    assert isinstance(events[-1], m.SessionUpdateRequested), events


async def drain(queue: ops.OpQueue) -> list[ops.Op]:
    """Take every queued op, as the worker does."""
    taken = []
    while not queue.idle:
        taken.append(await queue.get())
        queue.done()
    return taken


def intake(*, limit_s: float = 10.0) -> tuple[AudioIntake, ops.OpQueue, RealtimeServer]:
    make_id = ids()
    core = RealtimeServer(MODEL, ids=make_id)
    queue = ops.OpQueue(int(limit_s * 16000) * 2)
    return AudioIntake(queue, core, ids=make_id, max_audio_queue_s=limit_s), queue, core


class TestVadMode:
    async def test_speech_becomes_start_audio_stop(self) -> None:
        """Voice between silences is one segment: Start (with look-back), Audio…, Stop."""
        audio, queue, _ = intake()
        for chunk in (silence(500), loud(1000), silence(1500)):
            assert audio.append(chunk) is None
        taken = await drain(queue)
        assert isinstance(taken[0], ops.Start) and isinstance(taken[-1], ops.Stop)
        assert taken[0].item_id == taken[-1].item_id
        assert audio.received_ms == 3000

    def test_commit_is_refused(self) -> None:
        """commit belongs to manual mode: invalid_value, and nothing is queued."""
        audio, queue, _ = intake()
        refused = audio.commit()
        assert isinstance(refused, Refused) and refused.code == "invalid_value"
        assert queue.idle

    async def test_finish_ends_the_open_segment_then_finishes(self) -> None:
        """session.finish closes the segment under way before session.finished."""
        audio, queue, _ = intake()
        audio.append(loud(600))
        assert audio.finish() is None
        kinds = [type(op) for op in await drain(queue)]
        assert kinds[0] is ops.Start and kinds[-2:] == [ops.Stop, ops.Finish]


class TestManualMode:
    async def test_commit_makes_an_acknowledged_turn(self) -> None:
        """Buffered audio becomes one Turn at commit; the next names it as previous."""
        audio, queue, core = intake()
        update(core, turn_detection=None)
        assert audio.reconfigure() is None
        audio.append(loud(300))
        assert queue.idle  # buffered, not queued
        assert audio.commit() is None
        audio.append(loud(200))
        audio.commit()
        first, second = await drain(queue)
        assert isinstance(first, ops.Turn) and isinstance(second, ops.Turn)
        assert first.ack and len(first.pcm) == 300 * 32
        assert second.previous_item_id == first.item_id

    def test_empty_commit_is_refused(self) -> None:
        """An empty buffer: input_audio_buffer_commit_empty."""
        audio, _, core = intake()
        update(core, turn_detection=None)
        audio.reconfigure()
        refused = audio.commit()
        assert isinstance(refused, Refused)
        assert refused.code == "input_audio_buffer_commit_empty"

    async def test_finish_recognizes_the_buffer_without_ack(self) -> None:
        """A buffer left at session.finish is an implicit turn (no committed ack)."""
        audio, queue, core = intake()
        update(core, turn_detection=None)
        audio.reconfigure()
        audio.append(loud(100))
        audio.finish()
        turn, finish = await drain(queue)
        assert isinstance(turn, ops.Turn) and not turn.ack
        assert isinstance(finish, ops.Finish)

    def test_full_buffer_throttles(self) -> None:
        """More than max_audio_queue_s buffered: Throttled, with the seconds queued."""
        audio, _, core = intake(limit_s=1.0)
        update(core, turn_detection=None)
        audio.reconfigure()
        assert audio.append(loud(800)) is None
        throttled = audio.append(loud(400))
        assert throttled == Throttled(pytest.approx(1.2))

    def test_vad_back_on_drops_the_buffer(self) -> None:
        """Turning the server VAD on drops a manual buffer."""
        audio, queue, core = intake()
        update(core, turn_detection=None)
        audio.reconfigure()
        audio.append(loud(300))
        update(core, turn_detection={"type": "server_vad"})
        assert audio.reconfigure() is None
        assert isinstance(audio.commit(), Refused)  # VAD mode again
        assert queue.idle


class TestOpus:
    def test_refused_once_then_dropped(self) -> None:
        """opus input is answered with one unsupported_format error; later audio is dropped."""
        audio, queue, core = intake()
        update(core, input_audio_format="opus")
        refused = audio.append(b"\x00" * 100)
        assert isinstance(refused, Refused) and refused.code == "unsupported_format"
        assert audio.append(b"\x00" * 100) is None
        assert queue.idle and audio.received_ms == 0
