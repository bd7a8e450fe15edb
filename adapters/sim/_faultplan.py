"""The fault plan data model: fault kinds, connection selectors, plans, compact formatting.

Public surface and the compact syntax: see :mod:`adapters.sim.faults`.
"""

from __future__ import annotations

import functools
import math
import random
import urllib.parse
from typing import TYPE_CHECKING, Final, TypeAlias

import msgspec

from engine.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .context import FaultHooks

__all__ = [
    "FAULT_HEADER",
    "FAULT_QUERY",
    "THROTTLE_CODE",
    "THROTTLE_MESSAGE",
    "Connections",
    "DelayEvents",
    "Drop",
    "FailTask",
    "Fault",
    "FaultPlan",
    "FaultSource",
    "FaultSpec",
    "FaultSpecError",
    "HalfOpen",
    "NoTaskFinished",
    "RejectUpgrade",
    "SlowAccept",
    "Throttle",
    "fault_to_spec",
]

FAULT_HEADER: Final = "X-Steno-Fault"
FAULT_QUERY: Final = "steno_fault"
THROTTLE_CODE: Final = "Throttling.RateQuota"
THROTTLE_MESSAGE: Final = "Requests rate limit exceeded, please try again later."


class FaultSpecError(ConfigError, ValueError):
    """A fault spec or plan that does not parse or validate."""


class _Base(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="kebab", omit_defaults=True
):
    pass


def _check_trigger(at_s: float | None, after_frames: int | None, *, required: bool) -> None:
    if at_s is not None and after_frames is not None:
        raise ValueError("give at most one of at-s and after-frames")
    if required and at_s is None and after_frames is None:
        raise ValueError("give at-s or after-frames")
    if at_s is not None and not (math.isfinite(at_s) and at_s >= 0):
        raise ValueError("at-s must be a finite number ≥ 0")
    if after_frames is not None and after_frames < 1:
        raise ValueError("after-frames must be ≥ 1")


def _check_delay(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number ≥ 0")


class FaultSpec(_Base, frozen=True, tag_field="type"):
    """Base of every fault; the ``type`` tag is the kind's kebab name."""


class Drop(FaultSpec, frozen=True, tag="drop"):
    """Abort the stream (no close frame; RST on TCP) at ``at_s`` or on frame ``after_frames``."""

    at_s: float | None = None
    after_frames: int | None = None

    def __post_init__(self) -> None:
        _check_trigger(self.at_s, self.after_frames, required=True)


class HalfOpen(FaultSpec, frozen=True, tag="half-open"):
    """From the trigger on, read nothing and write nothing, and keep the socket open."""

    at_s: float | None = None
    after_frames: int | None = None

    def __post_init__(self) -> None:
        _check_trigger(self.at_s, self.after_frames, required=True)


class DelayEvents(FaultSpec, frozen=True, tag="delay-events"):
    """Send each event frame ``delay_s`` (+ uniform ``0..jitter_s``) after it was produced."""

    delay_s: float
    jitter_s: float = 0.0

    def __post_init__(self) -> None:
        _check_delay("delay-s", self.delay_s)
        _check_delay("jitter-s", self.jitter_s)


class NoTaskFinished(FaultSpec, frozen=True, tag="no-task-finished"):
    """Never send ``task-finished``: the server thinks it did; the client waits."""


class FailTask(FaultSpec, frozen=True, tag="fail-task"):
    """``task-failed`` with ``code``: at run-task, or at ``at_s`` / on frame ``after_frames``."""

    code: str
    message: str = "failure injected by the simulator"
    at_s: float | None = None
    after_frames: int | None = None

    def __post_init__(self) -> None:
        if not self.code:
            raise ValueError("code must not be empty")
        _check_trigger(self.at_s, self.after_frames, required=False)


class RejectUpgrade(FaultSpec, frozen=True, tag="reject-upgrade"):
    """Refuse the WebSocket upgrade with this HTTP status (401, 403, 429, 503…)."""

    status: int

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400–599)")


class Throttle(FaultSpec, frozen=True, tag="throttle"):
    """``task-failed`` ``Throttling.RateQuota`` / "Requests rate limit exceeded…" at run-task."""


class SlowAccept(FaultSpec, frozen=True, tag="slow-accept"):
    """Answer the upgrade request ``delay_s`` late."""

    delay_s: float

    def __post_init__(self) -> None:
        _check_delay("delay-s", self.delay_s)


Fault = (
    Drop
    | HalfOpen
    | DelayEvents
    | NoTaskFinished
    | FailTask
    | RejectUpgrade
    | Throttle
    | SlowAccept
)

