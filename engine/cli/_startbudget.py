"""Which task-start budget a run of files keeps: the service's, a simulator's, or the user's.

The choice (:func:`choose_budget`, first that applies):

1. ``--start-rate`` (``20``, ``10/min``, ``unlimited``) for every model family;
2. the target's own declaration, when the target is a simulator: the embedded one,
   or a ``--url`` on this machine that answers ``GET`` :data:`~engine.ratelimit.LIMITS_PATH`
   (:func:`probe_declared`; a ``steno simulate`` declares the budgets it enforces,
   none, so 1,000 files start at once);
3. the real service's per-model budgets (DASHSCOPE.md §8: paraformer 20 starts/s).

So a URL that is not a simulator (a proxy or a tunnel to the service, a remote
host) is never sent more starts than the service takes; a remote simulator gets
its budget from ``--start-rate``.
"""

from __future__ import annotations

import math
import urllib.parse
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec
import structlog
import trio

from adapters.http.client import get as http_get
from engine._util import is_loopback
from engine.policy import RATE_LIMITS
from engine.ratelimit import LIMITS_PATH, DeclaredLimits, parse_start_rate, uniform_limits

if TYPE_CHECKING:
    from engine.cli._common import Endpoint
    from engine.policy import RateLimit

__all__ = ["PROBE_TIMEOUT_S", "StartBudget", "choose_budget", "probe_declared", "resolve_budget"]

log = structlog.get_logger("steno.ratelimit")

#: How long the probe of a local URL may take before the service's budget is kept.
PROBE_TIMEOUT_S: Final = 2.0


class StartBudget(NamedTuple):
    """The run's task-start budgets per model family, and where they came from.

    Attributes:
        limits: family → budget; a family left out starts without a limit.
        source: ``--start-rate``, ``simulator`` or ``service``.
    """

    limits: dict[str, RateLimit]
    source: str


def choose_budget(start_rate: str | None, declared: DeclaredLimits | None) -> StartBudget:
    """The budget from ``--start-rate`` (as typed, or None) and a simulator's declaration.

    Pure. Raises:
        ConfigError: a bad ``--start-rate`` (one line naming the fix).
    """
    if start_rate is not None:
        return StartBudget(uniform_limits(parse_start_rate(start_rate)), "--start-rate")
    if declared is not None:
        return StartBudget(dict(declared.task_starts), "simulator")
    return StartBudget(dict(RATE_LIMITS), "service")


async def resolve_budget(start_rate: str | None, endpoint: Endpoint) -> StartBudget:
    """:func:`choose_budget` for ``endpoint``, asking it for a declaration when it may be
    a simulator (embedded, or a ``--url`` on a loopback address); logs the choice.

    Raises:
        ConfigError: a bad ``--start-rate`` (before any probe).
    """
    budget = choose_budget(start_rate, None)
    if start_rate is None and (endpoint.embedded or is_loopback(endpoint.url)):
        budget = choose_budget(None, await probe_declared(endpoint.url))
    log.info(
        "ratelimit.budget",
        source=budget.source,
        limits={family: f"{lim.rate:g}/{lim.per_s:g}s" for family, lim in budget.limits.items()},
    )
    return budget


async def probe_declared(url: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> DeclaredLimits | None:
    """Ask the server at ``url``'s host and port for its declared task-start budgets.

    One ``GET`` :data:`~engine.ratelimit.LIMITS_PATH` over plain HTTP (``wss`` is not
    asked: a simulator on this machine speaks ``ws``). Anything but a 200 with a
    :class:`DeclaredLimits` body within ``timeout_s`` (refused, 404 from the
    service or a proxy, a stall, a bad body) is None: not a simulator.

    Cancellation: safe (the connection is closed). Never raises for the server's sake.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "ws" or not parts.hostname:
        return None
    host, port = parts.hostname, parts.port or 80
    answer = None
    with trio.move_on_after(timeout_s):
        answer = await http_get(host, port, LIMITS_PATH)
    if answer is None or answer[0] != 200:
        return None
    try:
        declared = msgspec.json.decode(answer[1], type=DeclaredLimits)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return declared if all(_usable(lim) for lim in declared.task_starts.values()) else None


def _usable(limit: RateLimit) -> bool:
    """A budget a token bucket can keep (a positive, finite rate and period)."""
    values = (limit.rate, limit.per_s, limit.capacity)
    return all(math.isfinite(v) and v > 0 for v in values)
