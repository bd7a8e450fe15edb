"""``steno daemon CONFIG.toml``: many streams, 24/7, with /healthz and /metrics on loopback.

The command's ``func`` is an async function of ``args`` run by ``engine.cli.main``,
where a :class:`~engine.errors.ConfigError` becomes one ``steno: error: …`` line
and exit code 2 — before any stream, socket or file is opened.

* ``--check`` validates the file (and that a key is available), prints one line
  (with the sharding over ``workers``) and exits; with ``--dump`` it prints the effective configuration as TOML
  (every default filled in, the key as ``***``).
* ``--schema`` prints the JSON Schema of the file (``engine.daemon.schema``, for
  editors) and exits; it needs no CONFIG.toml.
* Logs are structlog JSON lines on stdout, at the config's ``log-level``.
* ``workers = N`` runs the streams in N worker processes under this one, which
  keeps the HTTP server, the signals and the log stream (``engine.daemon.pool``).
* SIGTERM or Ctrl-C drains every stream within ``drain-deadline-s``; a second
  one cancels. SIGHUP reloads the file (and the key) and applies it by stream id.

Exit codes: 0 drained cleanly; 1 the drain deadline passed or a second signal
cancelled; 2 bad configuration (including no API key); 130 interrupted before
the daemon ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Final

import structlog
import trio

from adapters.dashscope.models import inference_url
from engine import logging as steno_logging
from engine._embedded import open_embedded_simulator
from engine.cli._common import EXIT_FAILED, EXIT_OK, SIMULATOR_KEY
from engine.config import Secret
from engine.daemon.config import DaemonConfig, load_config
from engine.daemon.config_sources import FileSource
from engine.daemon.keys import dump_config, resolve_api_key
from engine.daemon.manager import run_daemon
from engine.daemon.pool import run_pool
from engine.daemon.runner import StreamEnv
from engine.daemon.schema import schema_json
from engine.daemon.shard import assign, available_cpus, burst_workers, resolve_workers
from engine.errors import ConfigError
from engine.sdkenv import env_api_key, env_base_url

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import Any, TextIO

__all__ = ["add_parser", "check_startable", "daemon_command", "describe_sharding"]

#: The drain deadline passed, or a second signal cancelled.
EXIT_UNCLEAN: Final = EXIT_FAILED

log = structlog.get_logger("steno.daemon")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``daemon`` to ``steno``'s subcommands (``argparse`` ``add_subparsers()`` result)."""
    d: argparse.ArgumentParser = subparsers.add_parser(
        "daemon",
        help="run many streams 24/7 from a TOML config (/healthz, /metrics, rolling files)",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    d.add_argument("config", metavar="CONFIG.toml", nargs="?")
    d.add_argument("--check", action="store_true", help="validate the config and exit")
    d.add_argument(
        "--dump", action="store_true", help="with --check: print the effective config (key as ***)"
    )
    d.add_argument(
        "--schema",
        action="store_true",
        help="print the config file's JSON Schema (for editors) and exit",
    )
    d.set_defaults(func=daemon_command)
    return d


def _key_for(config: DaemonConfig, environ: Mapping[str, str]) -> tuple[Secret, str]:
    """The API key and its origin; refuses to start without one unless a simulator is configured."""
    key, origin = resolve_api_key(config.daemon, environ)
    if config.daemon.simulator is not None:
        return Secret(SIMULATOR_KEY), f"the embedded {config.daemon.simulator} simulator"
    if not key and config.daemon.api_key_file is None:  # the SDK's key file variable
        key, origin = env_api_key(environ)
    if not key:
        raise ConfigError(
            f"no API key ({origin} is empty); fix: export DASHSCOPE_API_KEY or set "
            '[daemon] api-key-file (offline only: [daemon] simulator = "scripted")'
        )
    return key, origin


def check_startable(config: DaemonConfig, origin: str) -> None:
    """What can be checked at load rather than failing at run time (blocking: stats files).

    Raises:
        ConfigError: a config with no stream, or a file source that is not a file,
            with the key path and the fix.
    """
    if not config.streams:
        raise ConfigError(
            f"{origin}: no [[stream]]: the daemon would run nothing; "
            'fix: add a [[stream]] with an id and a source, e.g. source = { kind = "file", path = "a.wav" }'
        )
    for i, spec in enumerate(config.streams):
        source = spec.source
        if isinstance(source, FileSource) and not os.path.isfile(source.path):
            raise ConfigError(
                f"{origin}: $.stream[{i}].source.path: no such file {source.path!r} "
                f"(stream {spec.id!r}); fix: check the path (relative to the working directory)"
            )


def describe_sharding(config: DaemonConfig, workers: int) -> str:
    """``--check``'s word on ``workers``: in-process, or which worker runs which stream."""
    if workers == 1:
        return "workers: 1, every stream in this process"
    placement = assign(config.streams, workers)
    shares = "; ".join(
        f"{w}: {', '.join(i for i, p in placement.items() if p == w)}" for w in range(workers)
    )
    wanted = config.daemon.workers
    shown = f'"{wanted}"' if isinstance(wanted, str) else str(wanted)
    if wanted == workers:
        why = ""
    elif workers == len(config.streams):
        why = f" (workers = {shown}, at most one per stream)"
    elif workers == burst_workers(config):
        why = f" (workers = {shown}, at most {workers}: the task-start burst split {workers} ways)"
    else:
        why = f" (workers = {shown}, one per CPU)"
    return f"workers: {workers}{why} - {shares}"


def _endpoint(config: DaemonConfig, environ: Mapping[str, str]) -> str:
    """``url``, else ``$DASHSCOPE_WEBSOCKET_BASE_URL``, else the ``region``'s endpoint."""
    from_env = env_base_url("inference", environ)
    return config.daemon.url or (from_env[0] if from_env else inference_url(config.daemon.region))


async def daemon_command(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] = os.environ,
    out: TextIO | None = None,
) -> int:
    """Run (or ``--check``) the daemon described by ``args.config``."""
    out = out or sys.stdout
    if getattr(args, "schema", False):
        print(schema_json().decode(), file=out, end="")
        return EXIT_OK
    if args.config is None:
        raise ConfigError("no CONFIG.toml; fix: steno daemon CONFIG.toml (or --schema)")
    config = await trio.to_thread.run_sync(load_config, args.config)
    key, origin = await trio.to_thread.run_sync(_key_for, config, environ)
    await trio.to_thread.run_sync(check_startable, config, args.config)
    workers = resolve_workers(config, available_cpus())
    if args.check:
        if args.dump:
            print(dump_config(config, key_source=origin), file=out, end="")
        ids = ", ".join(s.id for s in config.streams) or "none"
        print(
            f"steno: {args.config}: OK ({len(config.streams)} streams: {ids}; key from {origin};"
            f" {describe_sharding(config, workers)})",
            file=sys.stderr,
        )
        return EXIT_OK
    _configure_logging(config.daemon.log_level)
    _warn_if_shared(config)
    async with contextlib.AsyncExitStack() as stack:
        url = (
            await _simulator(stack, config)
            if config.daemon.simulator
            else _endpoint(config, environ)
        )
        env = StreamEnv(url=url, api_key=key, clock=time.time)

        async def reload() -> tuple[DaemonConfig, StreamEnv]:
            new = await trio.to_thread.run_sync(load_config, args.config)
            await trio.to_thread.run_sync(check_startable, new, args.config)
            if (new.daemon.simulator is None) != (config.daemon.simulator is None):
                raise ConfigError("switching to or from the simulator needs a restart")
            new_key, _ = await trio.to_thread.run_sync(_key_for, new, environ)
            new_url = url if new.daemon.simulator else _endpoint(new, environ)
            return new, dataclasses.replace(env, url=new_url, api_key=new_key)

        host, port = config.daemon.address()
        try:
            if workers > 1:
                clean = await run_pool(config, env, workers, reload=reload)
            else:
                clean = await run_daemon(config, env, reload=reload)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); fix: change [daemon] listen"
            ) from None
    return EXIT_OK if clean else EXIT_UNCLEAN


def _warn_if_shared(config: DaemonConfig) -> None:
    """A key file others can read is worth one warning line (its path, never its content)."""
    path = config.daemon.api_key_file
    if path is not None and config.daemon.simulator is None:
        with contextlib.suppress(OSError):
            if os.stat(path).st_mode & 0o077:
                log.warning("daemon.key_file_permissions", path=path, fix="chmod 600")


def _configure_logging(level: str) -> None:
    # The daemon logs JSON lines to stdout (a service manager collects them),
    # with the same processors (secret redaction) as every other entry point.
    steno_logging.configure(
        json=True, level=logging.getLevelNamesMapping()[level.upper()], stream=sys.stdout
    )


async def _simulator(stack: contextlib.AsyncExitStack, config: DaemonConfig) -> str:
    kind = config.daemon.simulator
    assert kind is not None
    sim = await stack.enter_async_context(open_embedded_simulator(kind))
    log.warning(
        "daemon.simulator", recognizer=kind, url=sim.inference_url, note="not the real service"
    )
    return sim.inference_url
