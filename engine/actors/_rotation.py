"""Rotation and idle policy: when a task gives way to the next, and what a pause does.

**Rotation.** A task older than ``max_task_age_s`` is replaced at the next pause
in speech, make-before-break: the next task is started ``rotation_lead_s``
before the limit (in the background), and the switch happens once the old task
has no sentence open, or ``rotation_grace_s`` past the limit regardless. The new
task starts at the commit point; the old one is finished in the background and
its later results are ignored. :class:`Rotation` is the only owner of the
prepared task.

**Idle.** A paused source's task is kept alive with padding silence (which the
task clock keeps off the global timeline), or finished and reopened on the next
audio, by ``idle_policy``; a pause is also a pause in speech, so a task due for
rotation rotates then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import structlog
import trio

from adapters.dashscope.connection import finish_quietly
from engine.errors import StenoError
from engine.events import Rotated, SessionClosed

if TYPE_CHECKING:
    from engine.config import SessionConfig

    from ._feed import Feed
    from ._opener import Opener
    from ._report import Report
    from ._task import Task

__all__ = ["Rotation"]

log = structlog.get_logger("steno.session")


class Rotation:
    """The prepared next task and the decisions of rotation and idle."""

    __slots__ = ("_config", "_feed", "_next", "_opener", "_preparing", "_report")

    def __init__(self, config: SessionConfig, opener: Opener, feed: Feed, report: Report) -> None:
        self._config = config
        self._opener = opener
        self._feed = feed
        self._report = report
        self._next: Task | None = None
        self._preparing = False

    async def on_idle(self, task: Task) -> Task | Literal["finish", "pad"]:
        """The source paused for ``idle_timeout_s``: finish, rotate now, or pad."""
        if self._config.idle_policy == "finish":
            return "finish"
        # A paused source is a pause in speech: rotate now if a task is due,
        # before the prepared one (which gets no padding) idles out.
        rotated = await self.maybe_rotate(task)
        return "pad" if rotated is None else rotated

    def due(self, task: Task) -> bool:
        """Whether :meth:`maybe_rotate` would act now (prepare, or switch); pure, no checkpoint."""
        cfg = self._config
        started = task.link.started_t
        if cfg.max_task_age_s is None or started is None:
            return False
        age = trio.current_time() - started
        if not self._preparing and age >= cfg.max_task_age_s - cfg.rotation_lead_s:
            return True
        nxt = self._next
        if nxt is None or age < cfg.max_task_age_s:
            return False
        if nxt.link.dead.is_set() or not task.results.pending_partial:
            return True
        return age >= cfg.max_task_age_s + cfg.rotation_grace_s

    async def maybe_rotate(self, task: Task) -> Task | None:
        """Switch to the next task when due; the next task, or None to carry on."""
        cfg = self._config
        started = task.link.started_t
        if cfg.max_task_age_s is None or started is None:
            return None
        age = trio.current_time() - started
        nursery = self._opener.nursery
        assert nursery is not None
        if not self._preparing and age >= cfg.max_task_age_s - cfg.rotation_lead_s:
            self._preparing = True
            nursery.start_soon(self._prepare)
        nxt = self._next
        if nxt is None or age < cfg.max_task_age_s:
            return None
        if nxt.link.dead.is_set():
            self._next, self._preparing = None, False
            return None
        at_pause = not task.results.pending_partial
        if not at_pause and age < cfg.max_task_age_s + cfg.rotation_grace_s:
            return None
        # Switch at the commit point: the new task replays from there.
        self._next, self._preparing = None, False
        nxt.rebase(self._feed.buffer.commit_point)
        task.retired = True
        log.info("session.rotating", at_pause=at_pause, age_s=round(age, 1))
        await self._opener.opened(nxt)
        await self._report.emit(SessionClosed(task.task_id, "rotated"))
        await self._report.emit(Rotated(task.task_id, nxt.task_id, nxt.offset))
        nursery.start_soon(finish_quietly, task.link)
        return nxt

    def drop_prepared(self) -> None:
        """The stream is over: close a prepared task nobody will use."""
        if self._next is not None:
            self._next.link.release()
            self._next = None

    async def _prepare(self) -> None:
        """Open the next task in the background for a make-before-break rotation."""
        task = self._opener.new(self._feed.buffer.commit_point, 0)
        try:
            await self._opener.start(task)
        except StenoError as exc:
            log.warning("session.rotation_open_failed", error=str(exc))
            self._preparing = False  # try again on a later frame
            return
        self._next = task
