"""Files over worker processes: ``steno transcribe/translate --processes N``.

The parent keeps the console, the outcomes, the exit code and the signals
(:mod:`engine.shard._pool`); each worker (:mod:`engine.shard.worker`) runs the
files it is handed exactly as a single process does and streams back typed
events over a pipe (:mod:`engine.shard._wire`).
"""

from __future__ import annotations

from engine.shard._pool import WorkerPool as WorkerPool
from engine.shard._pool import open_workers as open_workers

__all__ = ["WorkerPool", "open_workers"]