KINDS: Final[dict[str, type[FaultSpec]]] = {
    "drop": Drop,
    "half-open": HalfOpen,
    "delay-events": DelayEvents,
    "no-task-finished": NoTaskFinished,
    "fail-task": FailTask,
    "reject-upgrade": RejectUpgrade,
    "throttle": Throttle,
    "slow-accept": SlowAccept,
}


class Connections(_Base, frozen=True):
    """Which connection numbers (1, 2, …) a plan applies to; every given condition must hold.

    Attributes:
        first_n: only connections 1..first_n.
        every: only connections 1, 1+every, 1+2·every, …
        only: only these connection numbers.
        p: each connection with this probability (drawn from the plan's seeded RNG).
    """

    first_n: int | None = None
    every: int | None = None
    only: tuple[int, ...] | None = None
    p: float | None = None

    def __post_init__(self) -> None:
        if self.first_n is not None and self.first_n < 1:
            raise ValueError("first-n must be ≥ 1")
        if self.every is not None and self.every < 1:
            raise ValueError("every must be ≥ 1")
        if self.only is not None and (not self.only or min(self.only) < 1):
            raise ValueError("only must list connection numbers ≥ 1")
        if self.p is not None and not 0.0 <= self.p <= 1.0:
            raise ValueError("p must be within 0–1")

    def selects(self, n: int, rng: random.Random) -> bool:
        """Whether connection ``n`` is chosen; always draws one number from ``rng``."""
        draw = rng.random()
        return (
            (self.first_n is None or n <= self.first_n)
            and (self.every is None or (n - 1) % self.every == 0)
            and (self.only is None or n in self.only)
            and (self.p is None or draw < self.p)
        )


class FaultPlan(_Base, frozen=True, kw_only=True):
    """Faults, the connections they hit, and the seed that makes the randomness replay.

    ``repr()`` and ``str()`` give the compact spec (seed included), which
    :func:`parse_fault_spec` turns back into an equal plan.
    """

    faults: tuple[Fault, ...] = ()
    seed: int = 0
    connections: Connections = msgspec.field(default_factory=Connections)

    def rng(self, n: int) -> random.Random:
        """Connection ``n``'s own random stream."""
        return random.Random(f"{self.seed}:{n}")

    def to_spec(self) -> str:
        """The compact spec of this plan (always with its seed)."""
        items = [fault_to_spec(fault) for fault in self.faults]
        items.append(f"seed={self.seed}")
        c = self.connections
        for key, value in (("first", c.first_n), ("every", c.every), ("p", c.p)):
            if value is not None:
                items.append(f"{key}={value!r}")
        if c.only is not None:
            items.append("only=" + ",".join(str(n) for n in c.only))
        return ";".join(items)

    def __str__(self) -> str:
        return self.to_spec()

    def __repr__(self) -> str:
        return f"FaultPlan({self.to_spec()!r})"


FaultSource: TypeAlias = "FaultPlan | FaultHooks | Callable[[int], FaultPlan | None]"
"""What ``faults=`` takes: one plan, hand-written hooks, or ``connection number → plan | None``."""

# ------------------------------------------------------------ compact specs

KIND_ALIASES: Final = {"delay": "delay-events", "reject": "reject-upgrade"}
SHORT_KIND: Final = {v: k for k, v in KIND_ALIASES.items()}
KEY_ALIASES: Final = {
    "at": "at-s",
    "after": "after-frames",
    "delay": "delay-s",
    "jitter": "jitter-s",
}
SHORT_KEY: Final = {v: k for k, v in KEY_ALIASES.items()}
MAIN_FIELD: Final = {
    "delay-events": "delay-s",
    "slow-accept": "delay-s",
    "fail-task": "code",
    "reject-upgrade": "status",
}
OPTIONS: Final = {
    "first": "first-n",
    "first-n": "first-n",
    "every": "every",
    "only": "only",
    "p": "p",
}


@functools.cache
def _struct_info(kind: type[FaultSpec]) -> msgspec.inspect.StructType:
    # Once per fault class: msgspec.inspect builds a self-referencing closure per
    # call, garbage for the cyclic collector on every connection a fault hits.
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return info


def fault_to_spec(fault: FaultSpec) -> str:
    """One fault in the compact syntax, e.g. ``drop:at=2.5``."""
    info = _struct_info(type(fault))
    tag = str(info.tag)
    args: list[str] = []
    for field in info.fields:
        value = getattr(fault, field.name)
        if value is None or (not field.required and value == field.default):
            continue
        text = repr(value) if isinstance(value, float) else str(value)
        key = field.encode_name
        if key == MAIN_FIELD.get(tag) and not args:
            args.append(urllib.parse.quote(text, safe=" "))
        else:
            args.append(f"{SHORT_KEY.get(key, key)}={urllib.parse.quote(text, safe=' ')}")
    kind = SHORT_KIND.get(tag, tag)
    return f"{kind}:{','.join(args)}" if args else kind
