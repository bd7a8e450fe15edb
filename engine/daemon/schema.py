"""A JSON Schema of the daemon's TOML configuration, generated from its msgspec types.

``msgspec.json.schema(DaemonConfig)`` already knows every table, kebab-case key,
default, enum and ``forbid_unknown_fields`` (``additionalProperties: false``);
:func:`config_schema` adds what an editor needs on top, for a file TOML can
express: no ``null`` branches (TOML has no null: such a key is simply left out),
the model names as an enum, the stream id's pattern, the bounds of ``workers``,
and ``translate-to`` marked deprecated. Checks that span keys (a model's languages, one stdin stream) stay
in ``load_config``, which names the key path; the schema is for completion and
early squiggles, ``steno daemon --check`` is the authority.

Editors that read JSON Schema for TOML (Taplo, "Even Better TOML") take the
output of ``steno daemon --schema`` through a first line
``#:schema ./steno-daemon.schema.json``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from adapters.dashscope.models import MODELS
from engine.daemon.config import _ID, MAX_WORKERS, DaemonConfig

__all__ = ["config_schema", "schema_json"]

_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def _drop_null(node: Any) -> Any:
    """Remove ``{"type": "null"}`` branches and ``null`` values (defaults), recursively (pure)."""
    if isinstance(node, list):
        return [_drop_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _drop_null(v) for k, v in node.items() if v is not None}
    branches = out.get("anyOf")
    if isinstance(branches, list):
        kept = [b for b in branches if b != {"type": "null"}]
        if len(kept) == 1 and len(kept) != len(branches):
            del out["anyOf"]
            out = {**kept[0], **out}
        else:
            out["anyOf"] = kept
    return out


def config_schema() -> dict[str, Any]:
    """The schema (a fresh dict: callers may change it)."""
    plain = msgspec.json.decode(msgspec.json.encode(msgspec.json.schema(DaemonConfig)))
    schema: dict[str, Any] = _drop_null(plain)  # (plain JSON: lists, not default tuples)
    stream = schema["$defs"]["StreamSpec"]["properties"]
    stream["id"]["pattern"] = f"^{_ID.pattern}$"
    stream["model"]["enum"] = sorted(MODELS)
    stream["translate-to"]["deprecated"] = True
    workers = schema["$defs"]["DaemonSection"]["properties"]["workers"]
    for branch in workers["anyOf"]:
        if branch.get("type") == "integer":
            branch.update(minimum=1, maximum=MAX_WORKERS)
    return {
        "$schema": _DIALECT,
        "title": "steno daemon configuration",
        "description": "The TOML file of `steno daemon` ([daemon] and [[stream]] tables).",
        **schema,
    }


def schema_json() -> bytes:
    """The schema as indented JSON with a final newline (what ``--schema`` prints)."""
    return msgspec.json.format(msgspec.json.encode(config_schema()), indent=2) + b"\n"


if __name__ == "__main__":  # python -m engine.daemon.schema > steno-daemon.schema.json
    import sys

    sys.stdout.buffer.write(schema_json())
