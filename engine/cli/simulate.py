"""``steno simulate``: the DashScope-compatible simulator as a server (WebSocket and REST).

With ``--processes N`` (N > 1) this process serves nothing itself: it starts N
worker processes (``adapters.children.open_child``: own process group, SIGINT and
SIGTERM blocked) that each bind the same port with ``SO_REUSEPORT``, so the kernel
spreads new connections over them. It holds the port (bound, not listening) until
every worker listens, prints one banner, and then watches them: Ctrl-C (or SIGTERM)
closes their stdin, which ends them (SIGKILL after a grace period), and a worker that
dies ends the run with a message and exit code 1. Each worker has its own recognizer,
fault plan counters and batch REST task table: a batch task submitted through one
connection is known only to the process that accepted it (a client on one
keep-alive connection sees one process).
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Final

import trio

from engine._util import unwrap_single_group
from engine.cli._common import EXIT_FAILED, EXIT_OK
from engine.errors import ConfigError

if TYPE_CHECKING:
    from adapters.sim.config import SimConfig
    from adapters.sim.faults import FaultPlan

__all__ = ["add_parser", "simulate"]

_READY_TIMEOUT_S: Final = 60.0  # a worker must listen within this
_STOP_GRACE_S: Final = 10.0  # after end of input, before SIGKILL
_READY: Final = b"ready "


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    s = subparsers.add_parser("simulate", help="run the DashScope-compatible simulator")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    s.add_argument(
        "--recognizer",
        default="sphinx",
        choices=["sphinx", "scripted"],
        help="sphinx: offline pocketsphinx; scripted: the file's known text (default sphinx)",
    )
    s.add_argument(
        "--api-key-file",
        help="accept only the key in this file (default: any non-empty key)",
    )
    s.add_argument(
        "--fault",
        metavar="SPEC",
        help="seeded fault plan for every connection, e.g. 'drop:at=5;every=2;seed=7'",
    )
    s.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes sharing the port (SO_REUSEPORT); batch REST tasks "
        "are per process (default 1)",
    )
    s.add_argument(
        "--feed-batch-ms",
        type=int,
        default=0,
        metavar="MS",
        help="recognize audio in batches of at least MS per task (results come up to MS "
        "later; cheaper per frame, for load tests; default 0: as it arrives)",
    )
    # One of --processes' workers: serve on a shared port, report ready on stdout, end at EOF.
    s.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(func=simulate)


async def simulate(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C exits 130 from ``main``)."""
    from adapters.sim.config import SimConfig
    from adapters.sim.faults import parse_fault_spec

    keys = None
    if args.api_key_file:
        try:
            text = await trio.Path(args.api_key_file).read_text(encoding="utf-8")
            keys = [text.strip()]
        except OSError as exc:
            raise ConfigError(f"cannot read --api-key-file: {exc}") from None
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port; fix: a port in 0–65535")
    if not 1 <= args.processes <= 1024:
        raise ConfigError(f"--processes {args.processes}: fix: a number of processes in 1–1024")
    shared = args.worker or args.processes > 1
    try:
        config = SimConfig(
            host=args.host,
            port=args.port,
            api_keys=keys,
            reuse_port=shared,
            feed_batch_ms=args.feed_batch_ms,
        )
    except ValueError as exc:
        raise ConfigError(
            f"bad simulator option: {exc}; fix: check --host, --port and --feed-batch-ms"
        ) from None
    faults = parse_fault_spec(args.fault) if args.fault else None
    _raise_file_limit()  # a socket per session: thousands of them
    if args.processes > 1 and not args.worker:
        return await _supervise(args)
    return await _serve(args, config, faults)


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _listen_error(args: argparse.Namespace, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
        "fix: check --host, pick another --port (0 takes a free one) or stop what uses it"
    )


def _banner(args: argparse.Namespace, port: int, faults: object, processes: int) -> str:
    extra = f", faults: {faults}" if faults else ""
    procs = f", {processes} processes" if processes > 1 else ""
    return (
        f"steno: simulator listening on ws://{args.host}:{port}/api-ws/v1/inference "
        f"and http://{args.host}:{port}/api/v1 ({args.recognizer}{extra}{procs})"
    )


