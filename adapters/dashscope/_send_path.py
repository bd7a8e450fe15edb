"""The sending half of a connection: the awaited lane with its deadline, and the fast lane.

Everything the owner sends (audio, padding, the finish command) goes through one
of two lanes:

* the **awaited lane** (:meth:`SendPath.send_audio`, :meth:`SendPath.send_padding`,
  :meth:`SendPath.finish`): checks the connection's failure, asks the core for the
  frame and sends it under the send deadline (``send_s``: a server that stops
  reading fills the TCP window). A frame the transport takes at once
  (``Transport.send_nowait``) needs no cancel scope: only a frame that has to
  wait pays for the deadline's scope;
* the **fast lane** (:meth:`SendPath.try_send_audio`): synchronous, never a
  checkpoint, no cancel scope. It sends only when the task is started and not
  finishing, nothing failed, and the transport takes the frame now; otherwise it
  returns False having sent nothing, and the caller uses the awaited lane.

A frame the core encoded for the fast lane that the transport refused is kept
(:attr:`SendPath._held`) and sent by the next awaited send of the same audio, so
the wire carries the same frames whichever lane took them (a realtime frame's
event id is part of its encoding).

Cancellation: cancelling an awaited send may leave its frame unsent; the
connection is then unusable for audio (the caller aborts it).

Error handling: the awaited lane raises the connection's recorded failure, a
:class:`~engine.errors.StenoTimeout` when the deadline passed, or what the
transport raised (``Disconnected``); the fast lane never raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import trio

from engine.errors import LocalProtocolError, StenoError, StenoTimeout

if TYPE_CHECKING:
    from ._liveness import Liveness
    from .transport import Transport

__all__ = ["SendPath"]

CommandT = TypeVar("CommandT", contravariant=True)
Cmd = TypeVar("Cmd")


class _Settings(Protocol):
    @property
    def send_s(self) -> float: ...


class _Encoder(Protocol[CommandT]):
    def send(self, command: CommandT) -> bytes | str: ...


class SendPath(Generic[Cmd]):
    """The send lanes of a :class:`~adapters.dashscope.connection.Connection` (its base).

    The connection sets every attribute below in its ``__init__``; only this class
    writes :attr:`audio_samples`, :attr:`first_audio_t` and :attr:`_held`.
    """

    settings: _Settings
    error: StenoError | None
    first_audio_t: float | None
    finish_sent_t: float | None
    audio_samples: int
    _core: _Encoder[Cmd]
    _transport: Transport | None
    _live: Liveness
    _reported: bool
    _over: bool
    _held: tuple[bytes, bytes | str] | None

    def _audio(self, pcm: bytes) -> Cmd:
        raise NotImplementedError

    # ------------------------------------------------------------ fast lane

    @property
    def fast_lane_open(self) -> bool:
        """Started, not finishing, nothing failed, no refused frame waiting (no checkpoint).

        The transport may still refuse a frame: :meth:`try_send_audio` says.
        """
        return (
            self._transport is not None
            and self.error is None
            and self._reported
            and not self._over
            and self.finish_sent_t is None
            and self._held is None
        )

    @property
    def voicing_matters(self) -> bool:
        """Whether the next audio's ``voiced`` changes anything (not a checkpoint).

        False while audio sent before it awaits an answer: the stall watch is
        running, and voiced or not, the frame leaves it as it is. A caller may then
        skip judging the frame and pass ``voiced=True``.
        """
        return self._live.unanswered_since is None

    def try_send_audio(self, pcm: bytes, *, voiced: bool = True, now: float | None = None) -> bool:
        """Send real audio now if it can go without waiting; never a checkpoint, never raises.

        True: sent, with the bookkeeping of :meth:`send_audio` (at trio time ``now``,
        the caller's clock reading, if given). False: nothing was sent (the task is
        not started, finishing, failed, or the transport would have to wait); the
        caller awaits :meth:`send_audio` with the same ``pcm``.
        """
        transport = self._transport
        if transport is None or not self.fast_lane_open:
            return False
        try:
            frame = self._core.send(self._audio(pcm))
        except StenoError:  # the core refuses: the awaited lane raises why
            return False
        try:
            taken = transport.send_nowait(frame)
        except StenoError:  # Disconnected: the reader records it; the awaited lane raises
            taken = False
        if not taken:
            self._held = (pcm, frame)
            return False
        self._sent_audio(pcm, voiced=voiced, now=now)
        return True

    # ---------------------------------------------------------- awaited lane

    async def send_audio(self, pcm: bytes, *, voiced: bool = True) -> None:
        """Send real audio; the stall watch expects an answer to it unless not ``voiced``."""
        held, self._held = self._held, None
        if held is not None and held[0] is pcm:
            if self.error is not None:
                raise self.error
            await self._send_frame(held[1])
        else:
            await self._command(self._audio(pcm))
        self._sent_audio(pcm, voiced=voiced)

    def _sent_audio(self, pcm: bytes, *, voiced: bool, now: float | None = None) -> None:
        if now is None:
            now = trio.current_time()
        if self.first_audio_t is None:
            self.first_audio_t = now
        if voiced:
            self._live.sent_audio(now)
        self.audio_samples += len(pcm) >> 1

    async def send_padding(self, samples: int) -> None:
        """Keep-alive silence (no answer expected)."""
        await self._command(self._audio(bytes(2 * samples)))
        self.audio_samples += samples

    async def _command(self, command: Cmd) -> None:
        self._held = None  # any other frame first: the held audio is encoded anew
        if self.error is not None:
            raise self.error
        try:
            frame = self._core.send(command)
        except LocalProtocolError:
            if self.error is not None:  # the reader saw why the core refuses
                raise self.error from None
            raise
        await self._send_frame(frame)

    async def _send_frame(self, frame: bytes | str) -> None:
        transport = self._transport
        assert transport is not None
        if transport.send_nowait(frame):
            await trio.lowlevel.checkpoint()  # still a checkpoint, as an awaited send is
            return
        # A server that stops reading fills the TCP window and blocks us: bound it.
        with trio.move_on_after(self.settings.send_s) as scope:
            await transport.send(frame)
        if scope.cancelled_caught:
            raise StenoTimeout(
                f"sending stalled for {self.settings.send_s:g} s "
                "(the connection is half-open or the server stopped reading)"
            )
