"""``steno simulate``: the DashScope-compatible simulator as a server (WebSocket and REST)."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any

import trio

from engine._util import unwrap_single_group
from engine.cli._common import EXIT_OK
from engine.errors import ConfigError

if TYPE_CHECKING:
    import argparse

__all__ = ["add_parser", "simulate"]


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
    s.set_defaults(func=simulate)


async def simulate(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C exits 130 from ``main``)."""
    from adapters.sim.config import SimConfig
    from adapters.sim.faults import parse_fault_spec
    from adapters.sim.recognizers import make_recognizer
    from adapters.sim.server import serve

    keys = None
    if args.api_key_file:
        try:
            text = await trio.Path(args.api_key_file).read_text(encoding="utf-8")
            keys = [text.strip()]
        except OSError as exc:
            raise ConfigError(f"cannot read --api-key-file: {exc}") from None
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port; fix: a port in 0–65535")
    try:
        config = SimConfig(host=args.host, port=args.port, api_keys=keys)
    except ValueError as exc:
        raise ConfigError(f"bad simulator option: {exc}; fix: check --host and --port") from None
    faults = parse_fault_spec(args.fault) if args.fault else None
    recognizer = make_recognizer(args.recognizer)
    try:
        with unwrap_single_group():
            async with trio.open_nursery() as nursery:
                try:
                    port = await nursery.start(
                        functools.partial(serve, faults=faults), config, recognizer
                    )
                except OSError as exc:
                    raise ConfigError(
                        f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                        "fix: check --host, pick another --port (0 takes a free one) or stop what uses it"
                    ) from None
                print(
                    f"steno: simulator listening on ws://{args.host}:{port}/api-ws/v1/inference "
                    f"and http://{args.host}:{port}/api/v1 "
                    f"({args.recognizer}{', faults: ' + str(faults) if faults else ''})",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        with trio.CancelScope(shield=True):
            await recognizer.aclose()
    return EXIT_OK
