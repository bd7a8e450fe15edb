"""Pin the public API: a change here is a deliberate, reviewed change."""

from __future__ import annotations

import engine

EXPECTED = {
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
    "Reconnecting",
    "RecognitionOptions",
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
}


def test_public_names_are_pinned() -> None:
    """engine.__all__ is exactly the pinned set, and every name resolves."""
    assert set(engine.__all__) == EXPECTED
    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_secret_never_shows_itself() -> None:
    """repr and str of an API key hide it."""
    key = engine.Secret("sk-very-secret")
    assert "sk-very" not in repr(key)
    assert "sk-very" not in str(key)
    assert "sk-very" not in repr(
        engine.SessionConfig(stream="s", model="m", url="ws://x", api_key=key)
    )
