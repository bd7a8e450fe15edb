"""Running fault plans: which plan a connection gets, and applying it.

:class:`FaultInjector` (one per server) picks each connection's plan — the one
the upgrade request asks for (``X-Steno-Fault`` / ``steno_fault``), else the
server's plan or plan factory — and counts connections for the plans'
:class:`~.faults.Connections` selectors. :class:`PlanRunner` (one per
connection) wraps the byte stream, answers the upgrade (slow accept, reject),
and implements :class:`~.context.ConnectionFaults` for the handlers: run-task
rejections, frame counting, swallowed or delayed frames and the timers.

A hand-written :class:`~.context.FaultHooks` object given to the server is
consulted too, before the plan.
"""

from __future__ import annotations

import math
import random
import urllib.parse
from typing import TYPE_CHECKING, Final, NamedTuple, final

import msgspec
import structlog
import trio

from ._faultstream import FaultStream
from .context import FaultHooks, FrameTap
from .faults import (
    FAULT_HEADER,
    FAULT_QUERY,
    THROTTLE_CODE,
    THROTTLE_MESSAGE,
    DelayEvents,
    Drop,
    FailTask,
    Fault,
    FaultPlan,
    FaultSpecError,
    HalfOpen,
    NoTaskFinished,
    RejectUpgrade,
    SlowAccept,
    Throttle,
    fault_to_spec,
    parse_fault_spec,
)
from .validation import Rejection

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .context import FaultControl
    from .faults import FaultSource
    from .validation import TaskSpec

__all__ = ["FaultInjector", "PlanRunner", "Refusal", "requested_plan"]

_log = structlog.get_logger()

_OUTBOX: Final = 256  # delayed frames waiting; a full outbox blocks the sender (backpressure)
_HEADER: Final = FAULT_HEADER.lower().encode()


class Refusal(NamedTuple):
    """An HTTP refusal of the upgrade; ``message`` replaces the status's default text."""

    status: int
    message: str | None = None


def requested_plan(path: str, headers: Sequence[tuple[bytes, bytes]]) -> FaultPlan | None:
    """The plan an upgrade request asks for: header first, then query; None if neither.

    Raises:
        FaultSpecError: the spec does not parse.
    """
    values = [value.decode("latin-1") for name, value in headers if name.lower() == _HEADER]
    if not values:
        query = urllib.parse.urlsplit(path).query
        values = urllib.parse.parse_qs(query).get(FAULT_QUERY, [])
    return parse_fault_spec(";".join(values)) if values else None


@final
class FaultInjector:
    """Chooses each connection's plan; shared by a server's connections.

    Args:
        source: the server's plan, plan factory or hooks; None for only the
            plans clients request.
    """

    def __init__(self, source: FaultSource | None) -> None:
        self.source = source
        self._requests: dict[FaultPlan, int] = {}

    def connection(self, conn_id: int) -> PlanRunner:
        """The fault runner of server connection ``conn_id`` (numbered 1, 2, …)."""
        hooks = self.source if isinstance(self.source, FaultHooks) else None
        return PlanRunner(self, conn_id, hooks)

    def choose(self, conn_id: int, requested: FaultPlan | None) -> tuple[FaultPlan, int] | None:
        """The plan for a connection and its number within that plan's count."""
        if requested is not None:
            n = self._requests[requested] = self._requests.get(requested, 0) + 1
            return requested, n
        source = self.source
        if source is None or isinstance(source, FaultHooks):
            return None
        plan = source if isinstance(source, FaultPlan) else source(conn_id)
        return None if plan is None else (plan, conn_id)


