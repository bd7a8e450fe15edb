"""The session's supervisor loop: one task after another until the input ends.

1. open a task at the commit point (``_opener.py``), buffering input meanwhile;
2. serve it (``_pump.py``) until it is done, idle, over (an utterance model), or
   rotated (``_rotation.py``);
3. on a failure, classify it: permanent → one :class:`StreamError` and an exact
   :class:`AudioGap` for everything after the commit point; transient →
   :class:`Reconnecting`, backoff (buffering input all the while), and back to
   1. The dead task's partials are simply dropped, and a final can never be
   duplicated because the new task starts exactly at the commit point. When an
   outage outlasts the buffer, the overflow is an ``AudioGap(replay-overflow)``.

The attempt count and backoff are :class:`~engine.policy.Backoff`'s, the same
helper the daemon's two retry loops use. Once ``drain`` is set (the first
Ctrl-C), failures are no longer retried.

**The end-of-stream budget.** Once a task that sent its finish-task after the
input ended fails, the end of the stream has ``end_budget_s`` from that
finish-task, retries included: a retry whose backoff would not end in time is not
made, and a retry still running at the deadline is abandoned. The outcome is a
:class:`FinishTimeout` (status ``partial``, the unfinalized tail an exact gap).
Failures before any finish-task (the service unreachable) are the policy's alone.
"""

from __future__ import annotations

import contextlib
import random
from typing import TYPE_CHECKING

import structlog
import trio

from engine._util import drop_tracebacks
from engine.errors import FinishTimeout, StenoError
from engine.events import SessionClosed
from engine.policy import Backoff, classify

from ._report import kind_of

if TYPE_CHECKING:
    from engine.config import SessionConfig

    from ._feed import Feed
    from ._opener import Opener
    from ._pump import Pump
    from ._report import Report
    from ._rotation import Rotation
    from ._task import Task

__all__ = ["Supervisor", "session_seed"]

log = structlog.get_logger("steno.session")


def session_seed(config: SessionConfig) -> int:
    """The seed of the backoff jitter: the configured one, or a fresh random one (logged)."""
    return config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)


class Supervisor:
    """Runs the loop above; the only owner of the backoff state."""

    __slots__ = (
        "_backoff",
        "_drain",
        "_end_budget_s",
        "_end_by",
        "_feed",
        "_opener",
        "_pump",
        "_report",
        "_rotation",
    )

    def __init__(
        self,
        *,
        config: SessionConfig,
        seed: int,
        feed: Feed,
        report: Report,
        opener: Opener,
        pump: Pump,
        rotation: Rotation,
        drain: trio.Event | None,
    ) -> None:
        self._end_budget_s = config.end_budget_s
        self._end_by: float | None = None  # the end-of-stream deadline, once it runs
        self._backoff = Backoff(config.policy, seed)  # the generator is made on a failure
        self._feed = feed
        self._report = report
        self._opener = opener
        self._pump = pump
        self._rotation = rotation
        self._drain = drain

    async def run(self) -> None:
        """Serve tasks until the input ends and the last task is finished, or giving up."""
        try:
            await self._loop()
        finally:
            self._rotation.drop_prepared()
        await self._report.skipped(self._feed.take_skipped())

    async def _loop(self) -> None:
        ready: Task | None = None
        while True:
            task: Task | None = None
            # The end-of-stream budget's scope, once it runs; none before (a scope lives as
            # long as the task it serves: ~700 B a stream for a deadline that is never due).
            end = None if self._end_by is None else trio.CancelScope(deadline=self._end_by)
            try:
                with end if end is not None else contextlib.nullcontext():
                    task = ready or await self._opener.open(self._backoff.attempt)
                    ready = None
                    outcome = await self._pump.serve(task)
                if end is not None and end.cancelled_caught:
                    raise self._out_of_budget(None)
            except StenoError as raised:
                ready = None
                exc = raised
                ran_s: float | None = None
                if task is not None:
                    # The connection's own first failure is the cause; what the pump hit
                    # afterwards (a send on the closing socket) is a consequence.
                    exc = task.link.error or raised
                    task.link.abort(exc)  # close its connection now; it is not coming back
                    # A record from here on: the pump re-raised the link's error, so its
                    # traceback holds the pump's frame, which holds the link (#17).
                    drop_tracebacks(exc)
                    await self._closed(task, exc)
                    started = task.link.started_t
                    ran_s = None if started is None else trio.current_time() - started
                finish_sent = task.link.finish_sent_t if task is not None else None
                if self._feed.input_done and self._end_by is None and finish_sent is not None:
                    self._end_by = finish_sent + self._end_budget_s
                if await self._recover(exc, ran_s):
                    continue
                return
            if not isinstance(outcome, str):  # rotated: the next task is already announced
                self._backoff.reset()
                ready = outcome
                continue
            assert task is not None
            await self._closed(task, None)
            if outcome == "idle" and await self._feed.await_input():
                self._backoff.reset()
                continue
            if outcome == "utterance":
                self._backoff.reset()
                continue
            return

    async def _recover(self, exc: StenoError, ran_s: float | None) -> bool:
        """Decide on a failure; True after a backoff when another task should be tried."""
        self._feed.outage_began(trio.current_time())
        category = classify(exc)
        if category.is_permanent:
            await self._fail(exc, permanent=True)
            return False
        delay = self._backoff.failed(ran_s)
        if delay is None or (self._drain is not None and self._drain.is_set()):
            await self._fail(exc, permanent=False)
            return False
        if self._end_by is not None and trio.current_time() + delay >= self._end_by:
            await self._fail(self._out_of_budget(exc), permanent=False)
            return False
        cause = f"{category.value}: {exc}"
        attempt = self._backoff.attempt
        log.warning("session.reconnecting", attempt=attempt, delay_s=round(delay, 3), cause=cause)
        await self._report.reconnecting(attempt, delay, cause)
        with trio.move_on_after(delay):
            await self._feed.absorb_all(commit_silence=True)
            await trio.sleep_forever()  # the backoff lasts its whole delay
        self._feed.give_up_lost()
        return True

    def _out_of_budget(self, exc: StenoError | None) -> FinishTimeout:
        if isinstance(exc, FinishTimeout):
            return exc
        cause = f" (last: {exc})" if exc is not None else ""
        return FinishTimeout(
            f"the stream did not finish within its {self._end_budget_s:g} s "
            f"end-of-stream budget{cause}"
        )

    async def _fail(self, exc: StenoError, *, permanent: bool) -> None:
        """Give up: report once, then drain and account for every unrecognized sample."""
        report, feed = self._report, self._feed
        log.error("session.failed", kind=kind_of(exc), error=str(exc), permanent=permanent)
        await report.skipped(feed.take_skipped())
        feed.outage_ended()  # what it dropped is in the overflow span, or in the gap below
        span = feed.take_overflow()
        if span is not None:
            await report.gap(span[0], span[1], "replay-overflow")
        await report.error(exc, permanent=permanent)
        start = feed.buffer.commit_point
        await feed.absorb_all()
        reason = (
            "finish-deadline"
            if isinstance(exc, FinishTimeout)
            else ("permanent-error" if permanent else "connection-lost")
        )
        await report.gap(start, feed.buffer.end, reason)

    async def _closed(self, task: Task, exc: StenoError | None) -> None:
        link = task.link
        if not link.started.is_set() or task.retired:
            return
        reason = link.close_reason if exc is None or link.close_reason != "closed" else kind_of(exc)
        await self._report.emit(SessionClosed(task.task_id, reason))
