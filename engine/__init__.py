"""Stenograph: a trio actor engine for realtime speech recognition that never loses a word silently.

The public surface is re-exported here; implementation modules may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import AuthError as AuthError
from engine.errors import ConfigError as ConfigError
from engine.errors import ConnectFailed as ConnectFailed
from engine.errors import Disconnected as Disconnected
from engine.errors import InputError as InputError
from engine.errors import StenoError as StenoError
from engine.errors import TaskFailed as TaskFailed
from engine.events import AudioFrame as AudioFrame
from engine.events import AudioGap as AudioGap
from engine.events import AudioSkipped as AudioSkipped
from engine.events import Event as Event
from engine.events import Final as Final
from engine.events import Partial as Partial
from engine.events import Reconnecting as Reconnecting
from engine.events import Rotated as Rotated
from engine.events import SessionClosed as SessionClosed
from engine.events import SessionOpened as SessionOpened
from engine.events import StreamEnded as StreamEnded
from engine.events import StreamError as StreamError
from engine.events import StreamStarted as StreamStarted
from engine.events import TaskMetrics as TaskMetrics
from engine.events import Translation as Translation
from engine.events import decode_jsonl_line as decode_jsonl_line
from engine.policy import CLI as CLI
from engine.policy import DAEMON as DAEMON
from engine.policy import RestartPolicy as RestartPolicy
from engine.ratelimit import StartLimiter as StartLimiter

if TYPE_CHECKING:
    from engine.config import Secret as Secret
    from engine.config import SessionConfig as SessionConfig
    from engine.config import TranslationOptions as TranslationOptions
    from engine.pipeline import FileStreamConfig as FileStreamConfig
    from engine.pipeline import run_file_stream as run_file_stream
    from engine.stream import Stream as Stream
    from engine.stream import StreamConfig as StreamConfig
    from engine.stream import StreamStatistics as StreamStatistics
    from engine.stream import open_stream as open_stream

# Names from modules that import adapters/ are loaded on first use: adapters import
# engine.errors and engine.events, and an eager import here would be circular.
_LAZY = {
    "FileStreamConfig": "engine.pipeline",
    "run_file_stream": "engine.pipeline",
    "Secret": "engine.config",
    "SessionConfig": "engine.config",
    "TranslationOptions": "engine.config",
    "Stream": "engine.stream",
    "StreamConfig": "engine.stream",
    "StreamStatistics": "engine.stream",
    "open_stream": "engine.stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = [
    "CLI",
    "DAEMON",
    "AudioFrame",
    "AudioGap",
    "AudioSkipped",
    "AuthError",
    "ConfigError",
    "ConnectFailed",
    "Disconnected",
    "Event",
    "FileStreamConfig",
    "Final",
    "InputError",
    "Partial",
    "Reconnecting",
    "RestartPolicy",
    "Rotated",
    "Secret",
    "SessionClosed",
    "SessionConfig",
    "SessionOpened",
    "StartLimiter",
    "StenoError",
    "Stream",
    "StreamConfig",
    "StreamEnded",
    "StreamError",
    "StreamStarted",
    "StreamStatistics",
    "TaskFailed",
    "TaskMetrics",
    "Translation",
    "TranslationOptions",
    "decode_jsonl_line",
    "open_stream",
    "run_file_stream",
]
