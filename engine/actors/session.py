"""The session actor: one stream's supervised conversation with the speech service.

Theory of operation
-------------------
The actor reads :class:`AudioFrame`s (int16 PCM at the model's rate, on the
stream's global timeline) and writes engine events. It is assembled from parts,
each the only owner of its state:

=====================  ==========================================================
``_inlet.py``          the inbox: a bounded queue and a synchronous lane
``_feed.py``           the inbox, the replay buffer (everything after the
                       **commit point**, the end of the last final; bounded,
                       drop-oldest)
``_replay.py``         the replay of the buffer to a new task
``_opener.py``         a task per connection, started under the shared start
                       limiter, announced with :class:`SessionOpened`
``_pump.py``           serving a task: audio up (replay, then live), results
                       down (pulled from the connection's channel), finish
``_transcript.py``     results onto the global timeline: sentence ids, finals,
                       commit points (pure)
``_rotation.py``       make-before-break rotation of old tasks, the idle policy
``_supervise.py``      the loop: open, serve, classify failures, back off, retry
``_report.py``         the outbox, the counters, :class:`StreamEnded`
=====================  ==========================================================

The connection itself (one reader that is also the liveness watch, bounded
send, exception mapping) is the adapter's: ``adapters/dashscope/connection.py``.
It hands results up a bounded queue, or, while the pump's consumer is idle and
the outbox has room, to the consumer's synchronous step, which the consumer
armed (``adapters/dashscope/_results.py``); nothing else reaches into the session.

A stream is served by a sequence of tasks, one connection each: a task opens at
the commit point, replays the buffer from there, streams live; finals move the
commit point; a failure is retried from the commit point (so no final is lost or
duplicated) or, when permanent or out of attempts, reported with an exact
:class:`AudioGap`. At the end of input the last task is finished: ``finish-task``,
read until ``task-finished`` under the deadline (a passed deadline is a
transient failure: the tail is replayed on a new task).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

from adapters.dashscope.models import get_model, run_task_parameters
from adapters.dashscope.ws import dial_tcp
from engine.logging import BoundContext
from engine.ratelimit import StartLimiter, process_limiter
from engine.translation import check_translation, gummy_parameters, realtime_settings, transcribes

from ._feed import Feed
from ._opener import Opener
from ._pump import Pump
from ._report import Report
from ._rotation import Rotation
from ._supervise import Supervisor, session_seed
from ._transcript import Transcript

if TYPE_CHECKING:
    from adapters.dashscope.transport import Dialer
    from engine.config import SessionConfig
    from engine.events import AudioFrame, Event

    from ._inlet import Inbox

__all__ = ["SessionStats", "run"]

log = structlog.get_logger("steno.session")


async def run(
    *,
    inbox: Inbox | trio.MemoryReceiveChannel[AudioFrame],
    outbox: trio.MemorySendChannel[Event],
    config: SessionConfig,
    dial: Dialer = dial_tcp,
    limiter: StartLimiter | None = None,
    drain: trio.Event | None = None,
    task_status: trio.TaskStatus[SessionStats] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one stream's session until its input ends and its last task is finished.

    Channels: reads and closes ``inbox``; writes and closes ``outbox``. The last
    event written is always :class:`StreamEnded`. With an :class:`Inbox` (see
    :func:`~engine.actors._inlet.open_inlet`) live frames are sent inside the
    producer's ``send`` whenever nothing has to wait; a plain channel works too.

    Cancellation: cancelling abandons the task without ``finish-task`` (the second
    Ctrl-C); close the inbox instead for a graceful finish. Once ``drain`` is set
    (the first Ctrl-C), failures are no longer retried: the stream finishes within
    its deadlines and reports what it could not finalize.

    Error handling: service and network failures never raise; they are retried by
    ``config.policy`` or become a :class:`StreamError` plus an :class:`AudioGap` for
    every unrecognized sample. A bad configuration raises :class:`ConfigError`
    before ``task_status.started``.
    """
    spec = get_model(config.model)
    check_translation(spec, config.translation)
    parameters: dict[str, object]
    if spec.protocol == "realtime":
        parameters = {"session": realtime_settings(config, spec)}
    else:
        parameters = run_task_parameters(spec, config.options, sample_rate=spec.sample_rate)
        if spec.family == "gummy":
            parameters |= gummy_parameters(config.translation)
    rate = spec.sample_rate
    seed = session_seed(config)
    feed = Feed(inbox, max(1, int(config.replay_buffer_s * rate)), rate)
    report = Report(outbox, config.stream, rate)
    transcript = Transcript(
        rate, utterance=spec.utterance, transcribes=transcribes(spec, config.translation)
    )
    opener = Opener(
        config=config,
        spec=spec,
        parameters=parameters,
        dial=dial,
        limiter=limiter or process_limiter(),
        report=report,
        feed=feed,
    )
    rotation = Rotation(config, opener, feed, report)
    pump = Pump(
        config=config,
        spec=spec,
        feed=feed,
        report=report,
        transcript=transcript,
        rotation=rotation,
    )
    supervisor = Supervisor(
        config=config,
        seed=seed,
        feed=feed,
        report=report,
        opener=opener,
        pump=pump,
        rotation=rotation,
        drain=drain,
    )
    async with inbox, outbox:
        stats = SessionStats(feed, report, transcript, opener)
        task_status.started(stats)
        # trio's task status holds the start's temporary nursery (~1 KB): let it go now,
        # not when the stream ends (#11).
        del task_status
        with BoundContext(stream=config.stream, model=config.model):
            log.info("session.start", seed=seed)
            async with trio.open_nursery() as nursery:
                opener.nursery = nursery
                await supervisor.run()
            await report.end(finals=transcript.finals, audio_end=feed.buffer.end)
            lag = feed.send_lag
            log.info(
                "session.end",
                frames=lag.count,
                fast_frames=feed.fast_frames,
                frames_coalesced=feed.frames_coalesced,
                fast_results=report.fast_results,
                send_lag_p99_ms=round(lag.quantile_s(0.99) * 1000.0, 3),
                send_lag_max_ms=round(lag.max_s * 1000.0, 3),
            )


