"""The mic actor's helpers for crossing between PortAudio's threads and trio.

* The bounded hand-off queue and exact timeline positions (pure: no trio, no
  clock). A position is seconds since the stream began, as a
  :class:`~fractions.Fraction` (frames / rate, summed over device sessions of
  possibly different rates), so it is exact; it becomes a global sample index
  only when an event is made (:func:`to_global`).
* :class:`BoundedCalls`: blocking PortAudio calls in worker threads that can
  never hang the actor (a call that does not return in time is abandoned).
"""

from __future__ import annotations

import threading
from collections import deque
from fractions import Fraction
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, final

import numpy as np
import trio

from adapters.audio.backend import DeviceFailed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from numpy.typing import NDArray

__all__ = [
    "Audio",
    "BoundedCalls",
    "Handoff",
    "Hole",
    "in_thread",
    "outage_hole",
    "silence_blocks",
    "to_global",
]

T = TypeVar("T")


class Audio(NamedTuple):
    start: Fraction  # seconds since the stream began
    samples: NDArray[np.float32]
    rate: int

    @property
    def end(self) -> Fraction:
        return self.start + Fraction(len(self.samples), self.rate)


class Hole(NamedTuple):
    start: Fraction
    end: Fraction
    reason: str  # an AudioGap reason: "capture-overflow" or "device"
    rate: int

    @property
    def frames(self) -> int:
        return round((self.end - self.start) * self.rate)


def to_global(position: Fraction, rate: int) -> int:
    """A position (seconds) as a global sample index at ``rate``."""
    return round(position * rate)


def outage_hole(position: Fraction, t_last: float, t_restart: float, rate: int) -> Hole:
    """The silence for a device outage from ``t_last`` to ``t_restart`` (trio clock), in
    whole frames at the new stream's ``rate``, starting at ``position``."""
    frames = max(0, round((t_restart - t_last) * rate))
    return Hole(position, position + Fraction(frames, rate), "device", rate)


@final
class Handoff:
    """The bounded FIFO between the PortAudio callback and the pump (pure; one thread).

    Holds :class:`Audio` and :class:`Hole` items in timeline order. Past ``max_s``
    seconds of audio, the oldest block becomes a ``capture-overflow`` hole (adjacent
    holes merge), so the queue stays bounded and order and positions stay exact.
    """

    def __init__(self, max_s: Fraction) -> None:
        self._items: deque[Audio | Hole] = deque()
        self._max_s = max_s
        self._audio_s = Fraction(0)
        self._audio_count = 0

    def __len__(self) -> int:
        return len(self._items)

    def put_audio(self, item: Audio) -> tuple[int, int]:
        """Queue a block; return the (blocks, frames) dropped to make room."""
        self._items.append(item)
        self._audio_s += item.end - item.start
        self._audio_count += 1
        blocks = frames = 0
        while self._audio_s > self._max_s and self._audio_count > 1:
            i = next(i for i, x in enumerate(self._items) if isinstance(x, Audio))
            old = self._items[i]
            assert isinstance(old, Audio)
            self._audio_s -= old.end - old.start
            self._audio_count -= 1
            blocks, frames = blocks + 1, frames + len(old.samples)
            prev = self._items[i - 1] if i else None
            if (
                isinstance(prev, Hole)
                and prev.reason == "capture-overflow"
                and (prev.end, prev.rate) == (old.start, old.rate)
            ):
                self._items[i - 1] = prev._replace(end=old.end)
                del self._items[i]
            else:
                self._items[i] = Hole(old.start, old.end, "capture-overflow", old.rate)
        return blocks, frames

    def put_hole(self, hole: Hole) -> None:
        self._items.append(hole)

    def pop(self) -> Audio | Hole | None:
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, Audio):
            self._audio_s -= item.end - item.start
            self._audio_count -= 1
        return item


def silence_blocks(frames: int, chunk: int) -> Iterator[NDArray[np.float32]]:
    """``frames`` of read-only float32 silence, in blocks of at most ``chunk``."""
    zeros = np.zeros(chunk, np.float32)
    zeros.flags.writeable = False
    for at in range(0, frames, chunk):
        yield zeros[: min(chunk, frames - at)]


async def in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a worker thread; a cancelled caller abandons it (it runs on)."""
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


@final
class BoundedCalls:
    """Blocking PortAudio calls that can never hang their caller.

    A dead device can leave PortAudio blocked inside a call (a stream that never
    closes). Each call gets ``timeout`` seconds; one that has not returned by then is
    abandoned (its thread finishes on its own, and a late result is passed to
    ``discard``, e.g. to close a stream that opened too late) and the call raises
    :class:`DeviceFailed`. :attr:`stuck` names the abandoned calls still running;
    with ``max_stuck`` of them, further calls raise at once, so stuck threads stay
    bounded. (A stuck close of a dead stream need not stop a new stream opening on
    another connection, but re-initialising PortAudio would wait for it.)

    Args:
        run: runs a function in a worker thread (abandoned when cancelled).
        timeout: seconds a call may take.
        max_stuck: abandoned calls allowed to run on at once.
    """

    def __init__(
        self,
        run: Callable[[Callable[[], Any]], Awaitable[Any]],
        timeout: float,
        *,
        max_stuck: int = 2,
    ) -> None:
        self._run = run
        self._timeout = timeout
        self._max_stuck = max_stuck
        self._token = trio.lowlevel.current_trio_token()
        self.stuck: list[str] = []  # abandoned calls still running

    async def __call__(
        self, fn: Callable[[], T], what: str, discard: Callable[[T], None] | None = None
    ) -> T:
        if len(self.stuck) >= self._max_stuck:
            raise DeviceFailed(
                f"PortAudio is still blocked in {', '.join(self.stuck)}; not trying {what}"
            )
        lock = threading.Lock()
        state: dict[str, Any] = {"done": False, "abandoned": False, "result": None}

        def unstick() -> None:
            self.stuck.remove(what)

        def wrapped() -> T:
            result: T | None = None
            try:
                result = fn()
                return result
            finally:
                with lock:
                    state["done"], state["result"] = True, result
                    abandoned = state["abandoned"]
                if abandoned:
                    if result is not None and discard is not None:
                        discard(result)
                    try:
                        self._token.run_sync_soon(unstick)
                    except trio.RunFinishedError:
                        pass

        def abandon() -> tuple[bool, T | None]:
            with lock:
                if not state["done"]:
                    state["abandoned"] = True
                    self.stuck.append(what)
                return state["done"], state["result"]

        try:
            with trio.move_on_after(self._timeout):
                result: T = await self._run(wrapped)
                return result
        except BaseException:  # fn failed, or we are cancelled from outside
            finished, late = abandon()
            if finished and late is not None and discard is not None:
                discard(late)  # it returned after all, but nobody will use it
            raise
        finished, late = abandon()  # timed out
        if finished and late is not None:  # it returned just as time ran out
            return late
        if finished:
            raise DeviceFailed(f"PortAudio failed in {what}")
        raise DeviceFailed(f"PortAudio did not return from {what} within {self._timeout:g} s")
