"""The silence after a final is committed even when the final ends inside a voiced frame.

Frames are judged silent or not whole; a final ends where the recognizer says, most
often inside its last voiced frame. The tail of that frame after the commit point is
judged on its own samples: silent, it holds no words, and the pause after it is
committed down to the pre-roll instead of being held whole (up to the buffer's bound).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.actors import _feed, _speech
from engine.actors._feed import Feed
from engine.actors._inlet import open_inlet
from engine.actors._silence import PRE_ROLL_S, is_silent
from engine.events import AudioFrame

RATE = 16000
FRAME = 1600
LOUD = 2000
PRE_ROLL = int(PRE_ROLL_S * RATE)


def frame(k: int, loud_until: int = 0) -> AudioFrame:
    """Frame ``k`` (100 ms): loud for its first ``loud_until`` samples, then digital silence."""
    x = np.zeros(FRAME, dtype="<i2")
    x[:loud_until] = LOUD
    return AudioFrame(start=k * FRAME, pcm=x.tobytes(), rate=RATE)


def take(feed: Feed, f: AudioFrame) -> None:
    """What the pump's fast lane does with a live frame: judge, buffer, commit silence
    (``took_live`` reads the trio clock: the tests run in trio)."""
    silent, _ = feed.speech.judge(f)
    feed.took_live(f, silent, 0.0)
    feed.mark_sent(f.end)
    feed.commit_silence()


def speak_then_final(feed: Feed, voiced: int, tail_loud: int, final_at: int) -> None:
    """``voiced`` loud frames, the last loud for ``tail_loud`` samples; a final at ``final_at``."""
    for k in range(voiced):
        take(feed, frame(k, FRAME if k < voiced - 1 else tail_loud))
    feed.buffer.commit(final_at)


def new_feed() -> Feed:
    _, inbox = open_inlet(4)
    return Feed(inbox, 120 * RATE, RATE)


class TestSilenceAfterAFinal:
    async def test_a_pause_after_a_final_inside_the_last_frame_is_committed(self) -> None:
        """The sentence ends halfway through its last frame; 30 s of silence follow: the
        buffer keeps the pre-roll (and the frame it starts in), not the 30 s."""
        feed = new_feed()
        speak_then_final(feed, voiced=3, tail_loud=800, final_at=2 * FRAME + 800)
        for k in range(3, 303):
            take(feed, frame(k))
        buffer = feed.buffer
        assert buffer.commit_point == buffer.end - PRE_ROLL
        assert buffer.samples <= PRE_ROLL + FRAME
        assert not feed.could_hold_words(buffer.commit_point)  # the sound ended at the final

    async def test_sound_after_the_final_keeps_everything(self) -> None:
        """The frame is loud after the final's end (a word no final covers): nothing moves."""
        feed = new_feed()
        speak_then_final(feed, voiced=3, tail_loud=FRAME, final_at=2 * FRAME + 800)
        for k in range(3, 60):
            take(feed, frame(k))
        assert feed.buffer.commit_point == 2 * FRAME + 800
        assert feed.buffer.samples == 60 * FRAME - feed.buffer.start

    async def test_a_voiced_frame_after_the_final_keeps_everything(self) -> None:
        """More than a tail (a whole voiced frame after the final's end): nothing moves."""
        feed = new_feed()
        speak_then_final(feed, voiced=4, tail_loud=400, final_at=2 * FRAME + 800)
        for k in range(4, 60):
            take(feed, frame(k))
        assert feed.buffer.commit_point == 2 * FRAME + 800

    async def test_the_tail_is_judged_once_per_commit_point(self, monkeypatch: object) -> None:
        """A loud tail is judged once, not again for every silent frame after it."""
        feed = new_feed()
        speak_then_final(feed, voiced=3, tail_loud=FRAME, final_at=2 * FRAME + 800)
        calls: list[int] = []
        judge = _feed.is_silent

        def counting(pcm: bytes, rate: int) -> bool:
            calls.append(len(pcm))
            return judge(pcm, rate)

        for module in (_feed, _speech):  # the tail's judge, and the frames'
            monkeypatch.setattr(module, "is_silent", counting)  # type: ignore[attr-defined]
        for k in range(3, 40):
            take(feed, frame(k))
        assert calls.count(800 * 2) == 1  # the tail; the other calls judge whole frames
        assert len(calls) == 1 + 37


@settings(max_examples=300, deadline=None)
@given(
    voiced=st.integers(1, 6),
    tail_loud=st.integers(0, FRAME),
    final_back=st.integers(0, FRAME),
    pause=st.integers(0, 40),
)
async def test_the_pause_is_committed_exactly_when_the_tail_is_silent(
    voiced: int, tail_loud: int, final_back: int, pause: int
) -> None:
    """Whatever the final's end inside the last frame and the sound after it: the pause
    is committed down to the pre-roll if and only if the rest of the frame after the
    final is silent (judged on its own samples) and the pause outlasts the pre-roll;
    otherwise the commit point stays at the final."""
    feed = new_feed()
    final_at = voiced * FRAME - final_back
    speak_then_final(feed, voiced, tail_loud, final_at)
    for k in range(voiced, voiced + pause):
        take(feed, frame(k))
    buffer, last = feed.buffer, frame(voiced - 1, tail_loud)
    tail_silent = is_silent(last.pcm[(final_at - last.start) * 2 :], RATE)
    if tail_silent and buffer.end - PRE_ROLL > final_at:
        assert buffer.commit_point == buffer.end - PRE_ROLL
    else:
        assert buffer.commit_point == final_at
