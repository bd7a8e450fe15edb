"""structlog configuration: called only by entry points (the CLI, tools), never on import."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

import msgspec
import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

__all__ = ["BoundContext", "configure"]

_SECRET_KEYS = frozenset({"api_key", "authorization", "key", "token", "secret"})


class RedactSecrets:
    """Replace the value of any secret-looking key by ``***`` (keys never reach logs)."""

    __slots__ = ()

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        for key in event_dict.keys() & _SECRET_KEYS:
            event_dict[key] = "***"
        return event_dict


class BoundContext:
    """``structlog.contextvars.bound_contextvars(**values)`` for a block as long as a stream.

    Binds ``values`` on entry; on exit unbinds them and restores what those keys were
    bound to before. structlog's own is a generator, which holds for the block's whole
    life its frame, a copy of every bound variable and a context manager with a
    ``__dict__`` (~1.3 KB, and six objects the garbage collector scans); this holds the
    keys, and the earlier values only if there were any (#11). Not reentrant.
    """

    __slots__ = ("_keys", "_saved", "_values")

    def __init__(self, **values: Any) -> None:
        self._values: dict[str, Any] | None = values
        self._keys: tuple[str, ...] = ()
        self._saved: dict[str, Any] | None = None

    def __enter__(self) -> None:
        values, self._values = self._values, None  # not kept: the block may be long
        if values is None:
            raise RuntimeError("a BoundContext is entered once")
        bound = structlog.contextvars.get_contextvars()
        self._saved = {key: bound[key] for key in bound.keys() & values.keys()} or None
        self._keys = tuple(values)
        structlog.contextvars.bind_contextvars(**values)

    def __exit__(self, *exc_info: object) -> None:
        structlog.contextvars.unbind_contextvars(*self._keys)
        if self._saved is not None:
            structlog.contextvars.bind_contextvars(**self._saved)


def _msgspec_dumps(obj: Any, default: Any = None) -> bytes:
    return msgspec.json.encode(obj, enc_hook=str)


def configure(*, json: bool, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send logs to ``stream`` (default stderr): JSON lines (``json=True``) or a console renderer.

    Secret-looking keys (``api_key``, ``authorization``, ``token`` …) are replaced by
    ``***`` before anything is rendered. JSON goes straight to the stream's binary
    buffer when it has one (``sys.stdout``, ``sys.stderr``), else through its text
    layer (``io.StringIO``); each line is flushed as it is written.

    Args:
        json: JSON lines (daemons, pipes) instead of the console renderer (people).
        level: the least severe level logged.
        stream: where lines go: the daemon logs to stdout, the CLI to stderr.
    """
    out = sys.stderr if stream is None else stream
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        RedactSecrets(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    factory: Any
    if json:
        binary = getattr(out, "buffer", None)
        if binary is not None:
            renderer = structlog.processors.JSONRenderer(serializer=_msgspec_dumps)
            factory = structlog.BytesLoggerFactory(file=binary)
        else:
            renderer = structlog.processors.JSONRenderer(serializer=_msgspec_text)
            factory = structlog.WriteLoggerFactory(file=out)
        processors = [*shared, structlog.processors.format_exc_info, renderer]
    else:
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=_isatty(out))]
        factory = structlog.WriteLoggerFactory(file=out)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def _msgspec_text(obj: Any, default: Any = None) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or minimal stream
        return False
