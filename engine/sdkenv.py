"""The dashscope SDK's environment variables, read as the SDK reads them.

A user of the ``dashscope`` Python SDK has configured it with these; ``steno``
honours the same names so one environment serves both (README "Where it sends,
and with which key" has the whole precedence table). Command-line flags and
config keys win over every variable here.

=================================  =========================================================
``DASHSCOPE_API_KEY``              the key (an empty value counts as unset)
``DASHSCOPE_API_KEY_FILE_PATH``    a file holding the key (stripped), when the above is unset
``DASHSCOPE_WEBSOCKET_BASE_URL``   the inference WebSocket URL (``wss://…/api-ws/v1/inference``)
``DASHSCOPE_HTTP_BASE_URL``        the HTTP API base (``https://…/api/v1``), for ``steno batch``
``DASHSCOPE_API_REGION``           ``cn-beijing`` (the SDK's default) or ``ap-southeast-1``
                                   (the international endpoint); ``cn`` and ``intl`` too
=================================  =========================================================

The SDK also falls back to ``~/.dashscope/api_key``; ``steno`` does not, so a
forgotten file never turns an offline run (the embedded simulator) into a billed
one. The key is only ever held in a :class:`~engine.config.Secret`, and no
message here contains it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final, Literal

from engine.config import Secret
from engine.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "HTTP_URL_ENV",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "REGION_ENV",
    "WEBSOCKET_URL_ENV",
    "env_api_key",
    "env_base_url",
    "env_region",
]

KEY_ENV: Final = "DASHSCOPE_API_KEY"
KEY_FILE_ENV: Final = "DASHSCOPE_API_KEY_FILE_PATH"
WEBSOCKET_URL_ENV: Final = "DASHSCOPE_WEBSOCKET_BASE_URL"
HTTP_URL_ENV: Final = "DASHSCOPE_HTTP_BASE_URL"
REGION_ENV: Final = "DASHSCOPE_API_REGION"

#: The SDK's region names (and ours) → ``steno``'s regions.
_REGIONS: Final = {
    "cn-beijing": "cn",
    "cn": "cn",
    "ap-southeast-1": "intl",
    "intl": "intl",
}


def env_api_key(environ: Mapping[str, str] | None = None) -> tuple[Secret, str]:
    """The key from the environment and where it came from (an empty Secret if none).

    Blocking when it reads ``DASHSCOPE_API_KEY_FILE_PATH``.

    Raises:
        ConfigError: the key file cannot be read or is empty (one line, naming the
            file, never its content).
    """
    env = os.environ if environ is None else environ
    key = env.get(KEY_ENV, "").strip()
    if key:
        return Secret(key), KEY_ENV
    path = env.get(KEY_FILE_ENV, "")
    if not path:
        return Secret(""), KEY_ENV
    try:
        with open(path, encoding="utf-8") as f:
            key = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(
            f"cannot read {KEY_FILE_ENV}={path}: {reason}; "
            f"fix: point it at a readable file holding the key, or unset it"
        ) from None
    if not key:
        raise ConfigError(f"{KEY_FILE_ENV}={path} is empty; fix: write the API key into it")
    return Secret(key), f"{KEY_FILE_ENV} {path}"


def env_base_url(
    api: Literal["inference", "http"], environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """``(url, variable)`` from ``DASHSCOPE_WEBSOCKET_BASE_URL`` or ``DASHSCOPE_HTTP_BASE_URL``, or None."""
    env = os.environ if environ is None else environ
    name = WEBSOCKET_URL_ENV if api == "inference" else HTTP_URL_ENV
    url = env.get(name, "").strip()
    return (url.rstrip("/"), name) if url else None


def env_region(environ: Mapping[str, str] | None = None) -> str | None:
    """``steno``'s region for ``DASHSCOPE_API_REGION`` (None when unset).

    Raises:
        ConfigError: a region ``steno`` has no endpoint for.
    """
    env = os.environ if environ is None else environ
    value = env.get(REGION_ENV, "").strip()
    if not value:
        return None
    try:
        return _REGIONS[value.lower()]
    except KeyError:
        raise ConfigError(
            f"{REGION_ENV}={value!r} is not a region steno knows; fix: cn-beijing or "
            f"ap-southeast-1 (or cn, intl), or set {WEBSOCKET_URL_ENV} to the endpoint"
        ) from None
