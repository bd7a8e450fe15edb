"""What a WebSocket shell over this codec raises (mapped to ours at the adapter's edge)."""

from __future__ import annotations

__all__ = ["UpgradeRejected", "WebSocketClosed"]


class WebSocketClosed(Exception):
    """The connection is over: a close frame (``code``), a violation, or the stream's end (1006)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"{code}{': ' + reason if reason else ''}")
        self.code = code
        self.reason = reason


class UpgradeRejected(Exception):
    """The server answered the opening handshake with HTTP ``status``, not 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
