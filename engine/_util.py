"""Small shared helpers."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["unwrap_single_group"]


@contextlib.contextmanager
def unwrap_single_group() -> Iterator[None]:
    """Re-raise the one non-Cancelled exception of a nursery's ExceptionGroup.

    trio wraps child failures in groups; a nursery whose tasks fail for one reason
    reads better to callers as that reason. Groups with several real errors pass
    through unchanged, and Cancelled is never swallowed.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        real = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        if len(real) == 1 and isinstance(real[0], Exception):
            raise real[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
