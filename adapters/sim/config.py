"""Configuration of the DashScope-compatible simulator.

Every timer is a plain number of seconds on trio's clock, so tests scale time
with ``MockClock(autojump_threshold=0)`` instead of shrinking the values; the
defaults are the real service's (DASHSCOPE.md §2.5).
"""

from __future__ import annotations

import msgspec

__all__ = ["SimConfig"]


class SimConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the simulator listens, authenticates and times out.

    Attributes:
        host: interface to bind (TCP serving only).
        port: TCP port; 0 lets the kernel choose one.
        api_keys: the accepted keys; ``None`` accepts any non-empty key.
        idle_timeout_s: no frame at all for this long while a task streams →
            ``task-failed`` ``CLIENT_ERROR`` and close.
        silence_timeout_s: only silent audio for this long, without
            ``heartbeat: true`` → the connection is dropped.
        heartbeat_interval_s: with ``heartbeat: true``, one heartbeat result per
            this much silence.
        silence_rms: a frame whose RMS (int16 units) is below this is silent.
        max_audio_queue_s: audio received but not yet recognized, in seconds; a
            client that gets further ahead of the recognizer fails its task with
            ``Throttling`` (the reader never blocks, so pings stay answered).
        partial_interval_ms: at most one partial result per sentence per this
            much audio (finals are never held back); 0 sends every partial.
        feed_chunk_ms: the most audio handed to the recognizer in one call.
        feed_batch_ms: the least audio handed to the recognizer in one call
            (until ``finish-task``): results come up to this much later, and a
            load test's frames cost the simulator less (one recognizer call and
            one task wake per batch, not per frame); 0 feeds whatever arrived.
        connect_timeout_s: the client must finish the HTTP upgrade within this.
        disconnect_timeout_s: how long a close handshake may take.
        max_message_bytes: the largest WebSocket message accepted (1009 above).
        gummy_chat_auto_finish: gummy-chat sends ``task-finished`` on its own
            right after its sentence end, without waiting for ``finish-task``
            (undocumented either way, DASHSCOPE.md §13.1; the SDK copes with both).
        gummy_chat_max_audio_s: a gummy-chat task's audio cap; reaching it
            without a sentence end ends the sentence there (§2.5, §8).
        reuse_port: bind with ``SO_REUSEPORT``, so several simulator processes
            share one port and the kernel spreads connections over them
            (``steno simulate --processes N``).
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_keys: list[str] | None = None
    idle_timeout_s: float = 23.0
    silence_timeout_s: float = 60.0
    heartbeat_interval_s: float = 10.0
    silence_rms: float = 64.0
    max_audio_queue_s: float = 600.0
    partial_interval_ms: int = 200
    feed_chunk_ms: int = 400
    feed_batch_ms: int = 0
    connect_timeout_s: float = 60.0
    disconnect_timeout_s: float = 10.0
    max_message_bytes: int = 1 << 22
    gummy_chat_auto_finish: bool = False
    gummy_chat_max_audio_s: float = 60.0
    reuse_port: bool = False

    def __post_init__(self) -> None:
        for name in (
            "idle_timeout_s",
            "silence_timeout_s",
            "heartbeat_interval_s",
            "max_audio_queue_s",
            "connect_timeout_s",
            "disconnect_timeout_s",
            "gummy_chat_max_audio_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be 0–65535")
        if self.partial_interval_ms < 0 or self.feed_chunk_ms <= 0:
            raise ValueError("partial_interval_ms must be ≥ 0 and feed_chunk_ms > 0")
        if not 0 <= self.feed_batch_ms <= self.feed_chunk_ms:
            raise ValueError("feed_batch_ms must be in 0–feed_chunk_ms")
        if self.api_keys is not None and not all(self.api_keys):
            raise ValueError("api_keys must not contain empty keys")
