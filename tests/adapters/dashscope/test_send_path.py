"""The connection's send lanes (``adapters/dashscope/_send_path.py``) with a stateful encoder.

A realtime frame's encoding carries an event id from a counter: a frame the fast
lane encoded but the transport refused must go out as it was encoded, once, so
the wire is the same whichever lane carried each frame.
"""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from adapters.dashscope._liveness import Liveness
from adapters.dashscope._send_path import SendPath
from adapters.dashscope.connection import LinkSettings
from engine.errors import Disconnected, StenoTimeout


class CountingCore:
    """Encodes every command with the next id, as the realtime core does."""

    def __init__(self) -> None:
        self._ids = itertools.count()

    def send(self, command: bytes) -> str:
        return f"{next(self._ids)}:{command.hex()}"


class Wire:
    """A transport whose fast lane takes ``room`` frames, then refuses until drained."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.frames: list[bytes | str] = []
        self.blocked = False
        self.broken = False

    def send_nowait(self, frame: bytes | str) -> bool:
        if self.broken:
            raise Disconnected("gone")
        if self.room <= 0:
            return False
        self.room -= 1
        self.frames.append(frame)
        return True

    async def send(self, frame: bytes | str) -> None:
        if self.blocked:
            await trio.sleep_forever()
        self.frames.append(frame)
        await trio.lowlevel.checkpoint()


class Lanes(SendPath[bytes]):
    def __init__(self, wire: Wire, *, send_s: float = 5.0) -> None:
        self.settings = LinkSettings(
            url="ws://x/", api_key="", user_agent="t", rate=16000, send_s=send_s
        )
        self.error = None
        self.first_audio_t = None
        self.finish_sent_t = None
        self.audio_samples = 0
        self._core = CountingCore()
        self._transport = wire  # type: ignore[assignment]
        self._live = Liveness(stall_s=30.0, ping_interval_s=15.0, pong_timeout_s=10.0)
        self._reported = True
        self._over = False
        self._held = None

    def _audio(self, pcm: bytes) -> bytes:
        return pcm


async def test_a_refused_frame_goes_out_as_encoded_once() -> None:
    """No id is skipped or repeated: the awaited send of the refused audio sends its encoding."""
    wire = Wire(room=2)
    lanes = Lanes(wire)
    pcm = [bytes([n]) * 4 for n in range(5)]
    assert lanes.try_send_audio(pcm[0]) and lanes.try_send_audio(pcm[1])
    assert not lanes.try_send_audio(pcm[2])  # refused: held
    assert not lanes.fast_lane_open and not lanes.try_send_audio(pcm[3])  # nothing overtakes
    await lanes.send_audio(pcm[2])
    await lanes.send_audio(pcm[3])
    wire.room = 1
    assert lanes.try_send_audio(pcm[4])
    assert wire.frames == [f"{i}:{p.hex()}" for i, p in enumerate(pcm)]
    assert lanes.audio_samples == 5 * 2


async def test_other_audio_after_a_refusal_is_encoded_anew() -> None:
    """Padding (or any other command) first: the held encoding is dropped, never sent."""
    wire = Wire(room=0)
    lanes = Lanes(wire)
    assert not lanes.try_send_audio(b"\x01\x00")
    await lanes.send_padding(1)
    await lanes.send_audio(b"\x01\x00")
    assert wire.frames == ["1:0000", "2:0100"]


async def test_a_broken_transport_refuses_without_raising() -> None:
    """``Disconnected`` from the fast lane is a refusal; the awaited lane reports failures."""
    wire = Wire(room=5)
    wire.broken = True
    lanes = Lanes(wire)
    assert not lanes.try_send_audio(b"\x00\x00")
    assert lanes.audio_samples == 0 and lanes.first_audio_t is None


async def test_a_frame_that_must_wait_has_the_send_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The awaited lane: a transport that takes nothing fails the send after ``send_s``."""
    wire = Wire(room=0)
    wire.blocked = True
    lanes = Lanes(wire, send_s=3.0)
    t0 = trio.current_time()
    with pytest.raises(StenoTimeout, match="stalled for 3 s"):
        await lanes.send_audio(b"\x00\x00")
    assert trio.current_time() - t0 == pytest.approx(3.0)


async def test_voicing_matters_only_while_nothing_sent_awaits_an_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Voiced audio starts the stall watch; until a frame is heard, voicing changes nothing."""
    lanes = Lanes(Wire(room=4))
    assert lanes.voicing_matters
    assert lanes.try_send_audio(b"\0\0", voiced=False)
    assert lanes.voicing_matters  # silence expects no answer
    assert lanes.try_send_audio(b"\1\0", voiced=True)
    since = lanes._live.unanswered_since
    assert not lanes.voicing_matters and since is not None
    await trio.sleep(1.0)
    assert lanes.try_send_audio(b"\2\0", voiced=True)  # a frame the pump did not judge
    assert lanes._live.unanswered_since == since  # the watch counts from the first one
    lanes._live.heard(trio.current_time())
    assert lanes.voicing_matters