async def _serve(args: argparse.Namespace, config: SimConfig, faults: FaultPlan | None) -> int:
    """One serving process: the whole simulator, or one worker of ``--processes``."""
    from adapters.sim.recognizers import make_recognizer
    from adapters.sim.server import serve

    recognizer = make_recognizer(args.recognizer)
    try:
        with unwrap_single_group():
            async with trio.open_nursery() as nursery:
                try:
                    port = await nursery.start(
                        functools.partial(serve, faults=faults), config, recognizer
                    )
                except OSError as exc:
                    raise _listen_error(args, exc) from None
                if args.worker:
                    # The parent reads this; our life is tied to our stdin (its pipe).
                    sys.stdout.buffer.write(_READY + str(port).encode() + b"\n")
                    sys.stdout.flush()
                    await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)
                    nursery.cancel_scope.cancel()
                else:
                    print(_banner(args, port, faults, 1), file=sys.stderr, flush=True)
    finally:
        with trio.CancelScope(shield=True):
            await recognizer.aclose()
    return EXIT_OK


# ------------------------------------------------------------------ --processes N


def _hold_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) ``host:port`` with SO_REUSEPORT: picks the port for port 0 and
    keeps it ours until the workers listen on it."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _worker_command(args: argparse.Namespace, port: int) -> list[str]:
    cmd = [sys.executable, "-m", "engine.cli"]
    if getattr(args, "verbose", False):
        cmd.append("--verbose")
    log_format = getattr(args, "log_format", None)
    if log_format is not None:
        cmd += ["--log-format", log_format]
    cmd += ["simulate", "--worker", "--host", args.host, "--port", str(port)]
    cmd += ["--recognizer", args.recognizer, "--feed-batch-ms", str(args.feed_batch_ms)]
    if args.api_key_file:
        cmd += ["--api-key-file", os.path.abspath(args.api_key_file)]
    if args.fault:
        cmd += ["--fault", args.fault]
    return cmd


class _WorkerDied(Exception):
    def __init__(self, index: int, pid: int, code: int | None) -> None:
        super().__init__(f"simulator process {index} (pid {pid}) exited with code {code}")


async def _supervise(args: argparse.Namespace) -> int:
    """Start ``--processes`` workers on one port, watch them, stop them all.

    Cancellation (Ctrl-C): every worker's stdin is closed, then each gets
    ``_STOP_GRACE_S`` to exit before SIGKILL; this is shielded.

    Error handling:
        A worker that does not report ready within ``_READY_TIMEOUT_S``, or that
        exits while the others serve, ends the run: the others are stopped and
        the exit code is 1, with one line saying which worker and its code.
    """
    from adapters.children import open_child

    try:
        holder = _hold_port(args.host, args.port)
    except OSError as exc:
        raise _listen_error(args, exc) from None
    port: int = holder.getsockname()[1]
    workers: list[trio.Process] = []
    died: tuple[BaseException, ...] = ()
    try:
        try:
            with trio.fail_after(_READY_TIMEOUT_S):
                for _ in range(args.processes):
                    proc = await open_child(
                        _worker_command(args, port), stdin=subprocess.PIPE, stderr=None
                    )
                    workers.append(proc)
                for i, proc in enumerate(workers):
                    if not await _ready(proc):
                        code = await proc.wait()
                        raise _WorkerDied(i + 1, proc.pid, code)
        except trio.TooSlowError:
            print(
                f"steno: error: the simulator processes did not start within "
                f"{_READY_TIMEOUT_S:g} s",
                file=sys.stderr,
            )
            return EXIT_FAILED
        holder.close()
        faults = args.fault
        print(_banner(args, port, faults, args.processes), file=sys.stderr, flush=True)
        async with trio.open_nursery() as nursery:
            for i, proc in enumerate(workers):
                nursery.start_soon(_watch, i + 1, proc)
    except* _WorkerDied as group:
        died = group.exceptions
    finally:
        holder.close()
        with trio.CancelScope(shield=True):
            await _stop(workers)
    for death in died:
        print(f"steno: error: {death}; stopped the others", file=sys.stderr)
    return EXIT_FAILED


async def _ready(proc: trio.Process) -> bool:
    """Read a worker's ready line; False if its stdout ended first."""
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        data = await proc.stdout.receive_some(256)
        if not data:
            return False
        line += data
    return line.startswith(_READY)


async def _watch(index: int, proc: trio.Process) -> None:
    code = await proc.wait()
    raise _WorkerDied(index, proc.pid, code)


async def _stop(workers: list[trio.Process]) -> None:
    """End of input for every worker; SIGKILL for those still alive after the grace."""
    for proc in workers:
        if proc.stdin is not None:
            with trio.move_on_after(1):
                await proc.stdin.aclose()
    with trio.move_on_after(_STOP_GRACE_S):
        for proc in workers:
            await proc.wait()
    for proc in workers:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.aclose()