class SessionStats:
    """A live, read-only view of a session's counters and bounded state (for metrics, soaks)."""

    __slots__ = ("_feed", "_opener", "_report", "_transcript")

    def __init__(self, feed: Feed, report: Report, transcript: Transcript, opener: Opener) -> None:
        self._feed = feed
        self._report = report
        self._transcript = transcript
        self._opener = opener

    @property
    def buffered_samples(self) -> int:
        return self._feed.buffer.samples

    @property
    def buffered_frames(self) -> int:
        return len(self._feed.buffer)

    @property
    def max_buffered_samples(self) -> int:
        return self._feed.buffer.max_samples

    @property
    def tasks_opened(self) -> int:
        return self._opener.tasks

    @property
    def live_tasks(self) -> int:
        """Background tasks of the session (connection owners and their helpers)."""
        nursery = self._opener.nursery
        return len(nursery.child_tasks) if nursery is not None else 0

    @property
    def reconnects(self) -> int:
        return self._report.reconnects

    @property
    def finals(self) -> int:
        return self._transcript.finals

    @property
    def lost_samples(self) -> int:
        return self._report.lost_samples

    @property
    def pending_lost_samples(self) -> int:
        """Audio the current outage has already lost (overflow of the replay buffer while
        no task is open), not yet reported: the closing ``AudioGap`` will carry exactly it."""
        return self._feed.pending_lost()

    @property
    def send_lag_p99_ms(self) -> float:
        """The 99th percentile of live frames' send lag: handed to the inbox -> taken by the
        transport (a bounded histogram's bucket bound, at most 19 % over)."""
        return self._feed.send_lag.quantile_s(0.99) * 1000.0

    @property
    def send_lag_max_ms(self) -> float:
        return self._feed.send_lag.max_s * 1000.0

    @property
    def fast_frames(self) -> int:
        """Live frames sent inside the producer's ``send`` (the synchronous lane)."""
        return self._feed.fast_frames

    @property
    def frames_coalesced(self) -> int:
        """Live frames sent joined with others (up to 200 ms a message) while behind."""
        return self._feed.frames_coalesced

    @property
    def fast_results(self) -> int:
        """Results mapped and emitted inside the connection's reader (the results' lane)."""
        return self._report.fast_results

    @property
    def received_samples(self) -> int:
        """The global end of the newest audio the session has received."""
        return self._feed.buffer.end
