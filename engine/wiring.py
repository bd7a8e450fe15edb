"""Every channel edge of a stream, with its bound and overflow policy, as data (house rule R7).

``block`` means the producer waits (backpressure): right for file sources, which
can be paced, and for events, which must never be dropped. Live sources never
block on their first edge: their capture actor owns a drop-oldest hand-off that
counts and reports overflow as an ``AudioGap``.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = ["EDGES", "Edge"]


class Edge(msgspec.Struct, frozen=True):
    size: int
    policy: Literal["block", "drop_oldest"]
    why: str


EDGES: Final[dict[str, Edge]] = {
    "push->resampler": Edge(
        32, "block", "an embedding host's pushes: bounded, and push() waits when the engine lags"
    ),
    "resampler->session": Edge(
        16, "block", "the session buffers in its replay buffer; this only absorbs jitter"
    ),
    "session->renderer": Edge(64, "block", "events are never dropped; the renderer is fast"),
    "renderer->console": Edge(256, "block", "one shared console for every stream of a run"),
}
