"""Stenograph's exception families.

No third-party exception type escapes ``adapters/``: transports wrap every call in
:func:`map_exceptions` and raise one of these ``from`` the original. Every error a user
can cause carries a one-line message naming the cause and the fix.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "AuthError",
    "ConfigError",
    "ConnectFailed",
    "Disconnected",
    "FinishTimeout",
    "InputError",
    "LocalProtocolError",
    "NetworkError",
    "ProtocolError",
    "RemoteProtocolError",
    "ServerError",
    "StenoError",
    "StenoTimeout",
    "TaskFailed",
    "map_exceptions",
]


class StenoError(Exception):
    """Base of every error Stenograph raises on purpose."""


# Configuration and input


class ConfigError(StenoError):
    """A bad option, model name or configuration value."""


class InputError(StenoError):
    """An audio input that cannot be read (missing, empty, not audio, bad rate)."""


# Timeouts


class StenoTimeout(StenoError):
    """A deadline passed."""


class FinishTimeout(StenoTimeout):
    """The server did not finish the task before the finish deadline."""


# Network


class NetworkError(StenoError):
    """The transport failed."""


class ConnectFailed(NetworkError):
    """The connection could not be opened (refused, unreachable, handshake failed)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(ConnectFailed):
    """The server rejected the API key (HTTP 401/403 at the upgrade)."""


class Disconnected(NetworkError):
    """The connection closed while it was in use."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


# Service


class ServerError(StenoError):
    """The service reported an error."""


class TaskFailed(ServerError):
    """The server sent ``task-failed``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"task failed: {code}: {message}")
        self.code = code
        self.message = message


# Protocol


class ProtocolError(StenoError):
    """A protocol violation; use one of the two subclasses."""

    def __new__(cls, *args: Any, **kwargs: Any) -> ProtocolError:
        if cls is ProtocolError:
            raise TypeError(
                "ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError"
            )
        return super().__new__(cls, *args, **kwargs)


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow in the current state."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""

    def __init__(
        self, message: str, *, close_code_hint: int | None = None, event_hint: object = None
    ) -> None:
        super().__init__(message)
        self.close_code_hint = close_code_hint
        self.event_hint = event_hint


@contextlib.contextmanager
def map_exceptions(mapping: Mapping[type[BaseException], type[StenoError]]) -> Iterator[None]:
    """Re-raise exceptions of the mapped types as ours, chained ``from`` the original.

    The first matching entry (in mapping order, by ``isinstance``) wins.
    """
    try:
        yield
    except Exception as exc:
        for from_type, to_type in mapping.items():
            if isinstance(exc, from_type):
                _raise(to_type, exc)
        raise


def _raise(to_type: type[StenoError], exc: Exception) -> NoReturn:
    message = str(exc) or type(exc).__name__
    raise to_type(message) from exc
