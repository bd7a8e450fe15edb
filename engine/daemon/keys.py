"""The API key and everything that must never show it: key lookup, URL redaction, config dumps.

The key comes from ``api-key-file`` (which wins) or ``$DASHSCOPE_API_KEY`` and
lives in an :class:`engine.config.Secret` (``***`` in repr, logs and encodings).
It is never part of the configuration, so no dump can contain it; URLs of
network sources may carry their own credentials (``rtsp://user:pass@cam``), so
every place that shows a URL (logs, /healthz, JSONL, dumps) uses
:func:`redact_url`.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

import msgspec

from engine.config import Secret
from engine.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.daemon.config import DaemonConfig, DaemonSection

__all__ = ["KEY_ENV", "dump_config", "redact_url", "resolve_api_key"]

KEY_ENV: Final = "DASHSCOPE_API_KEY"
_SECRET_QUERY = re.compile(r"(?i)(token|key|secret|pass(word)?|auth|sig(nature)?)")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def resolve_api_key(section: DaemonSection, environ: Mapping[str, str]) -> tuple[Secret, str]:
    """The API key and where it came from (``api-key-file`` wins over the environment).

    Blocking (reads the file). An empty result is an empty Secret: the caller decides
    whether that is allowed (only with ``simulator``).

    Raises:
        ConfigError: the key file cannot be read (the message never contains the key).
    """
    if section.api_key_file is not None:
        try:
            with open(section.api_key_file, encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read api-key-file {section.api_key_file}: {exc.strerror or exc}"
            ) from None
        return Secret(value), f"api-key-file {section.api_key_file}"
    return Secret(environ.get(KEY_ENV, "").strip()), KEY_ENV


def redact_url(url: str) -> str:
    """``url`` without credentials: user info and secret-looking query values become ``***``."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urllib.parse.urlencode(
        [
            (k, "***" if _SECRET_QUERY.search(k) else v)
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# ----------------------------------------------------------------- dump


def dump_config(config: DaemonConfig, *, key_source: str | None = None) -> str:
    """The effective configuration as TOML (every default filled in), decodable again.

    Secrets never appear: the key is a ``***`` comment naming its origin, and
    credentials in source URLs are redacted.
    """
    data = msgspec.to_builtins(config)
    for spec, stream in zip(config.streams, data.get("stream", ()), strict=True):
        if stream["source"]["kind"] == "url":
            stream["source"]["url"] = redact_url(stream["source"]["url"])
        # The policy in force, not just the overrides (max-attempts absent = never give up).
        policy = spec.restart.policy()
        stream["restart"] = {
            "max-attempts": policy.max_attempts,
            "backoff-base-s": policy.backoff_base_s,
            "backoff-cap-s": policy.backoff_cap_s,
            "healthy-after-s": policy.healthy_after_s,
            "jitter": policy.jitter,
        }
    lines = ["# steno daemon: effective configuration"]
    if key_source is not None:
        lines.append(f"# api key: *** (from {key_source})")
    lines += ["", "[daemon]", *_toml_pairs(data["daemon"], "daemon")]
    for stream in data.get("stream", ()):
        lines += ["", "[[stream]]", *_toml_pairs(stream, "stream")]
    return "\n".join(lines) + "\n"


def _toml_pairs(table: dict[str, Any], prefix: str) -> list[str]:
    """``key = value`` lines, then sub-tables (``[prefix.key]``); None (unset) is omitted."""
    scalars = [
        f"{_toml_key(k)} = {_toml_value(v)}"
        for k, v in table.items()
        if v is not None and not isinstance(v, dict)
    ]
    tables: list[str] = []
    for k, v in table.items():
        if isinstance(v, dict):
            name = f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k)
            tables += ["", f"[{name}]", *_toml_pairs(v, name)]
    return scalars + tables


def _toml_key(key: str) -> str:
    """A bare key when TOML allows one, else a quoted key (translation phrases are free text)."""
    return key if _BARE_KEY.fullmatch(key) else msgspec.json.encode(key).decode()


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