@final
class PlanRunner:
    """One connection's faults: the stream switch, the upgrade and the handler hooks."""

    def __init__(self, injector: FaultInjector, conn_id: int, hooks: FaultHooks | None) -> None:
        self._injector = injector
        self._conn_id = conn_id
        self._hooks = hooks
        self._tap: FrameTap | None = hooks if isinstance(hooks, FrameTap) else None
        self.plan: FaultPlan | None = None
        self._n = 0
        self._stream: FaultStream | None = None
        self._faults: tuple[Fault, ...] = ()
        self._fired: set[int] = set()
        self._frames = 0
        self._pending: Rejection | None = None  # a fail-task waiting for the next run-task
        self._delay = (0.0, 0.0)
        self._rng = random.Random(0)  # replaced by the plan's stream for this connection
        self._last_due = -math.inf
        self._outbox_in, self._outbox = trio.open_memory_channel[tuple[float, str]](_OUTBOX)
        self._held: tuple[float, str] | None = None
        self._control: FaultControl | None = None

    @property
    def active(self) -> bool:
        """Whether the handlers need the hooks at all."""
        return self.plan is not None or self._hooks is not None

    def wrap(self, stream: trio.abc.Stream) -> trio.abc.Stream:
        """The stream the WebSocket layer should use instead of ``stream``."""
        self._stream = FaultStream(stream)
        return self._stream

    @property
    def socket_fd(self) -> int | None:
        """The TCP socket's descriptor when no fault can cut or freeze the stream (else None).

        Valid after :meth:`on_upgrade`; the WebSocket's fast lane reads and writes it.
        """
        return self._stream.passthrough_fd if self._stream is not None else None

    async def linger(self) -> None:
        """Before the raw stream is closed: a half-open stream waits for the peer to leave."""
        if self._stream is not None:
            await self._stream.linger()

    def _applied(self, fault: Fault, event: str = "fault.applied") -> None:
        assert self.plan is not None
        _log.info(event, fault=fault_to_spec(fault), seed=self.plan.seed, n=self._n)

    # ------------------------------------------------------------ upgrade

    async def on_upgrade(self, path: str, headers: Sequence[tuple[bytes, bytes]]) -> Refusal | None:
        """Choose this connection's plan; apply slow accepts and rejections.

        Returns:
            A refusal (400 for a malformed requested spec), or None to go on.
        """
        try:
            requested = requested_plan(path, headers)
        except FaultSpecError as exc:
            _log.info("fault.bad_spec", error=str(exc))
            return Refusal(400, str(exc))
        chosen = self._injector.choose(self._conn_id, requested)
        if chosen is not None:
            plan, n = chosen
            rng = plan.rng(n)
            if plan.connections.selects(n, rng):
                self._select(plan, n, rng, "server" if requested is None else "request")
        for fault in self._faults:
            if isinstance(fault, SlowAccept):
                self._applied(fault)
                await trio.sleep(fault.delay_s)
        for fault in self._faults:
            if isinstance(fault, RejectUpgrade):
                self._applied(fault)
                return Refusal(fault.status)
        if self._stream is not None and not any(
            isinstance(f, Drop | HalfOpen) for f in self._faults
        ):
            self._stream.disarm()
        status = self._hooks.on_upgrade(path) if self._hooks is not None else None
        return None if status is None else Refusal(status)

    def _select(self, plan: FaultPlan, n: int, rng: random.Random, source: str) -> None:
        self.plan, self._n, self._faults = plan, n, plan.faults
        self._rng = rng
        delays = [f for f in plan.faults if isinstance(f, DelayEvents)]
        self._delay = (sum(f.delay_s for f in delays), sum(f.jitter_s for f in delays))
        _log.info("fault.plan", plan=plan.to_spec(), seed=plan.seed, n=n, source=source)
        for fault in delays:
            self._applied(fault)  # from the first frame on, for the whole connection

    # ------------------------------------------------------------ ConnectionFaults

    def on_run_task(self, spec: TaskSpec) -> Rejection | None:
        if self._hooks is not None and (rejection := self._hooks.on_run_task(spec)) is not None:
            return rejection
        if self._pending is not None:
            rejection, self._pending = self._pending, None
            return rejection
        for i, fault in enumerate(self._faults):
            if i in self._fired:
                continue
            if isinstance(fault, Throttle):
                self._fired.add(i)
                self._applied(fault)
                return Rejection(THROTTLE_CODE, THROTTLE_MESSAGE)
            if isinstance(fault, FailTask) and fault.at_s is None and fault.after_frames is None:
                self._fired.add(i)
                self._applied(fault)
                return Rejection(fault.code, fault.message)
        return None

    async def on_receive(self, frame: bytes | str) -> bool:
        if self._stream is not None and self._stream.state != "open":
            return False  # already queued when the stream broke: never handled
        if self._tap is not None:
            self._tap.received(self._conn_id, frame)
        self._frames += 1
        handle = True
        for i, fault in enumerate(self._faults):
            if getattr(fault, "after_frames", None) == self._frames and i not in self._fired:
                self._fired.add(i)
                handle = await self._fire(fault) and handle
        return handle

    async def before_send(self, frame: str) -> str | None:
        if self._hooks is not None:
            sent = await self._hooks.before_send(frame)
            if sent is None:
                return None
            frame = sent
        for i, fault in enumerate(self._faults):
            if isinstance(fault, NoTaskFinished) and _event_of(frame) in _FINISHED_EVENTS:
                if i not in self._fired:
                    self._fired.add(i)
                    self._applied(fault)
                return None
        delay, jitter = self._delay
        if delay == 0 and jitter == 0:
            return frame
        due = trio.current_time() + delay + (self._rng.uniform(0.0, jitter) if jitter else 0.0)
        self._last_due = due = max(due, self._last_due)  # frames keep their order
        await self._outbox_in.send((due, frame))
        return None

    async def run(
        self,
        control: FaultControl,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._control = control
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i, fault in enumerate(self._faults):
                at_s = getattr(fault, "at_s", None)
                if at_s is not None:
                    nursery.start_soon(self._timer, start + at_s, i, fault)
            if self._delay != (0.0, 0.0):
                nursery.start_soon(self._pump, control)
            task_status.started()

    async def drain(self, control: FaultControl) -> None:
        try:
            while True:
                if self._held is None:
                    try:
                        self._held = self._outbox.receive_nowait()
                    except trio.WouldBlock:
                        return
                if not await self._deliver(control):
                    return  # the socket is gone: the rest would not arrive either
        finally:
            # The handler's context holds this runner: drop the handler, or the two
            # would wait for the cyclic garbage collector, connection and all.
            self._control = None

    # ------------------------------------------------------------ applying

    async def _timer(self, deadline: float, i: int, fault: Fault) -> None:
        await trio.sleep_until(deadline)
        if i not in self._fired and (self._stream is None or self._stream.state == "open"):
            self._fired.add(i)
            await self._fire(fault)

    async def _fire(self, fault: Fault) -> bool:
        """Apply a triggered fault; False if the frame that triggered it must not be handled."""
        match fault:
            case Drop():
                self._applied(fault)
                if self._stream is not None:
                    await self._stream.abort()
                return False
            case HalfOpen():
                self._applied(fault)
                if self._stream is not None:
                    self._stream.freeze()
                return False
            case FailTask(code, message):
                assert self._control is not None
                if await self._control.fail_task(code, message):
                    self._applied(fault)
                    return False
                self._applied(fault, "fault.armed")  # no task open: fail the next run-task
                self._pending = Rejection(code, message)
        return True

    async def _pump(self, control: FaultControl) -> None:
        while True:
            if self._held is None:
                self._held = await self._outbox.receive()
            await self._deliver(control)

    async def _deliver(self, control: FaultControl) -> bool:
        """Write the held frame when it is due (kept held if cancelled before that)."""
        assert self._held is not None
        due, frame = self._held
        await trio.sleep_until(due)
        self._held = None
        return await control.write_frame(frame)


class _Header(msgspec.Struct):
    event: str = ""


class _Frame(msgspec.Struct):
    header: _Header = msgspec.field(default_factory=_Header)
    type: str = ""  # a realtime event


_FRAME_DECODER: Final = msgspec.json.Decoder(_Frame)
_FINISHED_EVENTS: Final = frozenset({"task-finished", "session.finished"})
"""What ``no-task-finished`` swallows: the inference and the realtime end of a task."""


def _event_of(frame: str) -> str:
    """The inference ``header.event`` or the realtime ``type`` of a frame ("" if neither)."""
    try:
        decoded = _FRAME_DECODER.decode(frame)
    except msgspec.DecodeError:
        return ""
    return decoded.header.event or decoded.type
