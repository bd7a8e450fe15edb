"""Where the batch commands send: ``--url``, the service (with a key), or an embedded simulator.

Also turns local paths into ``file://`` URLs when the target is a simulator on
this machine (the real service only fetches URLs).
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import sys
import urllib.parse
from typing import TYPE_CHECKING, Final, NamedTuple

from adapters.dashscope.batch import HTTP_ENDPOINTS, URL_SCHEMES
from engine.config import Secret
from engine.errors import ConfigError

if TYPE_CHECKING:
    import argparse
    import contextlib
    from collections.abc import Sequence

    from adapters.dashscope.batch_http import BatchConfig

__all__ = ["SIMULATOR_KEY", "Target", "file_urls", "resolve_target"]

SIMULATOR_KEY: Final = "embedded-simulator"


class Target(NamedTuple):
    """A resolved target: the client's config and key, and what it can fetch."""

    config: BatchConfig
    key: Secret
    local_files: bool
    embedded: bool


async def resolve_target(
    args: argparse.Namespace, stack: contextlib.AsyncExitStack, *, existing_task: bool
) -> Target:
    """``--url``, else the service with ``DASHSCOPE_API_KEY``, else an embedded simulator.

    Args:
        args: the command's options (``url``, ``region``, ``recognizer``, ``timeout``).
        stack: owns the embedded simulator (and its recognizer) when one is started.
        existing_task: the command is about a task submitted earlier (status,
            cancel, list), which an embedded simulator cannot know.

    Raises:
        ConfigError: a bad ``--url`` or ``--timeout``, or no target for an existing task.
    """
    from adapters.dashscope.batch_http import BatchConfig  # httpx: only when a batch command runs

    key = os.environ.get("DASHSCOPE_API_KEY", "")
    timeout = getattr(args, "timeout", 6 * 3600.0)
    if not timeout > 0:
        raise ConfigError(f"--timeout must be positive, got {timeout:g}")
    if args.url:
        local = _is_loopback(args.url)
        try:
            config = BatchConfig(
                base_url=args.url,
                trust_env=not local,
                wait_timeout_s=timeout,
                poll_initial_s=_poll(local),
                poll_max_s=5 * _poll(local),
            )
        except ValueError as exc:
            raise ConfigError(f"bad --url: {exc}") from None
        return Target(config, Secret(key or "steno-local"), local, False)
    if key:
        config = BatchConfig(base_url=HTTP_ENDPOINTS[args.region], wait_timeout_s=timeout)
        return Target(config, Secret(key), False, False)
    if existing_task:
        raise ConfigError(
            "no DASHSCOPE_API_KEY set, and the embedded simulator forgets its tasks when a "
            "command ends; fix: set DASHSCOPE_API_KEY, or pass --url of a running `steno simulate`"
        )
    base = await _embedded_simulator(stack, args.recognizer)
    config = BatchConfig(
        base_url=base,
        trust_env=False,
        wait_timeout_s=timeout,
        poll_initial_s=_poll(True),
        poll_max_s=5 * _poll(True),
    )
    return Target(config, Secret(SIMULATOR_KEY), True, True)


def _poll(local: bool) -> float:
    """The first poll interval: a simulator on this machine is polled 4× faster than the SDK's."""
    return 0.25 if local else 1.0


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _embedded_simulator(stack: contextlib.AsyncExitStack, kind: str) -> str:
    from adapters.sim.config import SimConfig
    from adapters.sim.recognizers import make_recognizer
    from adapters.sim.server import open_simulator

    recognizer = make_recognizer(kind)  # type: ignore[arg-type]
    stack.push_async_callback(recognizer.aclose)
    sim = await stack.enter_async_context(open_simulator(SimConfig(), recognizer))
    what = "pocketsphinx, offline, low accuracy" if kind == "sphinx" else "scripted"
    print(
        f"steno: no DASHSCOPE_API_KEY set: using the embedded simulator at {sim.http_url} ({what})",
        file=sys.stderr,
    )
    return str(sim.http_url)


def file_urls(items: Sequence[str], *, local_files: bool) -> list[str]:
    """URLs as given; local paths as ``file://`` URLs when the target can read them."""
    urls = []
    for item in items:
        scheme = urllib.parse.urlsplit(item).scheme.lower()
        if scheme in URL_SCHEMES and (scheme != "file" or local_files):
            urls.append(item)
            continue
        if not local_files:
            raise ConfigError(
                f"{item} is a local file, but the service only fetches URLs; fix: upload it "
                "(HTTP(S) or OSS) and pass its URL, or use `steno transcribe` for local files"
            )
        path = pathlib.Path(item).resolve()
        if not path.is_file():
            raise ConfigError(f"no such file: {item}; fix: check the path")
        urls.append(path.as_uri())
    return urls
