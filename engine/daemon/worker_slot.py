"""One worker index of a ``workers = N`` daemon: its streams, its current process, its pipes.

A :class:`WorkerSlot` outlives the processes it runs: ``pool.Pool`` calls
:meth:`WorkerSlot.life` once per process (a restart is a new life), and reads
what the slot knows (:meth:`WorkerSlot.view`) to answer /healthz and /metrics.
During a life the slot sends instructions (:meth:`WorkerSlot.tell`, whole frames
under a lock and a deadline), keeps the worker's latest :class:`Report`, relays
its log lines, whole, to the daemon's stdout, and kills a worker that stopped
reporting. ``down`` is the reason its streams cannot be trusted (it died, it went
silent, it is starting again), shown on /healthz until the next report.
"""

from __future__ import annotations

import signal
import subprocess
from typing import TYPE_CHECKING, BinaryIO, Final

import msgspec
import structlog
import trio

from adapters.children import open_child
from engine.daemon.shard import WorkerView, accumulate
from engine.daemon.worker_wire import FrameReader, Report, Stopped, WireError, encode

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from engine.daemon.config import StreamSpec
    from engine.daemon.metrics import DaemonSnapshot, StreamSnapshot
    from engine.daemon.worker_wire import Message, Start

__all__ = ["MAX_LINE", "Limits", "WorkerSlot", "describe_exit"]

log = structlog.get_logger("steno.daemon")


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """The deadlines (seconds) of supervising workers; tests shrink them.

    Attributes:
        first_report_s: a new worker's first report may take this long (the
            interpreter and its imports, on a busy host).
        stale_s: a worker silent this long after a report is killed and restarted.
        control_s: an instruction the worker does not take this long closes its
            control pipe instead (end of file: it stops).
        eof_s: after a worker exits (or is killed), its pipes are read and it is
            reaped within this.
        drain_margin_s: beyond the drain deadline the workers keep themselves:
            their last files and reports.
        cancel_s: after Cancel, a worker has this long to exit before SIGKILL.
    """

    first_report_s: float = 60.0
    stale_s: float = 10.0
    control_s: float = 5.0
    eof_s: float = 2.0
    drain_margin_s: float = 5.0
    cancel_s: float = 5.0


