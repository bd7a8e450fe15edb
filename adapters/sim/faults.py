"""Seeded fault plans for the simulator: what can go wrong, on which connections, replayably.

A :class:`FaultPlan` is data — a tuple of faults, a ``seed`` and a
:class:`Connections` selector — decoded strictly from TOML/JSON (kebab-case keys,
tag field ``type``) or parsed from the compact spec below. Hand one to
``serve`` / ``open_simulator`` / ``open_memory_net`` (``faults=plan``, or a
factory ``faults=lambda n: plan_or_none``), or let a client ask for one per
connection with the ``X-Steno-Fault`` header or the ``steno_fault`` query
parameter of the upgrade request (the header wins over the query, and a
requested plan replaces the server's for that connection). A malformed spec
there is refused with HTTP 400 and the parse error as message. In Python::

    FaultPlan(faults=(Drop(at_s=2.0),), seed=7, connections=Connections(first_n=1))
    parse_fault_spec("drop:at=2;first=1;seed=7")          # the same plan
    headers.append((b"X-Steno-Fault", str(plan).encode()))  # ask for it per connection

Faults (``at`` seconds count from the accepted upgrade; ``after`` = N counts the
client's WebSocket messages, ``run-task`` being 1, and fires *before* the N-th is
handled). They act on both endpoints; on ``/api-ws/v1/realtime`` the session's
start (right after the upgrade) stands for run-task — ``throttle`` and a
trigger-less ``fail-task`` send their ``error`` there instead of
``session.created``:

================================  ===================================================
``drop:at=S`` / ``drop:after=N``  abort the stream: no close frame (TCP: RST)
``half-open:at=S|after=N``        stop reading, swallow writes, never close: pings go
                                  unanswered until the client gives up
``delay:S[,jitter=J]``            every event frame leaves S (+ uniform 0..J) seconds
                                  after it was produced, in order; pongs are not delayed
``no-task-finished``              swallow ``task-finished`` (finish-task gets no reply;
                                  realtime: ``session.finished``)
``fail-task:CODE[,message=M]``    ``task-failed`` CODE at run-task, or ``at``/``after``
                                  (with no task open then: at the next run-task);
                                  realtime: a fatal ``error`` (``server_error``, CODE)
``reject:STATUS``                 refuse the upgrade with HTTP STATUS (401, 403, 429, 503…)
``throttle``                      ``task-failed`` ``Throttling.RateQuota`` at run-task
``slow-accept:S``                 answer the upgrade S seconds late
================================  ===================================================

Compact spec grammar (``;`` between items, ``,`` between a fault's arguments;
values are percent-decoded, so write ``%3B`` ``%2C`` ``%25`` for ``;`` ``,`` ``%``)::

    spec    := item (";" item)*           or a JSON object (starts with "{")
    item    := fault | option
    fault   := KIND [":" arg ("," arg)*]  a bare arg sets the kind's main field
    arg     := [KEY "="] VALUE            keys: at after delay jitter code message status
    option  := "seed=" INT | "first=" N | "every=" K | "only=" N ("," N)* | "p=" FLOAT

e.g. ``drop:at=2.5;seed=7;only=1,3`` (the 1st and 3rd connection drop 2.5 s
after the upgrade) or ``fail-task:InvalidParameter,message=no%2C%20thanks``.
Kinds may be spelled out (``delay-events``, ``reject-upgrade``) and keys given
by their field names (``at-s``, ``after-frames``, ``delay-s``, ``jitter-s``).
In a query string the whole spec is one URL-encoded value.

Connection numbers: a plan given to the server counts every connection the
server serves (1, 2, …); a plan requested by clients counts the connections
that requested that same plan. Every connection draws from its own
``random.Random(f"{seed}:{n}")`` (the ``p`` selection first, then jitter), so a
seed replays exactly however connections interleave. The seed is in the plan's
``repr`` and in every ``fault.*`` log line.
"""

from __future__ import annotations

from ._faultplan import FAULT_HEADER as FAULT_HEADER
from ._faultplan import FAULT_QUERY as FAULT_QUERY
from ._faultplan import THROTTLE_CODE as THROTTLE_CODE
from ._faultplan import THROTTLE_MESSAGE as THROTTLE_MESSAGE
from ._faultplan import Connections as Connections
from ._faultplan import DelayEvents as DelayEvents
from ._faultplan import Drop as Drop
from ._faultplan import FailTask as FailTask
from ._faultplan import Fault as Fault
from ._faultplan import FaultPlan as FaultPlan
from ._faultplan import FaultSource as FaultSource
from ._faultplan import FaultSpec as FaultSpec
from ._faultplan import FaultSpecError as FaultSpecError
from ._faultplan import HalfOpen as HalfOpen
from ._faultplan import NoTaskFinished as NoTaskFinished
from ._faultplan import RejectUpgrade as RejectUpgrade
from ._faultplan import SlowAccept as SlowAccept
from ._faultplan import Throttle as Throttle
from ._faultplan import fault_to_spec as fault_to_spec
from ._faultspec import DEFAULT_WEIGHTS as DEFAULT_WEIGHTS
from ._faultspec import parse_fault_spec as parse_fault_spec
from ._faultspec import random_plan as random_plan

__all__ = [
    "DEFAULT_WEIGHTS",
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
    "parse_fault_spec",
    "random_plan",
]
