"""Splitting a stream of concatenated JPEGs (ffmpeg's MJPEG pipe) into pictures."""

from __future__ import annotations

from typing import final

__all__ = ["JpegSplitter"]


@final
class JpegSplitter:
    """Splits concatenated JPEGs (an MJPEG pipe) into pictures (pure; no I/O).

    It follows the JPEG structure (marker segments with lengths, then entropy-coded
    data, where ``FF 00`` and restart markers are not boundaries) rather than
    searching for ``FF D9``, so a picture is cut exactly at its EOI even when
    progressive scans follow each other. Bytes before an SOI are skipped.

    Args:
        max_picture_bytes: a picture still incomplete past this size is an error.
    """

    def __init__(self, max_picture_bytes: int) -> None:
        self._max = max_picture_bytes
        self._buf = bytearray()
        self._pos = 0  # next byte to look at
        self._in_picture = False
        self._entropy = False  # inside scan data (after SOS)

    @property
    def pending(self) -> int:
        """Bytes held back (an incomplete picture)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """Add ``data``; return the pictures completed by it, in order.

        Raises:
            ValueError: a picture grew past ``max_picture_bytes``, or a marker
                segment is malformed.
        """
        self._buf += data
        pictures: list[bytes] = []
        while (picture := self._next()) is not None:
            pictures.append(picture)
        if len(self._buf) > self._max:
            raise ValueError(f"a picture is larger than {self._max} bytes (or not a JPEG)")
        return pictures

    def _next(self) -> bytes | None:
        buf = self._buf
        if not self._in_picture:
            start = buf.find(b"\xff\xd8")
            if start < 0:
                del buf[: max(0, len(buf) - 1)]  # keep a last FF: it may start an SOI
                return None
            del buf[:start]
            self._in_picture, self._entropy, self._pos = True, False, 2
        while True:
            pos = self._pos
            if self._entropy:
                ff = buf.find(b"\xff", pos)
                if ff < 0 or ff + 1 >= len(buf):
                    self._pos = max(pos, len(buf)) if ff < 0 else ff
                    return None
                code = buf[ff + 1]
                if code == 0x00 or 0xD0 <= code <= 0xD7:  # stuffed byte or restart marker
                    self._pos = ff + 2
                    continue
                if code == 0xFF:  # fill byte
                    self._pos = ff + 1
                    continue
                self._entropy, self._pos = False, ff
                continue
            if pos + 2 > len(buf):
                return None
            if buf[pos] != 0xFF:
                raise ValueError(f"malformed JPEG: no marker at byte {pos}")
            code = buf[pos + 1]
            if code == 0xFF:
                self._pos = pos + 1
            elif code == 0xD9:  # EOI: the picture is complete
                picture = bytes(buf[: pos + 2])
                del buf[: pos + 2]
                self._in_picture = False
                return picture
            elif code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a length
                self._pos = pos + 2
            else:
                if pos + 4 > len(buf):
                    return None
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                if length < 2:
                    raise ValueError(f"malformed JPEG: segment length {length} at byte {pos}")
                # Past the buffer's end is fine: the next feed continues from there.
                self._pos = pos + 2 + length
                self._entropy = code == 0xDA  # SOS: scan data follows its header
