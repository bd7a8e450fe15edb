"""Long silence is not loss (#13): an hour of it, with drops, in virtual time.

A scripted in-memory server (the real server-role core over the in-memory
transport) starts each task, sends a heartbeat result every 10 s of silent audio
when asked for them (``heartbeat: true``) or nothing at all, and answers the
finish with one final for the loud audio it heard. The dialer drops chosen
connections mid-task. The stream is an hour of digital silence, then 3 s of
"speech" (loud samples), then 1 s of silence, paced in real time.

What must hold: nothing is lost (no ``AudioGap``, 0 ms lost), the only
reconnects are the drops (a quiet server is not a stalled one), a reconnect
replays only a short pre-roll (not the hour), and silence that no task got
during an outage is reported as ``AudioSkipped``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import trio
import trio.testing

from adapters.dashscope import messages as m
from adapters.dashscope.inference import InferenceServer
from adapters.dashscope.memory_transport import MemoryTransport, memory_transport_pair
from adapters.dashscope.transport import Headers, Transport
from engine.actors import session
from engine.actors._inlet import Inbox, Inlet, open_inlet
from engine.config import RecognitionOptions, Secret, SessionConfig
from engine.errors import Disconnected
from engine.events import AudioFrame, AudioGap, AudioSkipped, Event, Final, StreamEnded
from engine.policy import RestartPolicy

RATE = 16000
FRAME_S = 1
SILENT_S = 3600
SPEECH_S = 3
LOUD = 2000


@dataclass
class Server:
    heartbeat_every_s: float | None  # None: say nothing during silence
    drop_after_s: dict[int, float]  # connection number -> task audio seconds before the drop
    received_s: list[float] = field(default_factory=list)  # task audio per connection
    heartbeats: int = 0

    @contextlib.asynccontextmanager
    async def dial(
        self, url: str, headers: Headers, *, connect_timeout: float
    ) -> AsyncIterator[Transport]:
        number = len(self.received_s)
        self.received_s.append(0.0)
        client, end = memory_transport_pair(64)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.converse, end, number)
            try:
                yield client
            finally:
                await client.aclose()
                nursery.cancel_scope.cancel()

    async def converse(self, end: MemoryTransport, number: int) -> None:
        core = InferenceServer()
        loud: list[int] = []  # task samples of loud audio
        samples = 0
        last_beat = 0
        while True:
            try:
                data: bytes | str | None = await end.receive()
            except Disconnected:
                return
            core.receive_data(data)
            for event in core.events():
                match event:
                    case m.RunTaskRequested():
                        await end.send(core.send(m.StartTask()))
                    case m.AudioReceived(pcm):
                        x = np.frombuffer(pcm, dtype="<i2")
                        if np.abs(x).max() >= LOUD // 2:
                            loud += [samples, samples + x.size]
                        samples += x.size
                        self.received_s[number] = samples / RATE
                        drop = self.drop_after_s.get(number)
                        if drop is not None and samples / RATE >= drop:
                            await end.aclose(1011)
                            return
                        every = self.heartbeat_every_s
                        if every is not None and (samples - last_beat) / RATE >= every:
                            last_beat = samples
                            self.heartbeats += 1
                            beat = {
                                "sentence": {
                                    "sentence_id": 0,
                                    "begin_time": samples // 16,
                                    "end_time": None,
                                    "text": "",
                                    "heartbeat": True,
                                    "sentence_end": False,
                                    "words": [],
                                }
                            }
                            await end.send(core.send(m.SendResult(beat)))
                    case m.FinishRequested():
                        if loud:
                            begin, stop = min(loud) // 16, max(loud) // 16
                            s = {
                                "sentence_id": 1,
                                "begin_time": begin,
                                "end_time": stop,
                                "text": "speech",
                                "heartbeat": False,
                                "sentence_end": True,
                                "words": [],
                            }
                            await end.send(core.send(m.SendResult({"sentence": s})))
                        await end.send(core.send(m.FinishTaskReply({"duration": 1})))
                    case m.ConnectionClosed():
                        return


def config(heartbeat: bool) -> SessionConfig:
    return SessionConfig(
        stream="night",
        model="paraformer-realtime-v2",
        url="ws://sim/api-ws/v1/inference",
        api_key=Secret("sk"),
        options=RecognitionOptions(heartbeat=heartbeat),
        seed=3,
        policy=RestartPolicy(max_attempts=5, backoff_base_s=4.0, backoff_cap_s=10.0),
    )


async def night(server: Server, cfg: SessionConfig, *, lane: bool = True) -> list[Event]:
    frames_send: Inlet | trio.MemorySendChannel[AudioFrame]
    frames_recv: Inbox | trio.MemoryReceiveChannel[AudioFrame]
    if lane:  # the session's inbox: live frames on the fast lane
        frames_send, frames_recv = open_inlet(4)
    else:
        frames_send, frames_recv = trio.open_memory_channel[AudioFrame](4)
    events_send, events_recv = trio.open_memory_channel[Event](64)
    events: list[Event] = []
    silence = bytes(2 * RATE * FRAME_S)
    loud = np.full(RATE * FRAME_S, LOUD, dtype="<i2").tobytes()

    async def feed() -> None:
        async with frames_send:
            t0 = trio.current_time()
            seconds = SILENT_S + SPEECH_S + 1
            for i in range(0, seconds, FRAME_S):
                await trio.sleep_until(t0 + i)
                pcm = loud if SILENT_S <= i < SILENT_S + SPEECH_S else silence
                await frames_send.send(AudioFrame(i * RATE, pcm, RATE))

    async def collect() -> None:
        async for event in events_recv:
            events.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        nursery.start_soon(collect)
        await session.run(inbox=frames_recv, outbox=events_send, config=cfg, dial=server.dial)
    return events


@pytest.mark.parametrize("lane", [True, False], ids=["inlet", "channel"])
@pytest.mark.parametrize("heartbeat", [True, False], ids=["heartbeats", "quiet"])
async def test_an_hour_of_silence_with_drops_loses_nothing(
    autojump_clock: trio.testing.MockClock, heartbeat: bool, lane: bool
) -> None:
    drops = {0: 1200.0, 1: 900.0}  # two drops in the middle of the night
    server = Server(10.0 if heartbeat else None, drops)
    with trio.fail_after(SILENT_S + 600):
        events = await night(server, config(heartbeat), lane=lane)
    ended = next(e for e in events if isinstance(e, StreamEnded))
    assert not [e for e in events if isinstance(e, AudioGap)]
    assert (ended.status, ended.audio_lost_ms, ended.reconnects) == ("ok", 0, len(drops))
    assert len(server.received_s) == len(drops) + 1  # no reconnect but the drops
    (final,) = [e for e in events if isinstance(e, Final)]
    assert final.start == SILENT_S * RATE and final.end == (SILENT_S + SPEECH_S) * RATE
    # A reconnect replays a short pre-roll, not the night: what the servers got in all
    # is the stream, plus a few seconds per drop at most.
    total = sum(server.received_s)
    assert SILENT_S + SPEECH_S - 30 <= total <= SILENT_S + SPEECH_S + 1 + 5 * len(drops)
    # What no task got during the outages (the backoffs) was silence: skipped, not lost.
    skipped = [e for e in events if isinstance(e, AudioSkipped)]
    assert skipped and all(e.reason == "silence" for e in skipped)
    assert 0 < sum(e.end - e.start for e in skipped) <= 2 * 10 * RATE
    if heartbeat:
        assert server.heartbeats >= SILENT_S // 10 - 10


# ------------------------------------------------------- the pure pieces


def test_silence_is_judged_per_100_ms_block() -> None:
    from engine.actors._silence import SILENCE_RMS, is_silent

    quiet = np.full(RATE, int(SILENCE_RMS) - 1, dtype="<i2")
    assert is_silent(quiet.tobytes(), RATE) and is_silent(b"", RATE)
    one_word = quiet.copy()
    one_word[8000:9600] = 3000  # one loud 100 ms block in a quiet second
    assert not is_silent(one_word.tobytes(), RATE)
    assert not is_silent(np.full(100, 500, dtype="<i2").tobytes(), RATE)  # a short loud tail


def test_silence_after_the_last_final_is_committed_with_a_pre_roll() -> None:
    from engine.actors._feed import Feed
    from engine.actors._silence import PRE_ROLL_S

    send, recv = trio.open_memory_channel[AudioFrame](100)
    feed = Feed(recv, 600 * RATE, RATE)
    loud = np.full(RATE, LOUD, dtype="<i2").tobytes()
    for i in range(10):  # 2 s of speech, then 8 s of silence
        send.send_nowait(AudioFrame(i * RATE, loud if i < 2 else bytes(2 * RATE), RATE))
    send.close()
    feed.absorb_ready()
    feed.commit_silence()
    assert feed.buffer.commit_point == 0  # the speech is not final yet: nothing moves
    feed.buffer.commit(2 * RATE)  # its final came
    feed.mark_sent(5 * RATE)  # a task got the first 5 s
    feed.commit_silence(sentence_open=True)
    assert feed.buffer.commit_point == 2 * RATE  # a sentence is open: nothing moves
    feed.commit_silence()
    assert feed.buffer.commit_point == 10 * RATE - int(PRE_ROLL_S * RATE)
    # what no task got, up to the pre-roll
    assert feed.take_skipped() == [(5 * RATE, 10 * RATE - int(PRE_ROLL_S * RATE))]
    assert feed.take_skipped() == []
