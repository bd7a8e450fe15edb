"""Small shared helpers."""

from __future__ import annotations

import ipaddress
import urllib.parse
from typing import TYPE_CHECKING, Literal

import trio

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["drop_tracebacks", "is_loopback", "unwrap_single_group"]


def unwrap_single_group() -> _UnwrapSingleGroup:
    """Re-raise the one non-Cancelled exception of a nursery's ExceptionGroup.

    trio wraps child failures in groups; a nursery whose tasks fail for one reason
    reads better to callers as that reason. Groups with several real errors pass
    through unchanged, and Cancelled is never swallowed.

    The exception is raised as itself, with the ``__context__`` it had: chained to
    the group that held it, it would form a reference cycle (exception → group →
    exception) that keeps its traceback's frames, and all their locals reference (a
    whole dead connection), alive until the cyclic garbage collector runs.
    """
    return _UnwrapSingleGroup()


class _UnwrapSingleGroup:
    # A class rather than @contextmanager: contextlib's __exit__ frame would keep the
    # group in a local, and that frame ends up in the raised exception's traceback.
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if not isinstance(exc, BaseExceptionGroup):
            return False
        real = [e for e in _leaves(exc) if not isinstance(e, trio.Cancelled)]
        if len(real) != 1 or not isinstance(real[0], Exception):
            return False
        single = real[0]
        # No local of this frame (it joins the traceback) may lead back to `single`.
        del etype, exc, tb, real
        context = single.__context__
        try:
            raise single
        finally:
            single.__context__ = context
            del single, context


def drop_tracebacks(exc: BaseException) -> None:
    """Detach the tracebacks of ``exc``, of its causes and contexts, and of group members.

    For an exception kept as a record (why a connection died) after it was handled:
    its traceback's frames keep their locals, usually including the object that
    keeps the record, so the two would only go together, at the next full
    collection of the cyclic garbage collector. Not for an exception still being
    raised (its traceback would restart where it is re-raised).
    """
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost`` or a loopback address)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
