from __future__ import annotations

import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.recognizers.base import Hypothesis
from adapters.recognizers.scripted import ScriptedRecognizer, ScriptedStream, VadConfig
from adapters.recognizers.tonecode import GAP_MS, LEAD_IN_MS, SENTENCE_GAP_MS, WORD_MS, synthesize
from engine.errors import LocalProtocolError

RATE = 16000
SENTENCES = ["hello world", "the weather today is sunny and warm", "one two three stop"]
AUDIO = synthesize(SENTENCES, RATE)
PCM = AUDIO.tobytes()


def run(stream: ScriptedStream, pcm: bytes, sizes: list[int] | None = None) -> list[Hypothesis]:
    """Feed ``pcm`` in chunks of ``sizes`` bytes (cycled; 100 ms if None), then flush."""
    sizes = sizes or [RATE // 10 * 2]
    out, i, k = [], 0, 0
    while i < len(pcm):
        n = sizes[k % len(sizes)]
        out += stream.feed(pcm[i : i + n])
        i, k = i + n, k + 1
    return out + stream.flush()


REFERENCE = run(ScriptedRecognizer.tone().stream(RATE), PCM)


def finals(hyps: list[Hypothesis]) -> list[Hypothesis]:
    return [h for h in hyps if h.final]


def sentence_starts() -> list[int]:
    """Start of each sentence's first burst, in ms, with the default layout."""
    starts, t = [], LEAD_IN_MS
    for sentence in SENTENCES:
        starts.append(t)
        t += len(sentence.split()) * (WORD_MS + GAP_MS) - GAP_MS + SENTENCE_GAP_MS
    return starts


class TestToneMode:
    def test_partial_after_each_word_then_final(self) -> None:
        """Each sentence yields one growing partial per word, then its final, in order."""
        hyps = run(ScriptedRecognizer.tone().stream(RATE), PCM)
        expected = []
        for index, sentence in enumerate(SENTENCES):
            words = sentence.split()
            expected += [(index, " ".join(words[:n]), False) for n in range(1, len(words) + 1)]
            expected.append((index, sentence, True))
        assert [(h.index, h.text, h.final) for h in hyps] == expected

    def test_final_times_are_the_bursts(self) -> None:
        """A final spans its first burst's start to its last burst's end; words likewise."""
        result = finals(run(ScriptedRecognizer.tone().stream(RATE), PCM))
        for hyp, start, sentence in zip(result, sentence_starts(), SENTENCES, strict=True):
            n = len(sentence.split())
            assert hyp.begin_ms == start
            assert hyp.end_ms == start + n * (WORD_MS + GAP_MS) - GAP_MS
            assert [(w.begin_ms, w.end_ms) for w in hyp.words] == [
                (start + k * (WORD_MS + GAP_MS), start + k * (WORD_MS + GAP_MS) + WORD_MS)
                for k in range(n)
            ]

    def test_partials_keep_the_sentence_begin(self) -> None:
        """Partials carry no end time and the same begin time as their final."""
        hyps = run(ScriptedRecognizer.tone().stream(RATE), PCM)
        begins = {h.index: h.begin_ms for h in finals(hyps)}
        assert all(h.end_ms is None and h.begin_ms == begins[h.index] for h in hyps if not h.final)

    @settings(max_examples=25, deadline=None)
    @given(sizes=st.lists(st.integers(33, 9000), min_size=1, max_size=12))
    def test_chunking_does_not_matter(self, sizes: list[int]) -> None:
        """Any chunking of the same audio, odd byte counts included, gives identical results."""
        assert run(ScriptedRecognizer.tone().stream(RATE), PCM, sizes) == REFERENCE

    @settings(max_examples=20, deadline=None)
    @given(sentence=st.integers(1, 2), back_ms=st.floats(0, SENTENCE_GAP_MS - 200))
    def test_replay_from_a_sentence_boundary(self, sentence: int, back_ms: float) -> None:
        """Restarting anywhere in the silence before a sentence yields the same sentences.

        The sentence times move with the restart, to within the 1 ms burst-edge resolution.
        """
        start = round((sentence_starts()[sentence] - back_ms) * RATE / 1000)
        replay = finals(run(ScriptedRecognizer.tone().stream(RATE), AUDIO[start:].tobytes()))
        assert [h.text for h in replay] == SENTENCES[sentence:]
        offset = start * 1000 / RATE
        for hyp, start_ms in zip(replay, sentence_starts()[sentence:], strict=True):
            assert abs(hyp.begin_ms + offset - start_ms) <= 2

    def test_flush_finalizes_pending_speech(self) -> None:
        """Audio that stops right after a burst gets its final (only) from flush()."""
        stream = ScriptedRecognizer.tone().stream(RATE)
        fed = stream.feed(synthesize(["good morning"], RATE, tail_ms=0).tobytes())
        assert [h.final for h in fed] == [False]  # the last burst is still open
        flushed = stream.flush()
        assert [(h.text, h.final) for h in flushed] == [("good morning", True)]
        assert stream.flush() == []

    def test_feed_after_flush(self) -> None:
        """The audio has ended once flushed."""
        stream = ScriptedRecognizer.tone().stream(RATE)
        stream.flush()
        with pytest.raises(LocalProtocolError):
            stream.feed(b"\0\0")

    @pytest.mark.parametrize("rate", [8000, 22050, 48000])
    def test_other_rates(self, rate: int) -> None:
        """Rates whose 10 ms frame is not a whole number of samples work too."""
        result = finals(
            run(
                ScriptedRecognizer.tone().stream(rate),
                synthesize(SENTENCES, rate).tobytes(),
                [rate // 5],
            )
        )
        assert [h.text for h in result] == SENTENCES
        assert [h.begin_ms for h in result] == sentence_starts()

    def test_short_pauses_do_not_end_a_sentence(self) -> None:
        """Pauses shorter than max_sentence_silence_ms stay inside one sentence."""
        audio = synthesize(["yes no", "stop"], RATE, sentence_gap_ms=500)
        assert [
            h.text for h in finals(run(ScriptedRecognizer.tone().stream(RATE), audio.tobytes()))
        ] == ["yes no stop"]
        vad = VadConfig(max_sentence_silence_ms=400)
        assert [
            h.text
            for h in finals(run(ScriptedRecognizer.tone(vad=vad).stream(RATE), audio.tobytes()))
        ] == ["yes no", "stop"]

    def test_quiet_audio_is_silence(self) -> None:
        """Tones below the VAD threshold are not heard; a lower threshold hears them."""
        quiet = synthesize(["hello"], RATE, amplitude=0.003).tobytes()  # about -53 dBFS RMS
        assert run(ScriptedRecognizer.tone().stream(RATE), quiet) == []
        vad = VadConfig(threshold_dbfs=-60)
        assert [
            h.text for h in finals(run(ScriptedRecognizer.tone(vad=vad).stream(RATE), quiet))
        ] == ["hello"]

    def test_noise_is_not_words(self) -> None:
        """Loud noise opens and closes sentences but labels no words, so yields nothing."""
        noise = np.random.default_rng(1).normal(0, 3000, RATE * 2).astype(np.int16)
        pcm = np.concatenate([np.zeros(RATE, np.int16), noise, np.zeros(RATE, np.int16)]).tobytes()
        assert run(ScriptedRecognizer.tone().stream(RATE), pcm) == []


class TestLevel:
    @given(st.lists(st.sampled_from([3200, 1600, 320, 3201, 1599, 3199, 6400]), min_size=1))
    @settings(max_examples=40)
    def test_measuring_first_changes_no_result(self, sizes: list[int]) -> None:
        """Measuring each chunk before feeding it (the simulator's silence timers) gives
        the same hypotheses as feeding alone, whatever the chunking."""
        stream = ScriptedRecognizer.tone().stream(RATE)
        plain = ScriptedRecognizer.tone().stream(RATE)
        out: list[Hypothesis] = []
        want: list[Hypothesis] = []
        i = k = 0
        while i < len(PCM):
            chunk = PCM[i : i + sizes[k % len(sizes)]]
            stream.level(chunk)
            out += stream.feed(chunk)
            want += plain.feed(chunk)
            i, k = i + len(chunk), k + 1
        assert out + stream.flush() == want + plain.flush()
        assert finals(out) == finals(REFERENCE)

    @given(st.lists(st.integers(-32768, 32767), min_size=160, max_size=160 * 12))
    def test_level_is_the_rms(self, samples: list[int]) -> None:
        """The level of whole VAD frames is their exact RMS; other audio is not measured."""
        stream = ScriptedRecognizer.tone().stream(RATE)
        x = np.array(samples, np.int16)
        pcm = x.tobytes()
        level = stream.level(pcm)
        if len(x) % 160:
            assert level is None
        else:
            f = x.astype(np.float64)
            assert level == pytest.approx(float(np.sqrt(f.dot(f) / len(f))), rel=1e-12)

    def test_sessions_share_what_was_measured(self) -> None:
        """Sessions of one recognizer look up chunks another measured (looped audio is
        measured once) and still give exactly their own results."""
        recognizer = ScriptedRecognizer.tone()
        streams = [recognizer.stream(RATE) for _ in range(3)]
        outs: list[list[Hypothesis]] = [[], [], []]
        for i in range(0, len(PCM), 3200):
            for k, stream in enumerate(streams):
                chunk = PCM[i : i + 3200]  # a new bytes object per session, as received
                if k != 1:
                    stream.level(chunk)
                outs[k] += stream.feed(chunk)
        for k, stream in enumerate(streams):
            assert outs[k] + stream.flush() == REFERENCE
        levels = recognizer._levels
        assert levels.misses <= len(PCM) // 3200 + 1
        assert levels.hits >= 2 * (len(PCM) // 3200)

    def test_not_measured_with_samples_pending(self) -> None:
        """After a chunk that left samples pending, the next one is not cut on its own."""
        stream = ScriptedRecognizer.tone().stream(RATE)
        stream.feed(PCM[:1000])
        assert stream.level(PCM[1000:4200]) is None
        assert stream.level(b"") is None


class TestTranscriptMode:
    KNOWN = ("good morning everyone", "we will review the budget")

    def test_kth_segment_gets_kth_sentence(self) -> None:
        """Speech segments are labelled with the known sentences in order; extras get nothing."""
        audio = synthesize(["hello world", "one two three four five six", "yes"], RATE)
        hyps = run(ScriptedRecognizer.transcript(self.KNOWN).stream(RATE), audio.tobytes())
        assert [(h.index, h.text) for h in finals(hyps)] == [(0, self.KNOWN[0]), (1, self.KNOWN[1])]

    def test_words_spread_evenly(self) -> None:
        """Final words tile the segment from its first to its last speech frame."""
        audio = synthesize(["hello world"], RATE)
        (final,) = finals(
            run(ScriptedRecognizer.transcript(self.KNOWN).stream(RATE), audio.tobytes())
        )
        assert (final.begin_ms, final.end_ms) == (LEAD_IN_MS, LEAD_IN_MS + 2 * WORD_MS + GAP_MS)
        bounds = [(w.begin_ms, w.end_ms) for w in final.words]
        assert bounds == [(500, 633), (633, 767), (767, 900)]

    @pytest.mark.parametrize("sizes", [[3], [321], [7, 4001], [32000]])
    def test_chunking_does_not_matter(self, sizes: list[int]) -> None:
        """Transcript labels and their times do not depend on the chunking either."""
        recognizer = ScriptedRecognizer.transcript(self.KNOWN)
        pcm = synthesize(["hello world", "one two three four five six"], 8000).tobytes()
        assert run(recognizer.stream(8000), pcm, sizes) == run(recognizer.stream(8000), pcm)

    def test_partials_grow_with_speech(self) -> None:
        """Partials reveal words as speech accumulates, never the whole sentence."""
        audio = synthesize(["one two three four five six"], RATE)
        hyps = run(ScriptedRecognizer.transcript(self.KNOWN[1:]).stream(RATE), audio.tobytes())
        partials = [h.text for h in hyps if not h.final]
        assert partials == ["we", "we will", "we will review"]
        assert hyps[-1].final


class TestSession:
    async def test_session_api(self, autojump_clock: trio.testing.MockClock) -> None:
        """The async session wraps the stream; it works on the autojump clock."""
        recognizer = ScriptedRecognizer.tone()
        assert recognizer.name == "scripted-tone"
        with trio.fail_after(5):
            session = await recognizer.open_session(sample_rate=RATE, language="en")
            hyps = []
            for i in range(0, len(PCM), 3200):
                hyps += await session.feed(PCM[i : i + 3200])
            hyps += await session.flush()
            await session.aclose()
            await recognizer.aclose()
        assert [h.text for h in finals(hyps)] == SENTENCES

    async def test_feed_nowait_is_feed_without_the_checkpoint(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The simulator's synchronous lane (SyncFeed) gives what feed() gives; a failure
        becomes RecognizerFailed."""
        from adapters.sim.recognizer_calls import RecognizerFailed, SyncFeed, feed_now

        recognizer = ScriptedRecognizer.tone()
        with trio.fail_after(5):
            by_feed = await recognizer.open_session(sample_rate=RATE, language=None)
            by_now = await recognizer.open_session(sample_rate=RATE, language=None)
            assert isinstance(by_now, SyncFeed)
            for i in range(0, len(PCM), 4800):
                assert feed_now(by_now, PCM[i : i + 4800]) == await by_feed.feed(PCM[i : i + 4800])
            assert await by_now.flush() == await by_feed.flush()
            with pytest.raises(RecognizerFailed, match="after flush"):
                feed_now(by_now, PCM[:3200])

    def test_config_validation(self) -> None:
        """Bad VAD settings and rates are refused."""
        with pytest.raises(ValueError, match="frame_ms"):
            VadConfig(frame_ms=0)
        with pytest.raises(ValueError, match="too low"):
            ScriptedRecognizer.tone().stream(50)
