"""Where the batch commands send: ``--url``, the service (with a key), or an embedded simulator.

Also turns local paths into ``file://`` URLs when the target is a simulator on
this machine (the real service only fetches URLs).
"""

from __future__ import annotations

import pathlib
import urllib.parse
from typing import TYPE_CHECKING, NamedTuple

from adapters.dashscope.batch import URL_SCHEMES
from engine._util import is_loopback
from engine.cli._common import api_key, resolve_endpoint
from engine.errors import ConfigError
from engine.sdkenv import env_base_url

if TYPE_CHECKING:
    import argparse
    import contextlib
    from collections.abc import Sequence

    from adapters.dashscope.batch_http import BatchConfig
    from engine.config import Secret

__all__ = ["Target", "file_urls", "resolve_target"]


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

    timeout = getattr(args, "timeout", 6 * 3600.0)
    if not timeout > 0:
        raise ConfigError(f"--timeout must be positive, got {timeout:g}")
    if existing_task and not args.url and env_base_url("http") is None and not api_key():
        raise ConfigError(
            "no DASHSCOPE_API_KEY set, and the embedded simulator forgets its tasks when a "
            "command ends; fix: set DASHSCOPE_API_KEY, or pass --url of a running `steno simulate`"
        )
    endpoint = await resolve_endpoint(args, stack, api="http", anonymous_key="steno-local")
    local = endpoint.embedded or is_loopback(endpoint.url)
    try:
        config = BatchConfig(
            base_url=endpoint.url,
            trust_env=not local,
            wait_timeout_s=timeout,
            poll_initial_s=_poll(local),
            poll_max_s=5 * _poll(local),
        )
    except ValueError as exc:
        raise ConfigError(f"bad --url: {exc}") from None
    return Target(config, endpoint.key, local, endpoint.embedded)


def _poll(local: bool) -> float:
    """The first poll interval: a simulator on this machine is polled 4× faster than the SDK's."""
    return 0.25 if local else 1.0


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
