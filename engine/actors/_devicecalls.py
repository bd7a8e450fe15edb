"""Closing a PortAudio stream from a device actor (mic, playback), never raising, never hanging.

A dying device makes ``stop()`` and ``close()`` fail or block. The mic and the
playback actor close streams the same way: :func:`quiet_close` in a worker
thread through :class:`~engine.actors._handoff.BoundedCalls` (abandoned after
its timeout), a failure logged, never raised: the actor goes on without the
stream either way.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import structlog
import trio

from adapters.audio.backend import DeviceFailed

if TYPE_CHECKING:
    from adapters.audio.backend import InputHandle
    from engine.actors._handoff import BoundedCalls

__all__ = ["close_stream", "quiet_close"]


def quiet_close(handle: InputHandle | None, *, stop: bool, actor: str) -> None:
    """Stop (``stop``: PortAudio plays or delivers what it holds first) and close ``handle``.

    Blocking; failures are logged at debug level as ``<actor>.stop_failed`` /
    ``<actor>.close_failed``, never raised.
    """
    if handle is None:
        return
    log = structlog.get_logger(f"steno.{actor}")
    try:
        if stop:
            handle.stop()
    except DeviceFailed as exc:
        log.debug(f"{actor}.stop_failed", error=str(exc))
    try:
        handle.close()
    except DeviceFailed as exc:
        log.debug(f"{actor}.close_failed", error=str(exc))


async def close_stream(
    calls: BoundedCalls,
    handle: InputHandle | None,
    *,
    stop: bool,
    what: str,
    actor: str,
    shield: bool = False,
) -> None:
    """Close ``handle`` in a worker thread, bounded by ``calls``' timeout.

    Args:
        calls: the actor's bounded PortAudio calls.
        handle: the stream (None: nothing to do).
        stop: stop it first (graceful) rather than just close it.
        what: names the call in a "still blocked" message.
        actor: the log prefix (``mic``, ``playback``).
        shield: close even while the caller is cancelled (shutdown).

    Error handling:
        PortAudio stuck on the stream (:class:`DeviceFailed` from ``calls``) is
        logged as ``<actor>.close_failed`` at error level; nothing is raised.
    """
    if handle is None:
        return
    with trio.CancelScope(shield=shield):
        try:
            await calls(functools.partial(quiet_close, handle, stop=stop, actor=actor), what)
        except DeviceFailed as exc:
            structlog.get_logger(f"steno.{actor}").error(f"{actor}.close_failed", error=str(exc))
