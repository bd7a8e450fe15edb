"""Opening tasks: a connection per task, started under the shared start limiter.

:class:`Opener` makes each :class:`~engine.actors._task.Task` (a new connection
at a global offset), starts its connection in the session's nursery after a
start token from the process-wide :class:`~engine.ratelimit.StartLimiter`, and
announces it (:class:`SessionOpened`, after any pending overflow gap). It is the
only writer of the session's task count.

Cancellation: :meth:`start` is cancellable anywhere; a connection half-started
when cancelled is dropped by its own cancellation.

Error handling: :meth:`start` raises the connection's failure before the start
(``AuthError``, ``ConnectFailed``, ``StenoTimeout``, ``TaskFailed``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import structlog
import trio

from adapters.dashscope.connection import LinkSettings
from adapters.dashscope.links import new_link
from engine._util import unwrap_single_group
from engine.config import USER_AGENT
from engine.events import SessionOpened

from ._images import send_images
from ._task import Task

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from adapters.dashscope.links import Link
    from adapters.dashscope.models import ModelSpec
    from adapters.dashscope.transport import Dialer
    from engine.config import SessionConfig
    from engine.ratelimit import StartLimiter

    from ._feed import Feed
    from ._report import Report

__all__ = ["Opener", "link_settings"]

log = structlog.get_logger("steno.session")


def link_settings(config: SessionConfig, rate: int) -> LinkSettings:
    """A connection's address, key and deadlines, from the session's config."""
    return LinkSettings(
        url=config.url,
        api_key=config.api_key.reveal(),
        user_agent=USER_AGENT,
        rate=rate,
        connect_s=config.connect_timeout_s,
        start_s=config.start_timeout_s,
        send_s=config.send_timeout_s,
        finish_s=config.finish_timeout_s,
        ping_interval_s=config.ping_interval_s,
        pong_timeout_s=config.pong_timeout_s,
        stall_s=config.stall_timeout_s,
    )


class _StartedOnce:
    """A task status that lets go of trio's once the task has started.

    A task started with ``nursery.start`` holds its task status in its frame for its
    whole life, and trio's holds the start's temporary nursery (a nursery, its cancel
    scope and status, four sets: ~1 KB). A connection lives as long as its server
    task, so it gets this one instead (#11).
    """

    __slots__ = ("_status",)

    def __init__(self, status: trio.TaskStatus[None]) -> None:
        self._status: trio.TaskStatus[None] | None = status

    def started(self, value: None = None) -> None:
        status, self._status = self._status, None
        if status is None:
            raise RuntimeError("called 'started' twice on the same task status")
        status.started(value)


def _run_link(link: Link, *, task_status: trio.TaskStatus[None]) -> Coroutine[Any, Any, None]:
    """``link.run``'s coroutine, with a task status that does not keep trio's alive.

    A plain function that returns the coroutine (trio starts it all the same): no frame
    of its own lives beside the connection's.
    """
    return link.run(task_status=_StartedOnce(task_status))


class Opener:
    """Makes, starts and announces the session's tasks."""

    __slots__ = (
        "_dial",
        "_feed",
        "_images",
        "_limiter",
        "_model",
        "_parameters",
        "_report",
        "_settings",
        "_spec",
        "nursery",
        "tasks",
    )

    def __init__(
        self,
        *,
        config: SessionConfig,
        spec: ModelSpec,
        parameters: dict[str, Any],
        dial: Dialer,
        limiter: StartLimiter,
        report: Report,
        feed: Feed,
    ) -> None:
        self._model = config.model
        self._spec = spec
        self._parameters = parameters
        self._dial = dial
        self._limiter = limiter
        self._report = report
        self._feed = feed
        self._settings = link_settings(config, spec.sample_rate)
        translation = config.translation
        # Pictures go to realtime sessions only (check_translation refuses them elsewhere).
        self._images = translation.image if translation is not None else None
        self.nursery: trio.Nursery | None = None  # the session's: connections outlive a pump
        self.tasks = 0  # tasks made so far

    def new(self, offset: int, attempt: int) -> Task:
        """A task (not started) whose audio begins at global ``offset``."""
        self.tasks += 1
        link = new_link(
            self._spec,
            self._model,
            settings=self._settings,
            dial=self._dial,
            task_id=uuid.uuid4().hex,
            parameters=self._parameters,
        )
        return Task(link, offset, self._spec.sample_rate, attempt)

    async def start(self, task: Task) -> None:
        """Take a start token, then start the task's connection in the session's nursery."""
        await self._limiter.acquire(self._spec.family)
        assert self.nursery is not None
        with unwrap_single_group():
            await self.nursery.start(_run_link, task.link, name=task.link.run)
        log.info(
            "session.task_started", task_id=task.task_id, offset=task.offset, attempt=task.attempt
        )
        if self._images and self._spec.protocol == "realtime":
            self.nursery.start_soon(send_images, task, self._images)

    async def open(self, attempt: int) -> Task:
        """Start a task at the commit point, buffering input meanwhile; announce it."""
        task = self.new(self._feed.buffer.commit_point, attempt)
        with unwrap_single_group():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._feed.absorb_all)
                await self.start(task)
                nursery.cancel_scope.cancel()
        await self.opened(task)
        return task

    async def opened(self, task: Task) -> None:
        """Announce a task the stream now uses (after any overflow the outage caused)."""
        feed = self._feed
        if feed.outage_ended() and feed.buffer.commit_point > task.offset:
            # The handshake's wait dropped audio too: it is in the outage's gap, and the
            # task (which has no audio yet) starts after it.
            task.rebase(feed.buffer.commit_point)
        await self._report.skipped(self._feed.take_skipped())
        span = self._feed.take_overflow()
        if span is not None:
            await self._report.gap(span[0], span[1], "replay-overflow")
        await self._report.emit(SessionOpened(task.task_id, task.offset, attempt=task.attempt))
