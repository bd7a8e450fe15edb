"""structlog configuration: called only by entry points (the CLI, tools), never on import."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

__all__ = ["configure"]

_SECRET_KEYS = frozenset({"api_key", "authorization", "key", "token", "secret"})


class RedactSecrets:
    """Replace the value of any secret-looking key by ``***`` (keys never reach logs)."""

    __slots__ = ()

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        for key in event_dict.keys() & _SECRET_KEYS:
            event_dict[key] = "***"
        return event_dict


def _msgspec_dumps(obj: Any, default: Any = None) -> bytes:
    return msgspec.json.encode(obj, enc_hook=str)


def configure(*, json: bool, level: int = logging.INFO) -> None:
    """Log to stderr: JSON lines (``json=True``) or a console renderer for people."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        RedactSecrets(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_msgspec_dumps),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=structlog.BytesLoggerFactory(file=sys.stderr.buffer),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[*shared, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
            cache_logger_on_first_use=True,
        )
