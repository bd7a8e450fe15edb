"""One server task on one connection: a task that reads and watches liveness, bounded send.

Theory of operation
-------------------
A :class:`Connection` is owned by a background task (:meth:`Connection.run`,
started with ``nursery.start``) that dials, opens the server task (reading the
socket itself until the server started it) and then reports itself started.
From then on its owner's pump sends audio through it (``_send_path.py``: an
awaited lane under the send deadline, and a synchronous fast lane that sends
only what the transport takes at once) while the connection's own task is the
**reader** (``_receive_path.py``), until the task finished or the connection
died; then it waits to be released and closes. :meth:`Connection.release`
stops a reader still reading (a cancel of the connection's nursery), and the
close handshake follows. No other task of its own runs but a ping's:

* the reader feeds every received frame to the sans-IO core and interprets the
  core's events *at once* (no checkpoint between receiving a frame and knowing what it
  means, so a send never races a failure it cannot see), and hands the
  recognition results to :attr:`results` (``_results.py``): synchronously to
  the consumer's armed taker when the consumer is idle, else onto a bounded
  queue (``RESULTS_BUFFER``, policy *block*: a consumer that lags holds the
  reader, which holds the socket); the queue closes when the task finished or
  died;
* it is also the **liveness watch** (``_liveness.py``): every wait of the reader
  has the watch's next deadline; when it passes, the reader declares a stall
  (audio went out but no server frame came back for ``stall_s``) or pings. A
  ping waits for its pong under the pong deadline (a half-open socket never
  answers) in a short task of its own, since the pong arrives through the
  reader's receive; it lives one round trip per ``ping_interval_s``;
* on a transport that can join the run's **read hub** (``_read_hub.py``: the
  fast transport over a socket, TLS included), the reader's task does not wait
  for each frame: it parks under the watch's deadline while the hub's one task
  runs the reader's step for every readable socket, and wakes only for what must
  await (a full results queue, a failure, the end, a ping or close to answer).
  The same rules hold, in the same order.

Nothing calls back up: the connection's user (the session) pulls :attr:`results`
(or arms their taker), reads :attr:`error`, and waits on :attr:`ended`.

Channels: writes and closes the reader's end of :attr:`results`.

Cancellation: cancelling :meth:`run` drops the connection without the close
handshake; :meth:`release` closes it gracefully.

Error handling: a failure before ``task_status.started`` raises from
``nursery.start``. After it, the first failure is recorded on :attr:`error`
(and ``close_reason``), :attr:`dead` and :attr:`ended` are set, the results
channel closes after the results that preceded the failure, and every later
send raises that error. Only ``engine.errors`` types escape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

import msgspec
import structlog
import trio

from engine._util import drop_tracebacks, unwrap_single_group
from engine.errors import AuthError, FinishTimeout, StenoError, StenoTimeout

from ._liveness import Liveness
from ._receive_path import ReceivePath
from ._results import Results, open_results
from ._send_path import SendPath
from .transport import Dialer, Transport, request_headers

if TYPE_CHECKING:
    import enum
    from collections.abc import Iterator

    from engine.results import Result

__all__ = ["RESULTS_BUFFER", "ClientCore", "Connection", "LinkSettings", "finish_quietly"]

log = structlog.get_logger("steno.session")

RESULTS_BUFFER: Final = 16
"""Results the reader may queue ahead of its consumer (then it waits: backpressure)."""

CommandT = TypeVar("CommandT", contravariant=True)
EventT = TypeVar("EventT", covariant=True)


class ClientCore(Protocol[CommandT, EventT]):
    """What a connection needs of a client-role sans-IO core (inference and realtime both)."""

    @property
    def state(self) -> enum.Enum: ...

    def receive_data(self, data: bytes | str | None) -> None: ...

    def events(self) -> Iterator[EventT]: ...

    def send(self, command: CommandT) -> bytes | str: ...


class LinkSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where to connect and every deadline of one connection (the session's config, flat)."""

    url: str
    api_key: str
    user_agent: str
    rate: int
    connect_s: float = 10.0
    start_s: float = 10.0
    send_s: float = 10.0
    finish_s: float = 10.0
    ping_interval_s: float = 15.0
    pong_timeout_s: float = 10.0
    stall_s: float = 30.0


