"""The messages producers send into a stream, ahead of the resampler.

Producers (the file capture actor, the microphone, the daemon's sources, the
embedding API) send audio at the source's own rate, as :class:`PcmBlock` s (mono
int16: files and int16 pushes, no float round trip) or :class:`RawBlock` s (mono
float32: devices, float pushes), and :class:`Skip` s for source time without audio;
the resampler turns them into :class:`~engine.events.AudioFrame` s and timeline
gaps. Producers write against :class:`AudioOutbox`, the producer side of a memory
channel, so the resampler's synchronous inlet and a plain channel both fit. They
live here, apart from any actor, so every producer and consumer imports them from
one leaf module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Self, TypeVar

import msgspec
import numpy as np
from numpy.typing import NDArray  # msgspec resolves Struct annotations at runtime

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["AudioOutbox", "PcmBlock", "RawBlock", "Skip"]

_T_contra = TypeVar("_T_contra", contravariant=True)


class AudioOutbox(Protocol[_T_contra]):
    """Where a producer sends its audio: the producer API of ``trio.MemorySendChannel``.

    ``await send(item)`` (blocks while downstream is behind), ``close()`` (not a
    checkpoint), ``await aclose()``, and ``async with``. Satisfied by a memory
    channel and by :class:`engine.actors.resampler.ResamplerInlet`.
    """

    async def send(self, value: _T_contra, /) -> None: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class PcmBlock(msgspec.Struct, frozen=True, eq=False):
    """Mono int16 samples at the source's own ``rate`` (a read-only array).

    The array may be a view into the producer's read-ahead buffer: nobody writes
    it. At the stream's rate its bytes become frames as they are; otherwise they
    are resampled. Equality is identity (``eq=False``).
    """

    samples: NDArray[np.int16]
    rate: int


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
