"""Seeded transient fault plans for the property tests, and proof that a fault fired.

Both the recognition (test_sim_fault_props.py) and the translation
(test_translation_session.py) properties draw plans here. A drawn plan is never
thrown away: :func:`transient_plan` turns each permanent fault into its transient
twin (a permanent task-failed code becomes ``InternalError``, a 401/403 upgrade
refusal a 503), where ``assume(transient(plan))`` used to discard about 28 % of the
examples. :func:`fired` collects the simulator's ``fault.applied`` / ``fault.armed``
log records, so a property can require that its plan actually did something.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

import msgspec
from structlog.testing import capture_logs

from adapters.sim.faults import Connections, FailTask, Fault, FaultPlan, RejectUpgrade, random_plan

__all__ = ["PERMANENT_CODES", "fired", "transient", "transient_plan"]

PERMANENT_CODES: Final = frozenset(
    {"InvalidParameter", "Model.NotExist", "InvalidApiKey", "Arrearage"}
)
"""task-failed codes the engine treats as permanent (no retry)."""


def _permanent(fault: Fault) -> bool:
    if isinstance(fault, FailTask):
        return fault.code in PERMANENT_CODES
    if isinstance(fault, RejectUpgrade):
        return 400 <= fault.status < 500 and fault.status != 429
    return False


def transient(plan: FaultPlan) -> bool:
    """Whether every fault of ``plan`` is one the engine retries."""
    return not any(_permanent(f) for f in plan.faults)


def _transient_twin(fault: Fault) -> Fault:
    if isinstance(fault, FailTask) and _permanent(fault):
        return msgspec.structs.replace(
            fault, code="InternalError", message="injected InternalError"
        )
    if isinstance(fault, RejectUpgrade) and _permanent(fault):
        return RejectUpgrade(503)
    return fault


def transient_plan(
    seed: int, *, count: int, hits: int, horizon_s: float, max_frames: int
) -> FaultPlan:
    """``random_plan(seed, …)`` on the first ``hits`` connections, every fault transient."""
    plan = random_plan(
        seed,
        count=count,
        horizon_s=horizon_s,
        max_frames=max_frames,
        connections=Connections(first_n=hits),
    )
    twins = tuple(_transient_twin(f) for f in plan.faults)
    return msgspec.structs.replace(plan, faults=twins)


@contextlib.contextmanager
def fired() -> Iterator[list[dict[str, Any]]]:
    """The ``fault.applied`` and ``fault.armed`` records the simulator logs in the block."""
    records: list[dict[str, Any]] = []
    with capture_logs() as logs:
        yield records
    records.extend(r for r in logs if r.get("event") in ("fault.applied", "fault.armed"))
