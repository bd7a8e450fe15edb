"""``source = { kind = … }``: where a daemon stream's audio comes from.

One tagged table per kind (``file``, ``url``, ``stdin``, ``mic``), decoded as
the :data:`SourceSpec` union; ``engine.daemon.sources`` opens them.
"""

from __future__ import annotations

import urllib.parse
from typing import Final

from engine.daemon.config_base import StrictTable, check_rate

__all__ = ["FileSource", "MicSource", "SourceSpec", "StdinSource", "UrlSource"]

_URL_SCHEMES: Final = frozenset(
    {"http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp"}
)


class FileSource(StrictTable, frozen=True, tag="file", tag_field="kind"):
    """An audio file played in real time (``speed`` times), once or in a ``loop``."""

    path: str
    loop: bool = False
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.speed <= 100:
            raise ValueError("speed must be in (0, 100]")


class UrlSource(StrictTable, frozen=True, tag="url", tag_field="kind"):
    """A network stream read by ffmpeg (http/https/rtsp/rtmp/srt/udp…).

    ``realtime`` paces an on-demand file (ffmpeg ``-re``); a live stream paces itself.
    A stream that ends or breaks is reopened (``reconnect``) with the stream's backoff.
    """

    url: str
    realtime: bool = False
    rate: int = 16000
    timeout_s: float = 10.0
    reconnect: bool = True

    def __post_init__(self) -> None:
        scheme = urllib.parse.urlsplit(self.url).scheme.lower()
        if scheme not in _URL_SCHEMES:
            raise ValueError(
                f"url scheme {scheme or '(none)'!r} is not a network stream; fix: use one of "
                f"{', '.join(sorted(_URL_SCHEMES))}, or kind = 'file' for a local file"
            )
        check_rate(self.rate)
        if self.timeout_s <= 0:
            raise ValueError("timeout-s must be positive")


class StdinSource(StrictTable, frozen=True, tag="stdin", tag_field="kind"):
    """Raw interleaved int16 little-endian PCM on the daemon's standard input."""

    rate: int = 16000
    channels: int = 1

    def __post_init__(self) -> None:
        check_rate(self.rate)
        if not 1 <= self.channels <= 32:
            raise ValueError("channels must be 1–32")


class MicSource(StrictTable, frozen=True, tag="mic", tag_field="kind"):
    """A capture device (sounddevice); ``device`` is a name or index, None the default.

    Captured like ``steno listen`` does: at the device's native rate (resampled with
    soxr; ``rate`` is accepted for older files and ignored, with a warning), with
    at most ``channels`` channels (downmixed), and reopened with backoff when it is
    unplugged; the outage is an ``AudioGap(device)`` on the stream's timeline.
    """

    device: str | int | None = None
    rate: int | None = None
    channels: int = 1

    def __post_init__(self) -> None:
        if self.rate is not None:
            check_rate(self.rate)
        if not 1 <= self.channels <= 32:
            raise ValueError("channels must be 1–32")


SourceSpec = FileSource | UrlSource | StdinSource | MicSource
