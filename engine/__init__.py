"""Stenograph: a trio actor engine for realtime speech recognition that never loses a word silently.

This package's face is the vocabulary every layer shares: events, errors, the
configuration and policy types. It imports nothing from ``adapters/``, so an
adapter that imports ``engine.errors`` (which runs this file first) never pulls
in the adapters themselves: there is no import cycle and no lazy name.

The assembly that puts actors and adapters together is public at its own
module, :mod:`engine.stream` (``open_stream``, ``Stream``, ``StreamConfig``,
``StreamStatistics``); re-exporting it here would make this package depend on
``adapters/`` and close the loop again.
"""

from __future__ import annotations

from engine.config import RecognitionOptions as RecognitionOptions
from engine.config import Secret as Secret
from engine.config import SessionConfig as SessionConfig
from engine.config import TranslationOptions as TranslationOptions
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
    "Final",
    "InputError",
    "Partial",
    "RecognitionOptions",
    "Reconnecting",
    "RestartPolicy",
    "Rotated",
    "Secret",
    "SessionClosed",
    "SessionConfig",
    "SessionOpened",
    "StartLimiter",
    "StenoError",
    "StreamEnded",
    "StreamError",
    "StreamStarted",
    "TaskFailed",
    "TaskMetrics",
    "Translation",
    "TranslationOptions",
    "decode_jsonl_line",
]