Cmd = TypeVar("Cmd")
Ev = TypeVar("Ev")


class Connection(SendPath[Cmd], ReceivePath[Ev], Generic[Cmd, Ev]):
    """See the module docstring; a protocol supplies its core and the ``_`` hooks below.

    The send lanes (the awaited one with its deadline, and the synchronous fast lane)
    are :class:`~adapters.dashscope._send_path.SendPath`'s; the reader and the
    liveness watch are :class:`~adapters.dashscope._receive_path.ReceivePath`'s.
    """

    def __init__(
        self, *, settings: LinkSettings, dial: Dialer, task_id: str, core: ClientCore[Cmd, Ev]
    ) -> None:
        self.settings: LinkSettings = settings
        self.task_id = task_id
        self._dial = dial
        self._core: ClientCore[Cmd, Ev] = core
        self._transport: Transport | None = None
        self._results_out, results = open_results(RESULTS_BUFFER)
        self.results: Results = results
        self.started = trio.Event()
        self.finished = trio.Event()
        self.dead = trio.Event()
        self.ended = trio.Event()  # finished or dead: what a finish waits for
        self._release = trio.Event()
        self._reported = False  # task_status.started was called
        self.error: StenoError | None = None
        self._over = False  # the owner task has ended: an error recorded now is only a record
        self.close_reason = "closed"
        self.audio_samples = 0  # task time: every sample sent, real and padding
        self.started_t: float | None = None
        self.first_audio_t: float | None = None
        self.finish_sent_t: float | None = None
        self.finished_t: float | None = None
        self._held: tuple[bytes, bytes | str] | None = None  # see SendPath
        self._live = Liveness(
            stall_s=settings.stall_s,
            ping_interval_s=settings.ping_interval_s,
            pong_timeout_s=settings.pong_timeout_s,
        )
        self._nursery: trio.Nursery | None = None  # the server task's: a ping's
        self._reading = False  # the owner task is in its reader loop (release cancels it)
        self._waiting: trio.CancelScope | None = None  # the reader's wait (see ReceivePath)

    # ------------------------------------------------------------ owner task

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dial, start the task, report started, then serve until released or dead."""
        try:
            with (
                structlog.contextvars.bound_contextvars(task_id=self.task_id),
                unwrap_single_group(),  # a dialer's nursery wraps what its body raised
            ):
                await self._serve(task_status)
        except AuthError as exc:
            if self.settings.api_key:
                raise
            raise _keyless(exc) from exc
        except StenoError as exc:
            if not self._reported:
                raise
            self.abort(exc)
        finally:
            self._over = True
            self._nursery = None
            if self.error is not None:
                # Kept as a record only: its frames (which hold this connection and its
                # transport) must not keep them alive until a full collection (#17).
                drop_tracebacks(self.error)
            self._results_out.close()
            self.dead.set()
            self.ended.set()

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        s = self.settings
        headers = request_headers(s.api_key, s.user_agent)
        async with self._dial(s.url, headers, connect_timeout=s.connect_s) as transport:
            self._transport = transport
            try:
                with unwrap_single_group():
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        await self._start()  # reads the socket itself until started
                        self._live.start(trio.current_time())
                        self._start_helpers(nursery)
                        self._reported = True
                        task_status.started()
                        if not self._release.is_set():
                            self._reading = True
                            await self._reader()  # this task is the reader from now on
                            self._reading = False
                        await self._release.wait()
                        nursery.cancel_scope.cancel()
            except StenoError as exc:
                if self._reported:
                    self.abort(exc)  # stop the sends before the socket closes under them
                raise
            if self.error is None:  # released; an aborted connection is dead: no handshake
                await transport.aclose()

    def release(self) -> None:
        """The owner is done with the task: close the connection gracefully (not a checkpoint)."""
        self._release.set()
        if self._reading and self._nursery is not None:
            self._nursery.cancel_scope.cancel()  # stop reading; the close handshake follows

    def abort(self, exc: StenoError) -> None:
        """Record the first failure (unless the task finished) and close the connection."""
        self._fail(exc)
        self.release()

    def _fail(self, exc: StenoError) -> bool:
        """Record ``exc`` if it is the first failure; True if it was.

        A helper task raises its failure only if it was the first: the reader and a
        ping can fail in the same scheduler tick (a close frame and a pong deadline at
        once), and two raised errors would leave the nursery as a group of two; a
        connection's death is ONE error to its owner.
        """
        first = self.error is None and not self.finished.is_set()
        if first:
            self.error = exc
            log.info("session.conversation_died", error=str(exc), kind=type(exc).__name__)
            if self._over:
                drop_tracebacks(exc)  # see run(); the caller has handled it
        self.dead.set()
        self.ended.set()
        return first

    # ------------------------------------------------------- protocol hooks

    def _start_helpers(self, nursery: trio.Nursery) -> None:
        """Start protocol-specific tasks beside the reader once the task started."""

    async def _start(self) -> None:
        """Open the server task; return once the server has started it."""
        raise NotImplementedError

    def _finish_command(self) -> Cmd:
        raise NotImplementedError

    def _interpret(self, event: Ev) -> list[Result]:
        """The results an event carries; a failure raises (no checkpoint allowed)."""
        raise NotImplementedError

    async def _wait_started(self) -> None:
        with trio.move_on_after(self.settings.start_s):
            await self._read_until(self.started)
        if self.error is not None:
            raise self.error
        if not self.started.is_set():
            raise StenoTimeout(
                f"the server did not start the task within {self.settings.start_s:g} s"
            )
        self.started_t = trio.current_time()
        self._live.heard(self.started_t)

    def _mark_finished(self) -> None:
        self.finished_t = trio.current_time()
        self.close_reason = "finished"
        self.finished.set()
        self.ended.set()

    # --------------------------------------------------------------- sending

    async def finish(self) -> None:
        """Send the finish command and wait for the task's end under the finish deadline.

        Raises:
            FinishTimeout: the deadline passed.
            StenoError: the connection's failure.
        """
        timeout = self.settings.finish_s
        self.finish_sent_t = sent = trio.current_time()
        self._live.finishing()
        await self._command(self._finish_command())
        cap = sent + timeout + self.audio_samples / self.settings.rate
        await _until_ended_or_quiet(self.ended, self._live, sent, timeout, cap)
        if self.error is not None:
            raise self.error
        if not self.finished.is_set():
            self.close_reason = "finish-deadline"
            raise FinishTimeout(f"the server did not finish the task within {timeout:g} s")


def _keyless(exc: AuthError) -> AuthError:
    """A refusal of a connection that sent no key says so (not "rejected the key")."""
    return AuthError(
        "the service requires an API key and none is set; fix: set DASHSCOPE_API_KEY",
        status=exc.status,
    )


async def finish_quietly(connection: Connection[Any, Any]) -> None:
    """Finish a task nobody reads any more (a rotation's old task); failures only get logged.

    Its results are discarded (the channel closes when the connection does).
    """
    settings = connection.settings
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.results.discard)
        try:
            with trio.move_on_after(settings.finish_s + settings.send_s):
                await connection.finish()
        except StenoError as exc:
            log.info("session.retired_finish_failed", error=str(exc))
        finally:
            connection.release()


async def _until_ended_or_quiet(
    ended: trio.Event, live: Liveness, sent: float, quiet_s: float, cap: float
) -> None:
    """Wait for ``ended`` until the server has been quiet for ``quiet_s``, or until ``cap``.

    The deadline measures the server's silence: results still arriving for a backlog
    (audio sent faster than real time) extend it, up to the task's audio duration on
    top (``cap``), since no service needs longer than real time.
    """
    while not ended.is_set():
        quiet_until = max(sent, live.last_heard_t) + quiet_s
        with trio.move_on_at(min(quiet_until, cap)):
            await ended.wait()
        now = trio.current_time()
        if now >= cap or live.last_heard_t + quiet_s <= now:
            return
