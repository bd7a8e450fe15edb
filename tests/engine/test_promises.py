"""README promises that a one-line bug used to slip past (issue #15), in virtual time.

Each test names, in its docstring, the bug planted in a copy of the code that no
test caught before; with that bug planted, the test fails. Everything is real
(the CLI's run loop or the session actor, trio-websocket, the simulator and its
fault layer, the tone-coded recognizer) and runs under
``MockClock(autojump_threshold=0)``. What the promise is about is measured on the
simulator's side: when each connection was dialed, and how much audio each
task's recognizer was fed.
"""

from __future__ import annotations

import io
import itertools
import pathlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import soundfile
import trio
import trio.testing

from adapters.recognizers.base import Hypothesis, RecognizerSession
from adapters.recognizers.scripted import ScriptedRecognizer
from adapters.recognizers.tonecode import synthesize
from adapters.sim.config import SimConfig
from adapters.sim.faults import FaultPlan, parse_fault_spec
from adapters.sim.memory import MemoryNet, open_memory_net
from engine.actors import session
from engine.cli.files import run_streams
from engine.config import Secret, SessionConfig, TranslationOptions
from engine.events import AudioFrame, Event, Final, Reconnecting, StreamEnded, StreamError
from engine.pipeline import FileStreamConfig
from engine.policy import CLI, DAEMON, RATE_LIMITS
from tests.engine.session_harness import fault_tolerant_config, stream_pcm

RATE = 16000
FRAME = 1600  # 100 ms
BYTES_PER_S = RATE * 2
LONG_SENTENCE = " ".join(["good", "morning"] * 150)  # a word every 300 ms for 90 s


class Dials:
    """The simulator's ``dial``, recording the virtual time of every connection attempt.

    Each attempt passed the task-start limiter first, so these are the task starts.
    """

    def __init__(self, net: MemoryNet) -> None:
        self._net = net
        self.times: list[float] = []

    @asynccontextmanager
    async def dial(self, url: str, headers: Any, **kw: Any) -> AsyncIterator[Any]:
        self.times.append(trio.current_time())
        async with self._net.dial(url, headers, **kw) as connection:
            yield connection


class CountingRecognizer:
    """The tone recognizer, counting the audio the simulator feeds each task's session."""

    def __init__(self, inner: ScriptedRecognizer) -> None:
        self._inner = inner
        self.name = self._inner.name
        self.fed: list[int] = []  # bytes per task, in task order

    async def open_session(self, *, sample_rate: int, language: str | None) -> RecognizerSession:
        self.fed.append(0)
        inner = await self._inner.open_session(sample_rate=sample_rate, language=language)
        return _CountingSession(inner, self.fed, len(self.fed) - 1)

    def task_audio_s(self) -> list[float]:
        return [fed / BYTES_PER_S for fed in self.fed]

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CountingSession:
    def __init__(self, inner: RecognizerSession, fed: list[int], index: int) -> None:
        self._inner = inner
        self._fed = fed
        self._index = index

    async def feed(self, pcm: bytes) -> list[Hypothesis]:
        self._fed[self._index] += len(pcm)
        return await self._inner.feed(pcm)

    async def flush(self) -> list[Hypothesis]:
        return await self._inner.flush()

    async def aclose(self) -> None:
        await self._inner.aclose()


def run_virtual(main: Callable[[], Any], *, deadline: float | None = 7200.0) -> Any:
    """Run ``main`` on a MockClock, failing after ``deadline`` virtual seconds.

    A run that reads files in worker threads takes ``deadline=None``: while every
    task waits on a thread, autojump leaps to the earliest deadline, which would be
    this one (pytest's faulthandler_timeout guards against a hang instead).
    """

    async def bounded() -> Any:
        with trio.fail_after(deadline if deadline is not None else float("inf")):
            return await main()

    return trio.run(bounded, clock=trio.testing.MockClock(autojump_threshold=0))


def tones(seconds: float) -> np.ndarray:
    """About ``seconds`` of tone-coded speech in sentences of four words."""
    sentence = "good morning the weather"
    count = max(1, round(seconds / 1.8))
    return synthesize([sentence] * count, RATE)


