"""RFC 6455 masking: XOR a payload with a 4-byte key, repeated (section 5.3).

The C routine of the ``websockets`` package (``websockets.speedups.apply_mask``)
is used when it is importable: ~1 µs for a 3,200-byte audio frame. Without it
(a platform with no wheel) a pure-Python XOR over one big integer does the same
work in a few µs; numpy's XOR was measured too and loses to both on frames this
small (see ``tools/bench/transport.py``). Both return new ``bytes`` and accept
any bytes-like payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MASK_IMPLEMENTATION", "apply_mask", "apply_mask_python"]


def apply_mask_python(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """``data`` XOR ``mask`` repeated, in pure Python (one big-integer XOR, no loop)."""
    n = len(data)
    if n == 0:
        return b""
    key = (mask * ((n + 3) // 4))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _choose() -> tuple[Callable[[bytes | bytearray | memoryview, bytes], bytes], str]:
    try:
        from websockets.speedups import (  # type: ignore[import-not-found,unused-ignore]
            apply_mask as c_apply_mask,
        )
    except ImportError:  # pragma: no cover - depends on the platform's wheel
        return apply_mask_python, "python"
    return c_apply_mask, "websockets.speedups"


_CHOSEN: Final = _choose()
apply_mask: Final = _CHOSEN[0]
"""The fastest masking routine importable here."""
MASK_IMPLEMENTATION: Final = _CHOSEN[1]
"""Its name, for the bench's report."""
