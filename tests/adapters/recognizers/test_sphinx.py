"""The pocketsphinx recognizer, end to end with real worker processes.

The slow tests run on the real clock (no autojump): the workers are real processes and
their timeouts are trio deadlines.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import msgspec
import numpy as np
import pytest
import soundfile as sf
import soxr
import trio
from conftest import run_queue_s

from adapters.recognizers._sphinx_worker import Close, Feed, Reply, clean_word, serve
from adapters.recognizers.base import Hypothesis
from adapters.recognizers.sphinx import RecognizerError, SphinxRecognizer, SphinxSession
from adapters.recognizers.wer import word_error_rate
from engine.errors import LocalProtocolError

AUDIO = Path(__file__).resolve().parents[3] / "scenarios" / "audio"
SILENCE = bytes(3200)


def load(name: str, rate: int | None, sentences: int = 99) -> tuple[bytes, int, list[str]]:
    """A demo WAV as PCM (resampled to ``rate`` with soxr unless None) and its sentences,
    cut after the first ``sentences`` (in the silence 0.4 s after the end of the last)."""
    x, native = sf.read(AUDIO / f"{name}.wav", dtype="float32")
    text = (AUDIO / f"{name}.txt").read_text().splitlines()
    if sentences < len(text):
        loud = np.flatnonzero(np.abs(x) > 0.01)
        pauses = np.flatnonzero(np.diff(loud) > native // 2)  # the gaps between sentences
        x, text = x[: loud[pauses[sentences - 1]] + native * 2 // 5], text[:sentences]
    if rate is not None and rate != native:
        x = soxr.resample(x, native, rate, quality="HQ")
    pcm = (np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes()
    return pcm, rate or native, text


async def transcribe(session: SphinxSession, pcm: bytes, rate: int) -> list[Hypothesis]:
    step = rate // 10 * 2  # 100 ms
    out = []
    for i in range(0, len(pcm), step):
        out += await session.feed(pcm[i : i + step])
    return out + await session.flush()


def check_transcript(hyps: list[Hypothesis], sentences: list[str], duration_ms: int) -> float:
    """Assert the shape of a transcript; return its word error rate."""
    finals = [h for h in hyps if h.final]
    assert len(finals) >= len(sentences)
    assert [h.index for h in finals] == list(range(len(finals)))
    for final in finals:  # a final comes after at least one partial of its sentence
        position = hyps.index(final)
        assert any(not h.final and h.index == final.index for h in hyps[:position])
    for partial in (h for h in hyps if not h.final):
        assert partial.end_ms is None
        assert partial.text == " ".join(w.text for w in partial.words) != ""
    previous_end = 0
    for final in finals:
        assert final.end_ms is not None
        assert previous_end <= final.begin_ms < final.end_ms <= duration_ms
        previous_end = final.end_ms
        times = [t for w in final.words for t in (w.begin_ms, w.end_ms)]
        assert times == sorted(times)
        assert final.begin_ms <= times[0]
        assert times[-1] == final.end_ms
        assert final.text == " ".join(w.text for w in final.words)
        assert final.text == final.text.lower()
        assert not any(c in final.text for c in "()<>[]")
    return word_error_rate(" ".join(sentences), " ".join(h.text for h in finals))


@pytest.mark.slow
@pytest.mark.cpu_heavy  # pocketsphinx decodes on two workers
async def test_transcribes_demo_speech_without_blocking_the_loop() -> None:
    """Concurrent sessions on two workers transcribe flite speech at WER <= 0.35, at
    16 kHz and at 22.05 kHz alike, while the event loop keeps ticking."""
    # real-time: pocketsphinx runs in real processes
    jobs = {
        "weather@16k": load("weather", 16000),
        "numbers@16k": load("numbers", 16000),
        "numbers@22k": load("numbers", None, sentences=1),  # resampled by the worker
    }
    assert jobs["numbers@22k"][1] == 22050
    results: dict[str, list[Hypothesis]] = {}
    gaps: list[float] = []
    decoding = trio.Event()

    async def ticker() -> None:
        # a gap less the time this thread queued for a CPU: what the loop itself lost
        # (blocked, or busy), the same on a quiet machine and at a load of 12
        last, queued = trio.current_time(), run_queue_s()
        while not decoding.is_set():
            await trio.sleep(0.01)
            now, now_queued = trio.current_time(), run_queue_s()
            gaps.append(now - last - (now_queued - queued))
            last, queued = now, now_queued

    async def job(name: str, recognizer: SphinxRecognizer) -> None:
        pcm, rate, _ = jobs[name]
        session = await recognizer.open_session(sample_rate=rate, language="en")
        results[name] = await transcribe(session, pcm, rate)
        await session.aclose()

    # a hang guard, not a speed bound: ~15 s of CPU, which a load of 12 stretches to ~60 s
    with trio.fail_after(240):
        async with SphinxRecognizer(workers=2) as recognizer, trio.open_nursery() as outer:
            outer.start_soon(ticker)
            async with trio.open_nursery() as nursery:
                for name in jobs:
                    nursery.start_soon(job, name, recognizer)
            decoding.set()
            assert len(recognizer.worker_pids()) == 2

    for name, (pcm, rate, sentences) in jobs.items():
        wer = check_transcript(results[name], sentences, len(pcm) * 500 // rate)
        assert wer <= 0.35, (name, wer, [h.text for h in results[name] if h.final])
    assert len(gaps) > 50
    assert max(gaps) < 0.2


@pytest.mark.slow
async def test_crashed_worker_is_an_error_not_a_hang() -> None:
    """A killed worker fails its sessions' feeds at once; new sessions get a new worker;
    aclose() stops workers even when called in a cancelled scope."""
    # real-time: pocketsphinx runs in real processes
    with trio.fail_after(60):
        async with SphinxRecognizer(workers=1) as recognizer:
            session = await recognizer.open_session(sample_rate=16000, language=None)
            (pid,) = recognizer.worker_pids()
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(RecognizerError, match=f"worker {pid} exited, exit status -9"):
                await session.feed(SILENCE)
            with pytest.raises(RecognizerError, match=f"worker {pid} exited"):
                await session.flush()
            await session.aclose()
            fresh = await recognizer.open_session(sample_rate=16000, language=None)
            assert recognizer.worker_pids() not in ([], [pid])
            assert await fresh.feed(SILENCE) == []
            assert await fresh.flush() == []
            (fresh_pid,) = recognizer.worker_pids()
            with trio.CancelScope() as cancelled:
                cancelled.cancel()
                await recognizer.aclose()  # still stops the workers
            with pytest.raises(ProcessLookupError):
                os.kill(fresh_pid, 0)


@pytest.mark.slow
async def test_hung_worker_times_out_and_is_killed() -> None:
    """A worker that stops answering fails the request after request_timeout and dies."""
    # real-time: pocketsphinx runs in real processes
    with trio.fail_after(60):
        async with SphinxRecognizer(workers=1, request_timeout=1.0) as recognizer:
            session = await recognizer.open_session(sample_rate=16000, language=None)
            (pid,) = recognizer.worker_pids()
            os.kill(pid, signal.SIGSTOP)
            start = trio.current_time()
            with pytest.raises(RecognizerError, match="did not answer within 1 s"):
                await session.feed(SILENCE)
            assert 1.0 <= trio.current_time() - start < 5.0
            assert recognizer.worker_pids() == []
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # killed and reaped


@pytest.mark.slow
async def test_lifecycle() -> None:
    """Sessions spread over workers; aclose stops them all and is idempotent; a rejected
    request fails only that request."""
    # real-time: pocketsphinx runs in real processes
    with trio.fail_after(60):
        recognizer = SphinxRecognizer(workers=2, shutdown_grace=2.0)
        assert recognizer.name == "sphinx"
        with pytest.raises(RecognizerError, match="rejected Open: ValueError"):
            await recognizer.open_session(sample_rate=0, language=None)
        first = await recognizer.open_session(sample_rate=16000, language=None)
        second = await recognizer.open_session(sample_rate=8000, language=None)
        pids = recognizer.worker_pids()
        assert len(set(pids)) == 2
        third = await recognizer.open_session(sample_rate=48000, language=None)
        assert recognizer.worker_pids() == pids
        for session in (first, second, third):
            assert await session.feed(SILENCE) == []
        await third.aclose()
        await third.aclose()
        with pytest.raises(LocalProtocolError):
            await third.feed(SILENCE)
        assert await first.flush() == []
        assert await first.flush() == []
        with pytest.raises(LocalProtocolError):
            await first.feed(SILENCE)
        await recognizer.aclose()
        await recognizer.aclose()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        with pytest.raises(RecognizerError, match="closed"):
            await second.feed(SILENCE)
        with pytest.raises(LocalProtocolError):
            await recognizer.open_session(sample_rate=16000, language=None)


class TestWorkerInternals:
    def test_clean_words(self) -> None:
        """Silence and filler tokens vanish; alternate-pronunciation markers are stripped."""
        assert [clean_word(t) for t in ["<s>", "</s>", "<sil>", "[NOISE]", "+um+"]] == [None] * 5
        assert clean_word("and(2)") == "and"
        assert clean_word("Hello") == "hello"

    def test_serve_frames(self) -> None:
        """The worker answers each length-prefixed request in order, errors included,
        and stops at end of input or at a truncated frame."""
        encoder = msgspec.msgpack.Encoder()
        requests = [Feed(7, b"\0\0"), Close(7)]
        frames = b"".join(
            len(body).to_bytes(4, "big") + body for body in map(encoder.encode, requests)
        )
        stdout = io.BytesIO()
        serve(io.BytesIO(frames + b"\0\0\0\x09abc"), stdout)
        data, replies = stdout.getvalue(), []
        while data:
            size = int.from_bytes(data[:4], "big")
            replies.append(msgspec.msgpack.decode(data[4 : 4 + size], type=Reply))
            data = data[4 + size :]
        assert replies == [Reply(error="ValueError: no open session 7"), Reply()]
