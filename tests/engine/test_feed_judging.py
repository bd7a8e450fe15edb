"""Frames judged when the feed is asked (``engine/actors/_speech.py``), not when they come.

The pump's step skips the silence judgement while the stall watch runs
(``SendPath.voicing_matters``): the feed keeps such frames unjudged and judges
them, newest first, when ``Feed.speech.end`` is next needed. Every answer
must be the one a feed that judged each frame on arrival gives.
"""

from __future__ import annotations

import numpy as np
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.actors import _speech
from engine.actors._feed import Feed
from engine.actors._silence import is_silent
from engine.actors._speech import MAX_UNJUDGED
from engine.events import AudioFrame

RATE = 16000
FRAME = 1600
LOUD = np.full(FRAME, 3000, dtype="<i2").tobytes()
QUIET = np.full(FRAME, 20, dtype="<i2").tobytes()
HALF = np.concatenate(  # loud, then a silent tail: judged whole, it is sound
    [np.full(FRAME // 4, 3000, dtype="<i2"), np.zeros(3 * FRAME // 4, dtype="<i2")]
).tobytes()

# One frame: (audio, hole before it in samples, lane, judged by the taker?, question after it).
frames_st = st.lists(
    st.tuples(
        st.sampled_from([LOUD, QUIET, QUIET, HALF]),
        st.sampled_from([0, 0, 0, 800]),
        st.sampled_from(["fast", "queued"]),
        st.booleans(),
        st.sampled_from(["none", "none", "speech_end", "words", "commit", "silence", "open"]),
    ),
    min_size=1,
    max_size=40,
)


def new_feed() -> tuple[Feed, trio.MemorySendChannel[AudioFrame]]:
    send, receive = trio.open_memory_channel[AudioFrame](1)
    return Feed(receive, 3 * RATE, RATE), send


def take(
    feed: Feed, send: trio.MemorySendChannel[AudioFrame], f: AudioFrame, lane: str, judge: bool
) -> None:
    """Hand ``f`` to ``feed`` as the pump would: judged first (or not), on either lane."""
    silent = feed.speech.judge(f)[0] if judge else None
    if lane == "fast":
        feed.took_live(f, silent, trio.current_time())
    else:  # refused by the taker, queued, buffered by the pump's receive
        send.send_nowait(f)
        assert feed.receive_queued() is f


def answers(feed: Feed, question: str, f: AudioFrame) -> object:
    """Ask ``feed`` one thing (some questions move its commit point)."""
    if question == "speech_end":
        return feed.speech.end
    if question == "words":
        return [feed.could_hold_words(s) for s in (f.start - FRAME, f.start, f.end - 1)]
    if question == "commit":  # a final up to the middle of this frame
        feed.buffer.commit(f.start + FRAME // 2)
    elif question in ("silence", "open"):
        feed.commit_silence(sentence_open=question == "open")
    return (feed.buffer.commit_point, feed.take_skipped())


class TestJudgedWhenAsked:
    @settings(max_examples=200, deadline=None)
    @given(plan=frames_st)
    def test_every_answer_is_the_eager_one(
        self, plan: list[tuple[bytes, int, str, bool, str]]
    ) -> None:
        """Frames taken judged or not, on either lane, with any questions between: the speech
        end, could_hold_words, silence commits and skipped spans equal those of a feed that
        judged every frame as it came."""

        async def main() -> None:
            lazy, lazy_in = new_feed()
            eager, eager_in = new_feed()
            start = 0
            for pcm, hole, lane, judge, question in plan:
                f = AudioFrame(start + hole, pcm, RATE)
                start = f.end
                take(lazy, lazy_in, f, lane, judge)
                take(eager, eager_in, f, lane, True)
                assert lazy.speech.unjudged <= MAX_UNJUDGED
                assert answers(lazy, question, f) == answers(eager, question, f)
            assert lazy.speech.end == eager.speech.end
            assert lazy.sent_high == eager.sent_high
            assert lazy.buffer.commit_point == eager.buffer.commit_point

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    async def test_a_loud_frame_settles_the_frames_before_it_unjudged(
        self, monkeypatch: object
    ) -> None:
        """Only the newest loud frame counts: the frames before it are never judged."""
        judged: list[bytes] = []

        def counting(pcm: bytes, rate: int) -> bool:
            judged.append(pcm)
            return is_silent(pcm, rate)

        monkeypatch.setattr(_speech, "is_silent", counting)  # type: ignore[attr-defined]
        feed, _ = new_feed()
        now = trio.current_time()
        for i in range(5):
            feed.took_live(AudioFrame(i * FRAME, QUIET if i < 4 else LOUD, RATE), None, now)
        assert judged == []  # nobody asked yet
        assert feed.speech.end == 5 * FRAME
        assert judged == [LOUD]
        assert feed.speech.end == 5 * FRAME and judged == [LOUD]  # judged once

    async def test_the_unjudged_frames_are_bounded(self) -> None:
        """Past the bound, the frames held are judged at once (newest first) and let go."""
        feed, _ = new_feed()
        now = trio.current_time()
        for i in range(3 * MAX_UNJUDGED):
            feed.took_live(AudioFrame(i * FRAME, QUIET, RATE), None, now)
            assert feed.speech.unjudged <= MAX_UNJUDGED
        assert feed.speech.end == 0
