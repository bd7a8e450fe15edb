"""The feed's fast-lane bookkeeping (``engine/actors/_feed.py``): judging and taking live frames."""

from __future__ import annotations

import numpy as np
import trio

from engine.actors._feed import Feed
from engine.events import AudioFrame

RATE = 16000
LOUD = np.full(1600, 3000, dtype="<i2").tobytes()
QUIET = bytes(3200)


def feed() -> Feed:
    _, inbox = trio.open_memory_channel[AudioFrame](1)
    return Feed(inbox, 10 * RATE, RATE)


class TestVoicedIfTaken:
    async def test_loud_audio_is_voiced_and_silence_after_it_is_not(self) -> None:
        """A loud frame is voiced; a silent one is voiced only if it starts before the last sound."""
        f = feed()
        assert f.speech.judge(AudioFrame(0, LOUD, RATE)) == (False, True)
        assert f.speech.judge(AudioFrame(0, QUIET, RATE)) == (True, False)
        f.took_live(AudioFrame(0, LOUD[:1600], RATE), False, trio.current_time())  # ends at 800
        assert f.speech.judge(AudioFrame(0, QUIET, RATE)) == (True, True)
        assert f.speech.judge(AudioFrame(800, QUIET, RATE)) == (True, False)

    def test_an_empty_frame_is_silent_and_not_voiced(self) -> None:
        """No samples: nothing to answer."""
        assert feed().speech.judge(AudioFrame(0, b"", RATE)) == (True, False)


class TestTookLive:
    async def test_a_taken_frame_is_buffered_sent_and_counted(self) -> None:
        """Buffered, sent up to its end, its lag counted; only sound moves the speech end."""
        f = feed()
        now = trio.current_time()
        f.took_live(AudioFrame(0, LOUD, RATE), False, now)
        f.took_live(AudioFrame(1600, QUIET, RATE), True, now)
        assert (f.buffer.end, f.sent_high, f.fast_frames, f.send_lag.count) == (3200, 3200, 2, 2)
        assert f.could_hold_words(1599) and not f.could_hold_words(1600)

    async def test_a_frame_after_a_skip_leaves_a_hole(self) -> None:
        """A frame that starts late is buffered after a hole; sent_high never moves back."""
        f = feed()
        f.sent_high = 9000
        f.took_live(AudioFrame(4800, LOUD, RATE), False, trio.current_time())
        assert (f.buffer.end, f.buffer.skipped_samples, f.sent_high) == (6400, 4800, 9000)
