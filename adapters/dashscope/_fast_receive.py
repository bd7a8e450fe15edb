"""The receiving half of the fast WebSocket client transport (``_fast_transport.py``).

Two ways to take the next message, never both at once:

* :meth:`Receiving.receive`, awaited by the one task that reads (the
  connection's reader): reads the pipe, feeds the codec, answers pings, records
  pongs for ``ping()``, echoes a close, and returns the next message;
* :meth:`Receiving.receive_nowait`, a read hub's synchronous step for a parked
  reader (``_read_hub.py``): reads the pipe at most once, returns a message or
  records a pong; anything that needs an await (a ping to answer, a close to
  echo, a violation to report) is kept, and the next :meth:`Receiving.receive`
  takes it first. So nothing read is lost, whichever way takes it.

Errors: the transport's (``Disconnected``, mapped by ``_wire_errors.py``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from adapters.websocket import Close, ConnectionLost, Message, Ping, Pong, State, Violation
from engine.errors import Disconnected

from ._dial import DISCONNECT_TIMEOUT_S
from ._read_hub import MustAwait

if TYPE_CHECKING:
    from adapters.websocket import WebSocketCore, WebSocketEvent

    from ._pipes import Pipe

__all__ = ["CLOSE_ABNORMAL", "Receiving"]

CLOSE_ABNORMAL: Final = 1006


class Receiving:
    """The fast transport's receiving half (its base); the transport sets the attributes."""

    _pipe: Pipe
    _core: WebSocketCore
    _pong: trio.Event
    _end: tuple[str, int | None] | None
    _reading: bool
    _kept: WebSocketEvent | None  # taken by receive_nowait, for receive

    async def _write(self, data: bytes, *, closing: bool = False) -> None:
        raise NotImplementedError

    def _fail(self, message: str, code: int | None = None) -> None:
        raise NotImplementedError

    def _gone(self) -> Disconnected:
        raise NotImplementedError

    def _fail_from(self, exc: Exception) -> NoReturn:
        raise NotImplementedError

    @property
    def hub_fd(self) -> int | None:
        """The socket a read hub may wait for (``_read_hub.py``); None over a trio stream."""
        return self._pipe.fileno()

    def receive_nowait(self, *, read: bool = True) -> bytes | str:
        """The next message if it can be had without waiting; not a checkpoint.

        Reads the pipe at most once (``read``), records pongs for :meth:`ping`.
        Anything else that needs an await (a ping to answer, a close to echo, a
        violation to report) is kept for :meth:`receive`, which takes it first.
        For a read hub's step, while no task is in :meth:`receive`.

        Raises:
            trio.WouldBlock: no whole message now.
            MustAwait: ``await receive()`` must take the next step.
            Disconnected: the connection is over.
        """
        if self._reading:
            raise RuntimeError("another task is already receiving on this transport")
        core = self._core
        while True:
            if self._end is not None:
                raise self._gone()
            if self._kept is not None:
                raise MustAwait
            event = core.next_event()
            if event is None:
                if core.state is not State.OPEN and core.state is not State.CLOSE_SENT:
                    self._fail("the connection is over", CLOSE_ABNORMAL)
                    continue
                if not read:
                    raise trio.WouldBlock
                read = False
                try:
                    data = self._pipe.read_nowait()
                except trio.WouldBlock:
                    raise
                except Exception as exc:
                    self._fail_from(exc)
                core.receive_data(data or None)
                continue
            match event:
                case Message(message):
                    return message
                case Pong():
                    self._ponged()
                case ConnectionLost():
                    self._fail("the connection was lost without a close frame", CLOSE_ABNORMAL)
                case _:
                    self._kept = event
                    raise MustAwait

    async def receive(self) -> bytes | str:
        """The next message; ``Disconnected`` (with the close code) once the peer closed.

        Answers pings on the way and records pongs for :meth:`ping`. One task at
        a time may receive.
        """
        if self._reading:
            raise RuntimeError("another task is already receiving on this transport")
        self._reading = True
        read = False
        try:
            await trio.lowlevel.checkpoint_if_cancelled()  # before anything is taken
            while True:
                if self._end is not None:
                    await trio.lowlevel.checkpoint()
                    raise self._gone()
                event = self._kept  # what receive_nowait left for an await goes first
                if event is None:
                    event = self._core.next_event()
                else:
                    self._kept = None
                if event is None:
                    if (
                        self._core.state is not State.OPEN
                        and self._core.state is not State.CLOSE_SENT
                    ):
                        # The core reads no more (a close or a violation was reported).
                        self._fail("the connection is over", CLOSE_ABNORMAL)
                        continue
                    try:
                        data = await self._pipe.read()
                    except trio.Cancelled:
                        raise
                    except Exception as exc:
                        self._fail_from(exc)
                    read = True
                    self._core.receive_data(data or None)
                    continue
                match event:
                    case Message(message):
                        if not read:  # a checkpoint all the same, and one that cannot lose it
                            await trio.lowlevel.cancel_shielded_checkpoint()
                        return message
                    case Ping(payload):
                        with contextlib.suppress(Disconnected):
                            await self._write(self._core.pong(payload))
                    case Pong():
                        self._ponged()
                    case Close(code, reason):
                        # Recorded first: if the echo is cancelled, the end is still known.
                        self._fail(_closed_message(code, reason), code)
                        if self._core.state is State.CLOSE_RECEIVED:
                            await self._echo_close(code)
                    case Violation(code, reason):
                        self._fail(f"the server broke the protocol: {reason}", code)
                        if self._core.state is State.FAILED:
                            await self._echo_close(code)
                    case ConnectionLost():
                        self._fail("the connection was lost without a close frame", CLOSE_ABNORMAL)
        finally:
            self._reading = False

    def _ponged(self) -> None:
        self._pong.set()  # wakes every ping() waiting on this one
        self._pong = trio.Event()

    async def _echo_close(self, code: int) -> None:
        with trio.move_on_after(DISCONNECT_TIMEOUT_S), contextlib.suppress(Disconnected):
            await self._write(self._core.close(code if code != 1005 else 1000), closing=True)


def _closed_message(code: int, reason: str) -> str:
    return f"the server closed the connection ({code}{': ' + reason if reason else ''})"
