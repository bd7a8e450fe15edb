"""One iteration: a real stream through the engine's embedding API, measured.

:class:`Player` is the executor's body. Each call opens a stream with
:func:`engine.stream.open_stream` (the one assembly every face uses), pushes the
scenario's audio on an absolute schedule and reads the stream's events, recording:

* ``send_lateness``: when each 100 ms chunk was accepted minus when it was due,
  counted from the iteration's *scheduled* start, so a stalled sender or a late start
  shows (no coordinated omission);
* ``connect_time`` (a dialer that times each WebSocket open), ``task_start_time``
  (``SessionOpened`` minus the end of that dial), ``first_package_delay`` and
  ``last_package_delay`` (``TaskMetrics``, the SDK's definitions), ``final_lag``
  (each ``Final`` minus the due time of the chunk that carried its last sample);
* ``finals``, ``reconnects``, ``errors{code}``, ``audio_lost_ms`` and ``wer`` per
  stream, ``sessions_completed`` / ``sessions_failed``.

Faults (loopback targets): the stream asks the simulator for its plan with the
``steno_fault`` URL parameter. Each stream's plan gets its own seed (derived from the
plan's, the run's and the stream's identity), so the simulator counts every stream's
connections apart: ``first=1`` hits each stream's first connection.

Error handling: failures of the stream are counted, never raised; cancellation
(graceful stop, abort) leaves the stream abandoned by ``open_stream``'s rules.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import urllib.parse
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec
import trio

from adapters.dashscope.ws import dial_tcp
from adapters.recognizers.wer import word_error_rate
from engine.config import Secret, SessionConfig
from engine.errors import StenoError
from engine.events import (
    Final as FinalEvent,
)
from engine.events import (
    Reconnecting,
    SessionOpened,
    StreamEnded,
    StreamError,
    TaskMetrics,
)
from engine.scenario.spec import FaultStep, seconds
from engine.stream import StreamConfig, open_stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

    from adapters.dashscope.ws import Dialer
    from engine.ratelimit import StartLimiter
    from engine.scenario.audio import ScenarioAudio
    from engine.scenario.executor import Iteration
    from engine.scenario.metrics import Recorder
    from engine.scenario.spec import Executor
    from engine.stream import Stream

__all__ = ["Player", "Target", "error_code", "stream_fault"]

_TASK_CODE: Final = re.compile(r"task failed: ([A-Za-z][\w.]*)")
_HTTP_STATUS: Final = re.compile(r"\b(?:HTTP|status) ?(\d{3})\b")


class Target(msgspec.Struct, frozen=True):
    """Where the streams go: the inference URL, the key, and whether faults apply."""

    url: str
    api_key: Secret
    loopback: bool
    embedded: bool = False


def error_code(text: str, fallback: str) -> str:
    """The service code in a failure's text (``Throttling.RateQuota``, ``http-503``), or
    ``fallback`` (the failure's category or kind)."""
    m = _TASK_CODE.search(text)
    if m is not None:
        return m.group(1)
    m = _HTTP_STATUS.search(text)
    if m is not None:
        return f"http-{m.group(1)}"
    return fallback


def _derive_seed(*parts: object) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")


def stream_fault(
    faults: str | tuple[FaultStep, ...] | None, run_seed: int, it: Iteration
) -> str | None:
    """The fault spec one stream asks for (None: none), with its own derived seed."""
    from adapters.sim.faults import parse_fault_spec

    if faults is None:
        return None
    if isinstance(faults, str):
        text = faults
    else:
        active = [step for step in faults if seconds(step.at) <= it.offset + 1e-9]
        if not active:
            return None
        step = max(active, key=lambda s: seconds(s.at))
        draw = random.Random(_derive_seed("share", run_seed, it.scenario, it.session, it.iteration))
        if draw.random() >= step.share:
            return None
        text = step.plan
    plan = parse_fault_spec(text)
    seed = _derive_seed(plan.seed, run_seed, it.scenario, it.session, it.iteration)
    return str(msgspec.structs.replace(plan, seed=seed))


def _first(group: BaseExceptionGroup[StenoError]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _with_fault(url: str, spec: str | None) -> str:
    if spec is None:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}steno_fault={urllib.parse.quote(spec, safe='')}"


class Player:
    """Plays one scenario's iterations; one instance per scenario per process."""

    def __init__(
        self,
        spec: Executor,
        audio: ScenarioAudio,
        target: Target,
        recorder: Recorder,
        *,
        limiter: StartLimiter,
        run_seed: int,
        dial: Dialer = dial_tcp,
        active: dict[str, int] | None = None,
    ) -> None:
        self.spec = spec
        self.audio = audio
        self.target = target
        self.recorder = recorder
        self.limiter = limiter
        self.run_seed = run_seed
        self._dial = dial
        self.active = active if active is not None else {}

    async def __call__(self, it: Iteration) -> None:
        name = self.spec.name
        self.active[name] = self.active.get(name, 0) + 1
        try:
            await self._play(it)
        except* StenoError as group:  # from open_stream or our nursery: maybe grouped
            exc = _first(group)
            self.recorder.add("sessions_failed", name)
            self.recorder.add("errors", name, code=error_code(str(exc), type(exc).__name__))
        finally:
            self.active[name] -= 1

    async def _play(self, it: Iteration) -> None:
        name, rec = self.spec.name, self.recorder
        fault = stream_fault(self.spec.faults, self.run_seed, it) if self.target.loopback else None
        config = StreamConfig(
            session=SessionConfig(
                stream=f"{name}-{it.session}-{it.iteration}",
                model=self.spec.model,
                url=_with_fault(self.target.url, fault),
                api_key=self.target.api_key,
                seed=_derive_seed("backoff", self.run_seed, name, it.session, it.iteration),
            ),
            input_rate=self.audio.rate,
            source=f"scenario:{name}",
        )
        dialed: list[float] = []
        texts: list[str] = []
        ended: StreamEnded | None = None
        async with (
            open_stream(config, dial=self._timed_dial(dialed), limiter=self.limiter) as stream,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(self._push, stream, it.scheduled)
            async for event in stream.events():
                match event:
                    case SessionOpened():
                        if dialed:
                            rec.observe("task_start_time", name, (event.t - dialed[-1]) * 1000)
                    case TaskMetrics(first_package_delay_ms=first, last_package_delay_ms=last):
                        if first is not None:
                            rec.observe("first_package_delay", name, first)
                        if last is not None:
                            rec.observe("last_package_delay", name, last)
                    case FinalEvent(end=end, text=text, rate=rate):
                        rec.add("finals", name)
                        texts.append(text)
                        due = it.scheduled + self.audio.due_of_sample(max(end - 1, 0), rate)
                        rec.observe("final_lag", name, max(event.t - due, 0.0) * 1000)
                    case Reconnecting(cause=cause):
                        rec.add("reconnects", name)
                        rec.add("errors", name, code=error_code(cause, cause.split(":", 1)[0]))
                    case StreamError(kind=kind, message=message):
                        rec.add("errors", name, code=error_code(message, kind))
                    case StreamEnded():
                        ended = event
        if ended is None:  # pragma: no cover - open_stream always ends with StreamEnded
            return
        rec.add("sessions_failed" if ended.status == "failed" else "sessions_completed", name)
        rec.observe("audio_lost_ms", name, ended.audio_lost_ms)
        if self.audio.reference is not None:
            rec.observe("wer", name, word_error_rate(self.audio.reference, " ".join(texts)))

    async def _push(self, stream: Stream, anchor: float) -> None:
        """Every chunk at its due time on the absolute schedule; lateness per chunk."""
        name, audio = self.spec.name, self.audio
        for i, chunk in enumerate(audio.chunks):
            due = anchor + audio.due(i)
            await trio.sleep_until(due)
            await stream.push(chunk)
            self.recorder.observe("send_lateness", name, (trio.current_time() - due) * 1000)
        await stream.end_input()

    def _timed_dial(self, dialed: list[float]) -> Dialer:
        return timed(self._dial, self.recorder, self.spec.name, dialed)


_Conn = TypeVar("_Conn")


def timed(
    inner: Callable[..., AbstractAsyncContextManager[_Conn]],
    recorder: Recorder,
    scenario: str,
    dialed: list[float],
) -> Callable[..., AbstractAsyncContextManager[_Conn]]:
    """A dialer that records ``connect_time`` per connection and notes when each opened.

    Generic in the connection type, so the engine side never names the wire library.
    """

    @contextlib.asynccontextmanager
    async def dial(
        url: str, headers: list[tuple[bytes, bytes]], *, connect_timeout: float
    ) -> AsyncIterator[_Conn]:
        t = trio.current_time()
        async with inner(url, headers, connect_timeout=connect_timeout) as conn:
            now = trio.current_time()
            recorder.observe("connect_time", scenario, (now - t) * 1000)
            dialed.append(now)
            yield conn

    return dial
