"""What every ``steno`` verb shares: exit codes, the key and URL lookup, output options.

Exit codes (README "Exit codes"): 0 every stream ok; 1 a stream failed (bad
input, rejected key, service error); 2 bad usage or configuration (a
:class:`~engine.errors.ConfigError`, printed by ``main`` as one line); 3 audio
was lost (an ``AudioGap``) but the run finished; 130 interrupted.

Where a verb sends (:func:`resolve_endpoint`): ``--url`` if given, else the
dashscope SDK's base-URL variable, else the real service with a key
(``--region``), else the embedded simulator, started in-process with a
one-line notice; the SDK's variables are read by :mod:`engine.sdkenv`.
"""

from __future__ import annotations

import logging
import os
import sys
import urllib.parse
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

import trio

from engine.config import Secret
from engine.errors import ConfigError
from engine.sdkenv import env_api_key, env_base_url, env_region

if TYPE_CHECKING:
    import argparse
    import contextlib
    from collections.abc import Mapping, Sequence

    from adapters.sinks.layout import CueLayout
    from engine.events import StreamEnded

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_LOST_AUDIO",
    "EXIT_OK",
    "EXIT_USAGE",
    "SIMULATOR_KEY",
    "Endpoint",
    "add_format_argument",
    "add_layout_arguments",
    "add_target_arguments",
    "api_key",
    "check_url",
    "exit_code",
    "log_settings",
    "parse_formats",
    "parse_layout",
    "resolve_endpoint",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_LOST_AUDIO: Final = 3
EXIT_INTERRUPTED: Final = 130

#: The key sent to an embedded simulator (it accepts any non-empty key).
SIMULATOR_KEY: Final = "embedded-simulator"

DEFAULT_FORMATS: Final = "txt,srt,vtt,jsonl"


def exit_code(results: Sequence[StreamEnded]) -> int:
    """The run's exit code from its streams' endings: interrupted > failed > partial > ok."""
    statuses = {r.status for r in results}
    from engine._stream_input import INTERRUPTED

    if INTERRUPTED in statuses:
        return EXIT_INTERRUPTED
    if "failed" in statuses:
        return EXIT_FAILED
    if "partial" in statuses:
        return EXIT_LOST_AUDIO
    return EXIT_OK


def log_settings(args: argparse.Namespace, *, tty: bool) -> tuple[bool, int]:
    """The CLI's log format and level from ``-v`` and ``--log-format``: (JSON lines, level).

    Warnings as plain text unless asked for more: ``-v`` logs info too (JSON lines
    off a terminal, for ``2>log`` and collectors), ``--log-format json`` makes them
    JSON at any level. Worker processes log as their parent says.
    """
    verbose = bool(getattr(args, "verbose", False))
    fmt = getattr(args, "log_format", "auto")
    level = logging.INFO if verbose else logging.WARNING
    return (verbose and not tty if fmt == "auto" else fmt == "json"), level


# ------------------------------------------------------------ key and endpoint


def api_key(environ: Mapping[str, str] | None = None) -> str:
    """The key from ``DASHSCOPE_API_KEY`` or ``DASHSCOPE_API_KEY_FILE_PATH`` (empty when unset).

    Blocking (it may read the key file).

    Raises:
        ConfigError: the key file cannot be read or is empty.
    """
    return env_api_key(environ)[0].reveal()


class Endpoint(NamedTuple):
    """Where a verb sends, and with which key.

    Attributes:
        url: the inference WebSocket URL, or the batch HTTP API base.
        key: the API key (the simulator's placeholder when embedded).
        embedded: an in-process simulator that ends with the command.
    """

    url: str
    key: Secret
    embedded: bool


