"""A flush in the middle of a sentence finalizes it, at any sample count (issue #13).

Ctrl-C mid-sentence ends a stream with a flush. The endpointer's ``end_stream`` takes
the last frame, and its wrapper refuses an empty one: whenever the audio so far filled
whole 30 ms frames, the flush failed ("sphinx worker rejected Flush: IndexError") and
the sentence was lost. These tests drive the worker's own request handler in process
(no pipe), with real speech cut at every kind of sample count.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.recognizers._sphinx_worker import Close, Feed, Flush, Open, Reply, _Server
from tests.conftest import DEMO_AUDIO

MODEL_RATE = 16000
FRAME = 480  # samples per endpointer frame at 16 kHz (30 ms)
# Per sentence of weather.wav: where a stream starts (in the silence before it) and the
# span (s) of cuts where the endpointer is in speech and the decoder already has words:
# from 0.6 s after it enters speech to 0.2 s before the sentence's trailing silence ends
# it (measured from the file's start: speech 1.56-3.54, 4.47-6.60, 7.53-9.72 s).
SENTENCES = ((0.0, 2.2, 3.3), (3.8, 5.1, 6.4), (6.9, 8.2, 9.5))


@pytest.fixture(scope="module", name="server")
def _server() -> _Server:
    """One worker request handler for all examples: its decoders are reused the way a
    real worker reuses them (cepstral mean reset per session)."""
    return _Server()


@pytest.fixture(scope="module", name="speech")
def _speech() -> dict[int, np.ndarray]:
    """weather.wav as int16 at 16 kHz and resampled to 48 kHz."""
    x, native = sf.read(DEMO_AUDIO / "weather.wav", dtype="float32")
    assert native == MODEL_RATE
    out = {}
    for rate in (MODEL_RATE, 48000):
        y = x if rate == native else soxr.resample(x, native, rate, quality="HQ")
        out[rate] = (np.clip(y, -1, 1) * 32767).round().astype("<i2")
    return out


def _ok(reply: Reply) -> Reply:
    assert reply.error is None, reply.error
    return reply


@pytest.mark.slow
@pytest.mark.cpu_heavy  # pocketsphinx in this process
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    sentence=st.integers(0, len(SENTENCES) - 1),
    where=st.floats(0.0, 1.0),
    remainder=st.one_of(st.just(0), st.integers(1, FRAME - 1)),
    rate=st.sampled_from([MODEL_RATE, MODEL_RATE, 48000]),
    chunk_ms=st.sampled_from([20, 30, 100, 480]),
)
@example(sentence=0, where=0.5, remainder=0, rate=MODEL_RATE, chunk_ms=30)
@example(sentence=2, where=0.0, remainder=0, rate=MODEL_RATE, chunk_ms=100)
@example(sentence=1, where=1.0, remainder=1, rate=MODEL_RATE, chunk_ms=20)
def test_flush_mid_sentence_finalizes_it(
    server: _Server,
    speech: dict[int, np.ndarray],
    sentence: int,
    where: float,
    remainder: int,
    rate: int,
    chunk_ms: int,
) -> None:
    """A stream from the silence before a sentence, cut inside it at whole frames plus
    ``remainder`` samples (0 in about half the examples: the case that used to fail),
    fed in any chunking: the flush answers without error and ends with that sentence's
    final, which has words and ends within the audio sent."""
    start_s, begin_s, end_s = SENTENCES[sentence]
    frames = round((begin_s - start_s + where * (end_s - begin_s)) * MODEL_RATE) // FRAME
    samples = (frames * FRAME + remainder) * rate // MODEL_RATE
    first = round(start_s * rate)
    pcm = speech[rate][first : first + samples].tobytes()
    sid = 1
    _ok(server.handle(Open(sid, rate)))
    try:
        hyps = []
        step = rate * chunk_ms // 1000 * 2
        for i in range(0, len(pcm), step):
            hyps += _ok(server.handle(Feed(sid, pcm[i : i + step]))).hypotheses
        assert not any(h.final for h in hyps)  # the sentence is still open at the cut
        flushed = _ok(server.handle(Flush(sid))).hypotheses
    finally:
        _ok(server.handle(Close(sid)))
    assert flushed, "the flush lost the sentence in progress"
    last = flushed[-1]
    assert last.final
    assert last.index == 0
    assert last.words
    assert last.text == " ".join(w.text for w in last.words)
    assert last.end_ms is not None
    assert last.begin_ms < last.end_ms <= samples * 1000 // rate + 30


@pytest.mark.slow
@pytest.mark.cpu_heavy
def test_flush_after_whole_frames_of_silence_is_empty(server: _Server) -> None:
    """A flush of silence that fills whole frames (never in speech) has nothing to say."""
    _ok(server.handle(Open(2, MODEL_RATE)))
    try:
        assert _ok(server.handle(Feed(2, bytes(FRAME * 2 * 10)))).hypotheses == []
        assert _ok(server.handle(Flush(2))).hypotheses == []
    finally:
        _ok(server.handle(Close(2)))