def assert_bucket_held(dials: list[float], family: str) -> None:
    """No more starts by any time than the family's bucket allows: burst + rate × elapsed."""
    limit = RATE_LIMITS[family]
    t0 = dials[0]
    for n, t in enumerate(sorted(dials), start=1):
        allowed = limit.capacity + (t - t0) * limit.rate / limit.per_s
        assert n <= allowed + 1e-6, (
            f"start #{n} at +{t - t0:.3f} s: the {family} bucket allows {allowed:.2f} by then"
        )


# ------------------------------------------------- one token bucket per process


def test_the_cli_files_share_one_token_bucket(tmp_path: pathlib.Path) -> None:
    """30 files in one ``steno transcribe`` run: task starts never outrun 20/s after a burst of 20.

    Planted bug: ``run_streams`` hands each file its own ``StartLimiter()`` (in
    ``engine/cli/files.py``, the ``limiter=`` of the per-file stream): every file
    then starts at once, 30 starts in the same instant.
    """
    path = tmp_path / "tones.wav"
    soundfile.write(path, tones(2.0), RATE, subtype="PCM_16")
    files = 30

    async def main() -> tuple[int, list[float]]:
        async with open_memory_net(SimConfig(), ScriptedRecognizer.tone()) as net:
            dials = Dials(net)
            configs = [
                FileStreamConfig(
                    path=str(path),
                    session=SessionConfig(
                        stream=f"f{i}",
                        model="paraformer-realtime-v2",
                        url="ws://sim/api-ws/v1/inference",
                        api_key=Secret("sk"),
                    ),
                    out_dir=None,
                    speed=None,
                )
                for i in range(files)
            ]
            code = await run_streams(configs, jobs=64, out=io.StringIO(), dial=dials.dial)
            return code, dials.times

    code, dials = run_virtual(main, deadline=None)
    assert code == 0
    assert len(dials) == files  # no fault: one task per file
    assert_bucket_held(dials, "paraformer")


def test_streams_opened_without_a_limiter_share_one_token_bucket() -> None:
    """30 sessions in one process, none given a limiter: they still share the family's bucket.

    Planted bug: the session builds its own limiter when none is passed
    (``limiter or StartLimiter()`` in ``engine/actors/session.py``): every
    stream opened through the API without one then has a private bucket.
    """
    pcm = tones(2.0)
    streams = 30

    async def main() -> list[float]:
        async with open_memory_net(SimConfig(), ScriptedRecognizer.tone()) as net:
            dials = Dials(net)
            async with trio.open_nursery() as nursery:
                for i in range(streams):
                    config = fault_tolerant_config("paraformer-realtime-v2", stream=f"s{i}")
                    nursery.start_soon(stream_pcm, pcm, config, dials.dial)
            return dials.times

    dials = run_virtual(main)
    assert len(dials) == streams
    assert_bucket_held(dials, "paraformer")


# ------------------------------------------------------ retries: count and cap


async def refused_session(
    config: SessionConfig, *, audio_s: float, run_s: float | None
) -> tuple[list[float], list[Event]]:
    """One session against a simulator that refuses every upgrade (HTTP 503).

    Feeds ``audio_s`` of silence in real time, then ends its input; after
    ``run_s`` virtual seconds (None: never) the session is cancelled. Returns
    the dial times and the session's events.
    """
    plan: FaultPlan = parse_fault_spec("reject:503")
    frames_send, frames_recv = trio.open_memory_channel[AudioFrame](8)
    events_send, events_recv = trio.open_memory_channel[Event](100_000)
    events: list[Event] = []
    frame = RATE  # 1 s frames: what is measured is the dialing, not the feed
    silence = bytes(frame * 2)

    async def feed() -> None:
        async with frames_send:
            t0 = trio.current_time()
            for i in range(round(audio_s)):
                await trio.sleep_until(t0 + i)
                await frames_send.send(AudioFrame(i * frame, silence, RATE))

    async def collect() -> None:
        async for event in events_recv:
            events.append(event)

    async with open_memory_net(SimConfig(), ScriptedRecognizer.tone(), faults=plan) as net:
        dials = Dials(net)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            nursery.start_soon(collect)
            with trio.move_on_after(run_s if run_s is not None else float("inf")):
                await session.run(
                    inbox=frames_recv, outbox=events_send, config=config, dial=dials.dial
                )
            nursery.cancel_scope.cancel()
    return dials.times, events


def gaps(dials: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(dials)]