async def resolve_endpoint(
    args: argparse.Namespace,
    stack: contextlib.AsyncExitStack,
    *,
    api: Literal["inference", "http"],
    anonymous_key: str = "",
    faults: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """Where to send, first found: ``--url``, the SDK's base-URL variable, the service, a simulator.

    The order (README "Where it sends, and with which key"): ``--url``; else
    ``DASHSCOPE_WEBSOCKET_BASE_URL`` (``DASHSCOPE_HTTP_BASE_URL`` for the HTTP
    API); else, with a key (``DASHSCOPE_API_KEY``, then the file named by
    ``DASHSCOPE_API_KEY_FILE_PATH``), the service in ``--region``, else
    ``DASHSCOPE_API_REGION``, else ``cn``; else an embedded simulator.

    Args:
        args: the verb's ``url``, ``region`` and ``recognizer`` options.
        stack: owns the embedded simulator when one is started.
        api: the WebSocket inference API or the batch HTTP API.
        anonymous_key: the key sent to an explicit URL when no key is set.
        faults: the embedded simulator's fault plan (``--sim-fault``).
        environ: the environment read (the process's by default).

    Raises:
        ConfigError: a bad URL, region, key file, fault plan or recognizer.
    """
    env = os.environ if environ is None else environ
    key = (await trio.to_thread.run_sync(env_api_key, env))[0].reveal()
    explicit = (args.url, "--url") if args.url else env_base_url(api, env)
    if explicit is not None:
        url, origin = explicit
        check_url(url, api, origin=origin)
        return Endpoint(url, Secret(key or anonymous_key), embedded=False)
    region = args.region or env_region(env) or "cn"
    if key:
        return Endpoint(_service_url(api, region), Secret(key), embedded=False)
    from engine._embedded import describe_recognizer, open_embedded_simulator

    sim = await stack.enter_async_context(open_embedded_simulator(args.recognizer, faults=faults))
    url = sim.inference_url if api == "inference" else sim.http_url
    print(
        f"steno: no DASHSCOPE_API_KEY set: using the embedded simulator at {url} "
        f"({describe_recognizer(args.recognizer)})",
        file=sys.stderr,
    )
    return Endpoint(url, Secret(SIMULATOR_KEY), embedded=True)


#: The schemes each API is reached by, and what a right ``--url`` looks like.
_URL_FORMS: Final = {
    "inference": (("ws", "wss"), "ws://127.0.0.1:8765/api-ws/v1/inference (or wss://…)"),
    "http": (("http", "https"), "http://127.0.0.1:8765/api/v1 (or https://…)"),
}


def check_url(url: str, api: Literal["inference", "http"], *, origin: str = "--url") -> None:
    """Refuse a URL the API cannot be reached by (a wrong scheme, no host).

    ``origin`` names where it came from in the message (``--url`` or a variable).

    Raises:
        ConfigError: one line naming the right form.
    """
    schemes, example = _URL_FORMS[api]
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ConfigError(f"bad {origin} {url!r} ({exc}); fix: e.g. {example}") from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        what = "a WebSocket URL" if api == "inference" else "an HTTP URL"
        raise ConfigError(f"bad {origin} {url!r}: not {what}; fix: e.g. {example}")


def _service_url(api: Literal["inference", "http"], region: str) -> str:
    if api == "inference":
        from adapters.dashscope.models import inference_url

        return inference_url(region)
    from adapters.dashscope.batch import HTTP_ENDPOINTS

    try:
        return HTTP_ENDPOINTS[region]
    except KeyError:
        raise ConfigError(
            f"unknown region {region!r}; fix: use {', '.join(HTTP_ENDPOINTS)}"
        ) from None


def add_target_arguments(
    parser: argparse.ArgumentParser, *, url_help: str, regions: Sequence[str] = ("cn", "intl")
) -> None:
    """``--url``, ``--region`` and ``--recognizer`` (the embedded simulator's)."""
    parser.add_argument("--url", help=url_help)
    parser.add_argument(
        "--region",
        choices=list(regions),
        help="the service's region when a key is set (default: $DASHSCOPE_API_REGION, else cn)",
    )
    parser.add_argument(
        "--recognizer",
        default="sphinx",
        choices=["sphinx", "scripted"],
        help="the embedded simulator's recognizer (no API key only)",
    )


# ------------------------------------------------------------------- outputs


def add_format_argument(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    """``--format`` (comma-separated output formats)."""
    from adapters.sinks.factory import FORMATS

    parser.add_argument(
        "--format",
        default=DEFAULT_FORMATS,
        help=help or f"comma-separated output formats ({', '.join(FORMATS)})",
    )


def add_layout_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-line-width`` and ``--max-lines`` of SRT/VTT cues (Whisper CLI semantics)."""
    from adapters.sinks.layout import DEFAULT_LAYOUT

    parser.add_argument(
        "--max-line-width",
        type=int,
        default=DEFAULT_LAYOUT.max_line_width,
        metavar="N",
        help="most characters in a subtitle line, split on word timings (0: no limit)",
    )
    parser.add_argument(
        "--max-lines",
        type=int,
        default=DEFAULT_LAYOUT.max_lines,
        metavar="N",
        help="most lines in a subtitle cue; the next line starts a new cue (0: no limit)",
    )


def parse_layout(width: int, lines: int) -> CueLayout:
    """``--max-line-width`` / ``--max-lines`` as a :class:`CueLayout` (0 means no limit).

    Raises:
        ConfigError: a negative value.
    """
    from adapters.sinks.layout import CueLayout

    if width < 0 or lines < 0:
        raise ConfigError(
            "--max-line-width and --max-lines must be 0 (no limit) or more; fix: e.g. 42 and 2"
        )
    try:
        return CueLayout(max_line_width=width or None, max_lines=lines or None)
    except ValueError as exc:
        raise ConfigError(f"bad subtitle layout: {exc}") from None


def parse_formats(text: str) -> tuple[str, ...]:
    """``--format`` as a tuple of known formats, in order, without repeats.

    Raises:
        ConfigError: an unknown format.
    """
    from adapters.sinks.factory import FORMATS

    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown output format {unknown[0]!r}; fix: use {', '.join(FORMATS)}")
    return formats
