"""Checking ``input_image_buffer.append`` (livetranslate's video context).

The simulator does not look at the pictures; it checks what the docs state
(DASHSCOPE.md §5.2: JPEG, ≤ 500 KB before base64, ≤ 2 images per second) and
counts the accepted ones. The error codes are guesses, all of type
``invalid_request_error`` (the session goes on): ``invalid_value``
(``param: "image"``) for an image over 500 KB or without the JPEG start
``FF D8 FF``, ``rate_limit_exceeded`` for a third image within one second.
Refused images do not count towards the rate.
"""

from __future__ import annotations

from collections import deque
from typing import Final, NamedTuple

from adapters.dashscope.realtime_messages import MAX_IMAGE_BYTES

__all__ = ["MAX_IMAGES_PER_S", "ImageGate", "ImageRefusal"]

MAX_IMAGES_PER_S: Final = 2
_JPEG_MAGIC: Final = b"\xff\xd8\xff"
_WINDOW_S: Final = 1.0


class ImageRefusal(NamedTuple):
    """The ``error`` fields for a refused image."""

    code: str
    message: str
    param: str = "image"


class ImageGate:
    """Accepts or refuses one session's images; pure (the caller passes the time)."""

    def __init__(self) -> None:
        self._accepted_at: deque[float] = deque()
        self.accepted = 0
        """Images accepted in this session."""

    def check(self, jpeg: bytes, now: float) -> ImageRefusal | None:
        """None if the image is accepted (and counted), else why not."""
        times = self._accepted_at
        while times and now - times[0] >= _WINDOW_S:
            times.popleft()
        if len(jpeg) > MAX_IMAGE_BYTES:
            return ImageRefusal(
                "invalid_value", f"image of {len(jpeg)} bytes exceeds 500 KB ({MAX_IMAGE_BYTES})"
            )
        if not jpeg.startswith(_JPEG_MAGIC):
            return ImageRefusal("invalid_value", "image is not a JPEG")
        if len(times) >= MAX_IMAGES_PER_S:
            return ImageRefusal(
                "rate_limit_exceeded", f"at most {MAX_IMAGES_PER_S} images per second"
            )
        times.append(now)
        self.accepted += 1
        return None
