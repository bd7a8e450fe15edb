"""Wall-clock time: the one place the engine reads it (house rule R9).

Actors keep time on the trio clock. Wall time is needed only to stamp where a
stream began (``StreamStarted.started_at``) and to name rolling files; it comes
from an injected :data:`WallClock` (epoch seconds), :func:`system_clock` by
default, a function of the trio MockClock in tests.
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["WallClock", "iso_utc", "system_clock"]

WallClock: TypeAlias = "Callable[[], float]"


def system_clock() -> float:
    """The system's wall clock, epoch seconds (thread-safe)."""
    return time.time()


def iso_utc(epoch_s: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds: ``2023-11-14T22:13:20.000Z``."""
    moment = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
