"""Configuration Structs of a stream and its session, and the Secret wrapper for API keys."""

from __future__ import annotations

from typing import Final

import msgspec

from adapters.dashscope.models import RecognitionOptions

__all__ = ["USER_AGENT", "Secret", "SessionConfig"]

USER_AGENT: Final = "stenograph/0.1.0"


class Secret:
    """An API key that never shows itself in repr, str, logs or encoded output.

    ``reveal()`` is the only way to the value; call it where the key goes on the wire.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SessionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How one stream talks to the speech service.

    Attributes:
        stream: the stream id put on every event.
        model: a model name from ``adapters.dashscope.models.MODELS``.
        url: the inference WebSocket URL.
        api_key: sent as ``Authorization: Bearer``; never logged.
        options: recognition parameters for run-task.
        frame_ms: audio per binary frame (the service recommends about 100 ms).
        connect_timeout_s: deadline for the TCP connect plus WebSocket handshake.
        start_timeout_s: deadline from run-task to task-started.
        finish_timeout_s: deadline from finish-task to task-finished (DESIGN §4).
        replay_buffer_s: audio kept after the commit point (drop-oldest beyond it).
        send_timeout_s: deadline for one frame to leave (a server that stops reading).
    """

    stream: str
    model: str
    url: str
    api_key: Secret
    options: RecognitionOptions = RecognitionOptions()
    frame_ms: int = 100
    connect_timeout_s: float = 10.0
    start_timeout_s: float = 10.0
    finish_timeout_s: float = 10.0
    replay_buffer_s: float = 120.0
    send_timeout_s: float = 10.0
