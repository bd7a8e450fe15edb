"""The messages producers send into a stream, ahead of the resampler.

Producers (the file capture actor, the microphone, the daemon's sources, the
embedding API) send :class:`RawBlock` s of audio at the source's own rate and
:class:`Skip` s for source time without audio; the resampler turns both into
:class:`~engine.events.AudioFrame` s and timeline gaps. They live here, apart from
any actor, so every producer and consumer imports them from one leaf module.
"""

from __future__ import annotations

import msgspec
import numpy as np
from numpy.typing import NDArray  # msgspec resolves Struct annotations at runtime

__all__ = ["RawBlock", "Skip"]


class RawBlock(msgspec.Struct, frozen=True, eq=False):
    """Mono float32 samples at the source's own ``rate`` (a read-only array).

    Equality is identity (``eq=False``): comparing arrays elementwise is the
    caller's business.
    """

    samples: NDArray[np.float32]
    rate: int


class Skip(msgspec.Struct, frozen=True):
    """Source time that passed without audio: ``samples`` at ``rate`` (a pause, a device gap).

    It travels in order with the :class:`RawBlock` s. The resampler ends the run of
    audio before it and moves the stream's global timeline on by the same time, so
    later audio keeps its wall-clock place; the span is reported as an ``AudioGap``
    (``lost``: audio that existed but was not captured) or an ``AudioSkipped`` (time
    left out on purpose), with ``reason``.
    """

    samples: int
    rate: int
    reason: str = "skipped"
    lost: bool = False

    def __post_init__(self) -> None:
        if self.samples < 0 or self.rate <= 0:
            raise ValueError(f"a skip needs samples >= 0 and a positive rate, got {self}")
