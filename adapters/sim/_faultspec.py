"""Parsing compact fault specs and drawing random plans (see :mod:`adapters.sim.faults`)."""

from __future__ import annotations

import random
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ._faultplan import (
    KEY_ALIASES,
    KIND_ALIASES,
    KINDS,
    MAIN_FIELD,
    OPTIONS,
    Connections,
    DelayEvents,
    Drop,
    FailTask,
    Fault,
    FaultPlan,
    FaultSpecError,
    HalfOpen,
    NoTaskFinished,
    RejectUpgrade,
    SlowAccept,
    Throttle,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_WEIGHTS", "parse_fault_spec", "random_plan"]


def parse_fault_spec(text: str) -> FaultPlan:
    """Parse a compact fault spec (syntax: :mod:`adapters.sim.faults`) or a JSON plan.

    Raises:
        FaultSpecError: the text does not parse, or a value is out of range;
            the message says where.
    """
    text = text.strip()
    if not text:
        raise FaultSpecError("empty fault spec")
    try:
        if text.startswith("{"):
            return msgspec.json.decode(text, type=FaultPlan)
        return msgspec.convert(_compact_to_dict(text), FaultPlan, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise FaultSpecError(f"bad fault spec {text!r}: {exc}") from None


def _compact_to_dict(text: str) -> dict[str, Any]:
    faults: list[dict[str, str]] = []
    plan: dict[str, Any] = {}
    connections: dict[str, Any] = {}
    for raw_item in text.split(";"):
        item = raw_item.strip()
        if not item:
            continue
        head, colon, rest = item.partition(":")
        if "=" in head:  # an option: key=value
            key, _, value = (part.strip() for part in item.partition("="))
            if key == "seed":
                _put(plan, "seed", urllib.parse.unquote(value), text)
            elif key in OPTIONS:
                name = OPTIONS[key]
                decoded = urllib.parse.unquote(value)
                _put(connections, name, decoded.split(",") if name == "only" else decoded, text)
            else:
                options = ", ".join(["seed", *OPTIONS])
                raise FaultSpecError(f"bad fault spec {text!r}: unknown option {key!r} ({options})")
            continue
        kind = KIND_ALIASES.get(head.strip(), head.strip())
        if kind not in KINDS:
            known = ", ".join(sorted([*KINDS, *KIND_ALIASES]))
            raise FaultSpecError(f"bad fault spec {text!r}: unknown fault {head!r} ({known})")
        fault: dict[str, str] = {"type": kind}
        for arg in rest.split(",") if colon and rest.strip() else ():
            key, eq, value = arg.partition("=")
            if not eq:
                key, value = MAIN_FIELD.get(kind, ""), arg
                if not key:
                    raise FaultSpecError(f"bad fault spec {text!r}: {kind} takes no bare value")
            key = key.strip()
            _put(fault, KEY_ALIASES.get(key, key), urllib.parse.unquote(value.strip()), text)
        faults.append(fault)
    if connections:
        plan["connections"] = connections
    return {"faults": faults, **plan}


def _put(target: dict[str, Any], key: str, value: object, text: str) -> None:
    if key in target:
        raise FaultSpecError(f"bad fault spec {text!r}: {key!r} given twice")
    target[key] = value


# ------------------------------------------------------------ random plans

DEFAULT_WEIGHTS: Final[Mapping[str, float]] = {
    "drop": 3.0,
    "half-open": 1.0,
    "delay-events": 2.0,
    "no-task-finished": 1.0,
    "fail-task": 2.0,
    "reject-upgrade": 1.0,
    "throttle": 1.0,
    "slow-accept": 1.0,
}
_FAIL_CODES: Final = ("InternalError", "ServiceUnavailable", "InvalidParameter", "CLIENT_ERROR")


def random_plan(
    seed: int,
    *,
    count: int = 1,
    weights: Mapping[str, float] | None = None,
    horizon_s: float = 10.0,
    max_frames: int = 50,
    connections: Connections | None = None,
) -> FaultPlan:
    """A plan of ``count`` faults drawn from ``random.Random(seed)``: same seed, same plan.

    Args:
        seed: the seed of the draw, kept as the plan's seed.
        count: how many faults.
        weights: relative weight per kind (the ``type`` names); default
            :data:`DEFAULT_WEIGHTS`. Kinds left out are never drawn.
        horizon_s: times (``at``, delays) are drawn within this many seconds.
        max_frames: ``after`` triggers are drawn within 1..max_frames.
        connections: which connections the plan hits (default: all).

    Raises:
        FaultSpecError: an unknown kind in ``weights``, or no positive weight.
    """
    table = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(table) - set(KINDS))
    if unknown or not any(w > 0 for w in table.values()):
        raise FaultSpecError(f"bad weights {table!r}: kinds must be among {sorted(KINDS)}")
    rng = random.Random(seed)
    kinds = rng.choices(list(table), weights=list(table.values()), k=count)
    faults = tuple(_draw(rng, kind, horizon_s, max_frames) for kind in kinds)
    return FaultPlan(faults=faults, seed=seed, connections=connections or Connections())


def _draw(rng: random.Random, kind: str, horizon_s: float, max_frames: int) -> Fault:
    def seconds(limit: float) -> float:
        return round(rng.uniform(0.0, limit), 3)

    trigger: dict[str, Any] = (
        {"at_s": seconds(horizon_s)}
        if rng.random() < 0.5
        else {"after_frames": rng.randint(1, max_frames)}
    )
    match kind:
        case "drop":
            return Drop(**trigger)
        case "half-open":
            return HalfOpen(**trigger)
        case "delay-events":
            return DelayEvents(seconds(horizon_s / 4), seconds(horizon_s / 20))
        case "no-task-finished":
            return NoTaskFinished()
        case "fail-task":
            code = rng.choice(_FAIL_CODES)
            return FailTask(code, f"injected {code}", **(trigger if rng.random() < 0.5 else {}))
        case "reject-upgrade":
            return RejectUpgrade(rng.choice((401, 403, 503)))
        case "throttle":
            return Throttle()
        case "slow-accept":
            return SlowAccept(seconds(horizon_s))
    raise AssertionError(f"unhandled kind {kind!r}")  # pragma: no cover