def test_the_cli_policy_gives_up_after_5_retries() -> None:
    """Every connection refused: the first attempt and 5 retries, each after a delay ≤ 10 s.

    Planted bug: ``CLI.max_attempts`` 5 → 3 (4 dials, not 6). The attempts are
    counted at the simulator's door, not read from the constant; each delay stays
    under its exponential bound (0.5 s doubling; 5 retries never reach the cap).
    """
    config = fault_tolerant_config("paraformer-realtime-v2", policy=CLI, seed=3)

    dials, events = run_virtual(lambda: refused_session(config, audio_s=120.0, run_s=None))

    assert len(dials) == 1 + 5, f"dialed at {dials}"
    for delay, bound in zip(gaps(dials), [0.5, 1.0, 2.0, 4.0, 8.0], strict=True):
        assert delay <= bound + 1e-6, f"delays {gaps(dials)}"
    ended = [e for e in events if isinstance(e, StreamEnded)]
    assert [e.status for e in ended] == ["failed"]
    assert any(isinstance(e, StreamError) for e in events)


def test_a_daemon_never_gives_up_and_waits_at_most_30_s() -> None:
    """Every connection refused for 15 virtual minutes: the daemon policy keeps dialing,
    never more than 30 s apart, and does reach the cap.

    Planted bug: ``DAEMON.backoff_cap_s`` 30 → 300 (delays far over 30 s), or a
    daemon that gives up (``max_attempts`` not None: the dialing stops). The
    delays are measured between real dials in virtual time.
    """
    config = fault_tolerant_config("paraformer-realtime-v2", policy=DAEMON, seed=3)
    run_s = 900.0

    dials, events = run_virtual(lambda: refused_session(config, audio_s=run_s, run_s=run_s))

    delays = gaps(dials)
    assert len(dials) > 30, f"only {len(dials)} dials in {run_s:.0f} s"
    assert max(delays) <= 30.0 + 1e-6, f"a delay of {max(delays):.1f} s"
    assert max(delays) > 20.0  # the cap is reached, so it is the cap that bounds them
    assert dials[-1] > dials[0] + run_s - 30.0 - 1e-6  # still dialing at the end
    assert not any(isinstance(e, StreamEnded) for e in events)


# ------------------------------------------------------- gummy-chat: ≤ 58 s a task


def test_gummy_chat_never_sends_a_task_more_than_58_s() -> None:
    """66 s of speech with no pause a sentence could end at, to gummy-chat-v1: every task's
    audio, as the simulator fed it to its recognizer, is at most 58 s, and all of it is sent.

    Planted bug: ``max_task_samples = None`` in the session: the first task then
    carries the service's whole 60 s cap and more.
    """
    # A "word" every 300 ms: 220 ms of tone, 80 ms of silence (far under the 700 ms
    # that ends a sentence), 220 times over: 66 s with nowhere a sentence could end.
    t = np.arange(round(0.22 * RATE)) / RATE
    word = np.concatenate([np.sin(2 * np.pi * 440.0 * t) * 8000, np.zeros(round(0.08 * RATE))])
    speech = np.tile(word, 220).astype(np.int16)
    pcm = np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE, np.int16)])
    translation = TranslationOptions(targets=("zh",), source="en", vad_silence_ms=400)
    config = fault_tolerant_config("gummy-chat-v1", translation=translation, seed=1)

    async def main() -> tuple[list[float], list[Event]]:
        recognizer = CountingRecognizer(ScriptedRecognizer.transcript([LONG_SENTENCE]))
        async with open_memory_net(SimConfig(), recognizer) as net:
            events = await stream_pcm(pcm, config, net.dial)
            return recognizer.task_audio_s(), events

    per_task, events = run_virtual(main)
    print(
        "PER_TASK",
        per_task,
        [
            type(e).__name__
            for e in events
            if type(e).__name__
            in (
                "Final",
                "SessionOpened",
                "SessionClosed",
                "Reconnecting",
                "StreamError",
                "AudioGap",
            )
        ],
    )

    assert len(per_task) >= 2, per_task
    assert max(per_task) <= 58.0, f"tasks carried {[round(s, 2) for s in per_task]} s"
    assert sum(per_task) >= len(pcm) / RATE - 0.1  # replays may resend, nothing is skipped
    assert any(isinstance(e, Final) for e in events)
    assert not any(isinstance(e, Reconnecting) for e in events)  # each task ended by itself
    (ended,) = [e for e in events if isinstance(e, StreamEnded)]
    assert ended.status == "ok", ended
