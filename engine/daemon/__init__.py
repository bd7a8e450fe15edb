"""``steno daemon``: many streams per process, 24/7, built on the public ``open_stream`` API.

Modules: ``config`` (strict TOML Structs), ``keys`` (the API key, redaction,
``--dump``), ``sources`` (file, url via ffmpeg, stdin, a microphone), ``gate``
(the suspend idle policy's energy gate), ``rolling`` (hourly/daily,
size-capped output files), ``runner`` (one stream), ``metrics`` (the per-stream
counters and their snapshots), ``exposition`` (/metrics through prometheus_client,
a registry per daemon), ``health`` (/healthz and /readyz: state tables), ``http``
(a tiny h11 GET server), ``manager`` (reload by stream id, drain within a
deadline), ``control`` (the status routes and the signals every face shares).
``workers = N``: ``shard`` (how many, which stream where, one merged view),
``pool`` (the parent of N worker processes), ``worker_slot`` (one worker's
process, pipes and watchdog), ``worker_wire`` (the typed messages on the pipes),
``worker`` (``python -m engine.daemon.worker``).
The command line is ``engine/cli/daemon.py``.
"""

from __future__ import annotations

from engine.daemon.config import DaemonConfig as DaemonConfig
from engine.daemon.config import StreamSpec as StreamSpec
from engine.daemon.config import decode_config as decode_config
from engine.daemon.config import load_config as load_config
from engine.daemon.keys import dump_config as dump_config
from engine.daemon.keys import resolve_api_key as resolve_api_key
from engine.daemon.manager import Daemon as Daemon
from engine.daemon.manager import ReloadPlan as ReloadPlan
from engine.daemon.manager import plan_reload as plan_reload
from engine.daemon.manager import run_daemon as run_daemon
from engine.daemon.runner import StreamEnv as StreamEnv
from engine.daemon.sources import SourceContext as SourceContext

__all__ = [
    "Daemon",
    "DaemonConfig",
    "ReloadPlan",
    "SourceContext",
    "StreamEnv",
    "StreamSpec",
    "decode_config",
    "dump_config",
    "load_config",
    "plan_reload",
    "resolve_api_key",
    "run_daemon",
]
