"""The local DashScope-compatible simulator: embedded default target, load-test and test ground.

Serve it over TCP with :func:`serve` / :func:`open_simulator`, or over memory
streams with :func:`open_memory_net`; see ``server.py`` and ``memory.py``.
Seeded fault plans: ``faults.py``.

A WebSocket is accepted by ``upgrade.py`` (the connection itself: ``websocket.py``)
and served by ``inference.py`` (its recognizer task in ``inference_task.py``, input
audio in ``inference_intake.py``, frames out through ``inference_output.py``, the
process-wide reader's side in ``_hub_reader.py``) or ``realtime.py`` (input audio in
``realtime_intake.py``, recognition and translation in ``realtime_worker.py`` /
``realtime_segment.py``); both read and write through ``server_socket.py`` and call
the recognizer through ``recognizer_calls.py``. The batch REST service is ``rest.py``.
"""

from __future__ import annotations

from .config import SimConfig as SimConfig
from .context import ConnectionContext as ConnectionContext
from .context import FaultHooks as FaultHooks
from .faults import FaultPlan as FaultPlan
from .faults import FaultSpecError as FaultSpecError
from .faults import parse_fault_spec as parse_fault_spec
from .faults import random_plan as random_plan
from .memory import MemoryNet as MemoryNet
from .memory import open_memory_net as open_memory_net
from .recognizers import make_recognizer as make_recognizer
from .restconfig import RestConfig as RestConfig
from .restconfig import RestFault as RestFault
from .server import INFERENCE_PATH as INFERENCE_PATH
from .server import SimServer as SimServer
from .server import SimulatorHandle as SimulatorHandle
from .server import open_simulator as open_simulator
from .server import serve as serve

__all__ = [
    "INFERENCE_PATH",
    "ConnectionContext",
    "FaultHooks",
    "FaultPlan",
    "FaultSpecError",
    "MemoryNet",
    "RestConfig",
    "RestFault",
    "SimConfig",
    "SimServer",
    "SimulatorHandle",
    "make_recognizer",
    "open_memory_net",
    "open_simulator",
    "parse_fault_spec",
    "random_plan",
    "serve",
]
