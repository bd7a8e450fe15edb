"""Hypothesis strategies for hostile frames, shared by the inference and realtime hostile tests.

Arbitrary JSON values, a valid frame with one value deleted or replaced
(:func:`mutated`), and junk nested far past the interpreter's recursion limit
(:func:`nested`). Each protocol's test adds its own header or type mutations.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

__all__ = ["json_scalars", "json_values", "mutated", "nested", "node_paths"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def node_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``node`` (dict keys and list indexes), root excluded."""
    found: list[tuple[Any, ...]] = []
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in children:
        found.append((*prefix, key))
        found.extend(node_paths(child, (*prefix, key)))
    return found


@st.composite
def mutated(draw: st.DrawFn, templates: dict[str, dict[str, Any]]) -> str:
    """A valid frame with one value deleted or replaced by arbitrary JSON."""
    frame = copy.deepcopy(draw(st.sampled_from(list(templates.values()))))
    path = draw(st.sampled_from(node_paths(frame)))
    parent = frame
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return json.dumps(frame, ensure_ascii=False)


@st.composite
def nested(draw: st.DrawFn, around: tuple[str, str]) -> str:
    """Junk nested up to far past the interpreter's recursion limit, balanced or not.

    Balanced junk inside ``around`` (a valid frame with a hole where venue payloads
    allow anything) is a valid frame as long as the decoder can descend that deep.
    """
    depth = draw(st.integers(min_value=1, max_value=5000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    tail = closer * depth if draw(st.booleans()) else ""
    inner = opener * depth + "0" + tail
    return around[0] + inner + around[1] if draw(st.booleans()) else inner
