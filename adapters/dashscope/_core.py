"""What every sans-IO protocol core shares: frame limits, id makers, table bookkeeping.

The inference cores and the realtime cores, client and server roles, all keep
their state by a transition table with a sticky ERROR state (``_state.py``,
``_realtime_state.py``); :class:`Core` is that bookkeeping, once.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

import msgspec

from engine.errors import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MAX_TEXT_FRAME", "UNDECODABLE", "Core", "new_event_id", "new_id"]

MAX_TEXT_FRAME: Final = 1 << 20
"""The largest text frame either core accepts (1 MiB); larger ones are refused unparsed."""

UNDECODABLE: Final = (msgspec.DecodeError, RecursionError, UnicodeError)
"""What decoding a hostile text frame raises: bad JSON or schema, nesting deeper than
the interpreter's recursion limit, a ``str`` holding lone surrogates."""


def new_event_id() -> str:
    """A client event id as the SDK makes them: ``event_`` + 32 hex digits."""
    return "event_" + uuid.uuid4().hex


def new_id(prefix: str) -> str:
    """A server-side id (``sess_…``, ``item_…``, ``resp_…``, ``conv_…``, ``event_…``)."""
    return f"{prefix}_{uuid.uuid4().hex}"


class Core:
    """State bookkeeping shared by both roles."""

    _table: dict[tuple[Any, type[object]], Any]
    _error: Any

    def __init__(self, initial: Any) -> None:
        self._state = initial
        self._events: list[Any] = []  # a short FIFO (an empty deque is 760 B per connection)

    def _check_live(self) -> None:
        if self._state is self._error:
            raise LocalProtocolError(
                "the protocol core is in ERROR state; the connection must close"
            )

    def _transition(self, item: object) -> bool:
        """Apply ``item``; False (and state ERROR) when the table has no entry."""
        new = self._table.get((self._state, type(item)))
        if new is None:
            self._state = self._error
            return False
        self._state = new
        return True

    def _local(self, command: object) -> None:
        self._check_live()
        new = self._table.get((self._state, type(command)))
        if new is None:
            before, self._state = self._state, self._error
            raise LocalProtocolError(f"cannot send {type(command).__name__} in state {before.name}")
        self._state = new

    def _misuse(self, message: str) -> LocalProtocolError:
        self._state = self._error
        return LocalProtocolError(message)

    def events(self) -> Iterator[Any]:
        """Drain the events produced by ``receive_data`` so far (not a checkpoint)."""
        events = self._events
        while events:
            yield events.pop(0)