#: A log line longer than this is cut: a bound on the relay's buffer.
MAX_LINE: Final = 256 * 1024


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL`` (a negative ``returncode``)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class WorkerSlot:
    """One worker index: its streams, its current process, and what it last reported."""

    def __init__(
        self,
        index: int,
        specs: tuple[StreamSpec, ...],
        now: float,
        out: BinaryIO,
        limits: Limits = Limits(),  # noqa: B008 (frozen)
    ) -> None:
        self.index = index
        self.specs = specs
        self.process: trio.Process | None = None
        self.control: trio.abc.SendStream | None = None
        self.lock = trio.Lock()
        self.snapshot: DaemonSnapshot | None = None
        self.reported_t = now
        self.down: str | None = None  # why its streams cannot be trusted now
        self.down_t = now  # since when (or since this life started, before its first report)
        self.restarts = 0
        self.stopped: bool | None = None  # this life's Stopped(clean)
        self.exit_code: int | None = None
        self.failure: str | None = None  # why this life ended, when the parent knows better
        self.carried: dict[str, StreamSnapshot] = {}  # counters of its dead processes
        self.lines_cut = 0  # log lines longer than MAX_LINE, relayed in pieces
        self.done = trio.Event()  # no life will follow (drained, cancelled)
        self._out = out
        self.limits = limits

    def fold(self) -> None:
        """The process died: keep what its streams counted (``shard`` rule 4), forget the rest."""
        if self.snapshot is not None:
            for stream in self.snapshot.streams:
                earlier = self.carried.get(stream.stream)
                self.carried[stream.stream] = (
                    stream if earlier is None else accumulate(earlier, stream)
                )
        self.snapshot = None

    def view(self, now: float) -> WorkerView:
        """What /healthz and /metrics know of this worker now (``shard.merge``'s input)."""
        return WorkerView(
            worker=self.index,
            streams=self.specs,
            snapshot=self.snapshot,
            down=self.down,
            down_s=now - self.down_t,
            restarts=self.restarts,
            carried=self.carried,
        )

    def pid(self) -> int | None:
        """The live worker's pid, or None between lives."""
        process = self.process
        return process.pid if process is not None and process.returncode is None else None

    async def life(
        self,
        command: Sequence[str],
        environ: Mapping[str, str],
        start: Start,
        then: Callable[[], Message | None],
    ) -> tuple[int, int | None]:
        """One worker process from start to exit: (its exit code, its pid).

        Sends ``start``, then what ``then()`` says (a Drain or Cancel asked for
        while the worker was starting); reads its reports and relays its logs
        until it exits; kills it when it stops reporting (``Limits.stale_s``).

        Cancellation: the worker is killed (SIGKILL) and reaped, its pipes closed.
        """
        self.stopped = None
        self.failure = None
        self.reported_t = trio.current_time()
        if self.down is None:
            self.down_t = self.reported_t
        try:
            process = await open_child(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(environ),
            )
        except OSError as exc:
            self.failure = f"worker {self.index} cannot start: {exc}"
            return 127, None
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        self.process = process
        log.info("daemon.worker.started", worker=self.index, pid=process.pid, streams=[s.id for s in self.specs])  # fmt: skip
        try:
            async with trio.open_nursery() as nursery:
                reports_done, logs_done = trio.Event(), trio.Event()
                nursery.start_soon(self._read_reports, process, reports_done)
                nursery.start_soon(self._relay_logs, process.stderr, logs_done)
                nursery.start_soon(self._watch, process)
                # Start goes first, alone: only then may others tell (a Drain sent
                # before it would be refused); what they missed, then() says.
                await self.tell(start, control=process.stdin)
                followup = then()
                if followup is not None:
                    await self.tell(followup)
                code = await process.wait()
                with trio.move_on_after(self.limits.eof_s):
                    await reports_done.wait()
                    await logs_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.control = None
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(self.limits.eof_s):
                    await process.wait()
            with trio.CancelScope(shield=True), trio.move_on_after(self.limits.eof_s):
                for pipe in (process.stdin, process.stdout, process.stderr):
                    if pipe is not None:
                        await pipe.aclose()
            self.process = None
        return code, process.pid

    async def tell(self, message: Message, *, control: trio.abc.SendStream | None = None) -> None:
        """Send one instruction; a worker that takes none in ``Limits.control_s`` gets EOF.

        Nothing is sent to a worker that is not running, or has not had its Start yet
        (``control`` is that first send's pipe, which then opens the slot to the others).
        Safe for several tasks at once: a lock keeps frames whole.
        """
        async with self.lock:
            if control is not None:
                self.control = control
            control = self.control
            if control is None:
                return
            with trio.move_on_after(self.limits.control_s) as waited:
                try:
                    await control.send_all(encode(message))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # it exited: life() sees that
            if waited.cancelled_caught:  # a partial frame may be out: end the pipe instead
                log.warning("daemon.worker.control_stuck", worker=self.index)
                self.control = None
                await control.aclose()

    async def _read_reports(self, process: trio.Process, done: trio.Event) -> None:
        assert process.stdout is not None
        reader = FrameReader(process.stdout)
        try:
            while True:
                try:
                    message = await reader.receive()
                except WireError as exc:
                    log.error("daemon.worker.report_broken", worker=self.index, error=str(exc))
                    self.failure = f"worker {self.index} (pid {process.pid}) sent garbage: {exc}"
                    process.kill()
                    return
                match message:
                    case None:
                        return
                    case Report(snapshot=snapshot):
                        self.snapshot = snapshot
                        self.reported_t = trio.current_time()
                        self.down = None
                    case Stopped(clean=clean):
                        self.stopped = clean
                    case _:
                        log.error("daemon.worker.unexpected", worker=self.index, message=type(message).__name__)  # fmt: skip
        finally:
            done.set()

    async def _watch(self, process: trio.Process) -> None:
        """Kill a worker whose reports stopped (a hang, a stuck loop): it is then restarted."""
        while process.returncode is None:  # an exited worker is life()'s to handle
            limit = self.limits.first_report_s if self.snapshot is None else self.limits.stale_s
            await trio.sleep_until(self.reported_t + limit)
            silent = trio.current_time() - self.reported_t
            if silent >= limit and process.returncode is None:
                self.failure = f"worker {self.index} (pid {process.pid}) stopped reporting ({silent:.1f} s); killed"  # fmt: skip
                log.error("daemon.worker.silent", worker=self.index, pid=process.pid, silent_s=round(silent, 3))  # fmt: skip
                process.kill()
                return

    async def _relay_logs(self, stderr: trio.abc.ReceiveStream, done: trio.Event) -> None:
        """Copy the worker's log lines, whole, to the daemon's stdout (one stream of lines)."""
        buffer = b""
        try:
            while chunk := await stderr.receive_some(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if len(buffer) > MAX_LINE:  # cut (counted): the rest comes as its own line
                    lines.append(buffer[:MAX_LINE])
                    buffer = buffer[MAX_LINE:]
                    self.lines_cut += 1
                for line in lines:
                    self._emit(line)
            if buffer:
                self._emit(buffer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            done.set()

    def _emit(self, line: bytes) -> None:
        if not line.strip():
            return
        if not (line.startswith(b"{") and line.endswith(b"}")):  # not one of its JSON lines
            text = line.decode("utf-8", "replace")
            line = msgspec.json.encode(
                {
                    "event": "daemon.worker.output",
                    "worker": self.index,
                    "level": "warning",
                    "line": text,
                }
            )
        self._out.write(line + b"\n")
        self._out.flush()
