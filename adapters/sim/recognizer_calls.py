"""Calling a recognizer session from a simulator connection.

Both endpoints drive a :class:`~adapters.recognizers.base.RecognizerSession`
the same way: any failure of a call becomes one :class:`RecognizerFailed` (the
inference task fails with ``InternalError``; a realtime segment fails alone),
and a session is closed even while its task is cancelled, but not forever.

A session that also has a synchronous ``feed_nowait`` (:class:`SyncFeed`, the
scripted recognizer's) is fed without an await: no checkpoint, no scheduler
round trip per batch (:func:`feed_now`); one that also has ``level_nowait``
(:class:`SyncLevel`) measures the audio's level for the silence timers as its VAD
will, so the frame is measured once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, TypeVar, runtime_checkable

import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from adapters.recognizers.base import Hypothesis, RecognizerSession

__all__ = [
    "RecognizerFailed",
    "SyncFeed",
    "SyncLevel",
    "close_session",
    "failure_of",
    "feed_now",
    "guard",
]

_log = structlog.get_logger()

_SESSION_CLOSE_S: Final = 5.0

_T = TypeVar("_T")


class RecognizerFailed(Exception):
    """A recognizer call raised; its message says what went wrong."""


async def guard(call: Awaitable[_T]) -> _T:
    """Await a recognizer call; its failures become :class:`RecognizerFailed`."""
    try:
        return await call
    except Exception as exc:
        raise RecognizerFailed(str(exc) or type(exc).__name__) from exc


@runtime_checkable
class SyncFeed(Protocol):
    """A session whose ``feed`` work is synchronous: ``feed_nowait`` does it without awaiting."""

    def feed_nowait(self, pcm: bytes) -> list[Hypothesis]:
        """What ``await feed(pcm)`` returns, computed now (not a checkpoint)."""
        ...


@runtime_checkable
class SyncLevel(Protocol):
    """A session that measures audio about to be fed as its own VAD will (one measurement
    for the silence timers and the recognizer, not two)."""

    def level_nowait(self, pcm: bytes) -> float | None:
        """The RMS of ``pcm`` (int16 units), or None if the caller must measure it."""
        ...


def failure_of(exc: Exception) -> RecognizerFailed:
    """The :class:`RecognizerFailed` a recognizer call's ``exc`` becomes (its cause)."""
    failed = RecognizerFailed(str(exc) or type(exc).__name__)
    failed.__cause__ = exc
    return failed


def feed_now(session: SyncFeed, pcm: bytes) -> list[Hypothesis]:
    """``session.feed_nowait(pcm)``; its failures become :class:`RecognizerFailed`."""
    try:
        return session.feed_nowait(pcm)
    except Exception as exc:
        raise failure_of(exc) from exc


async def close_session(session: RecognizerSession) -> None:
    """Close a recognizer session even while cancelled, but not for more than 5 s.

    Error handling: a failing ``aclose()`` is logged, not raised.
    """
    with trio.CancelScope(shield=True, deadline=trio.current_time() + _SESSION_CLOSE_S):
        try:
            await session.aclose()
        except Exception:
            _log.exception("recognizer session did not close cleanly")
