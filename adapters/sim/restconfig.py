"""Configuration of the simulator's batch REST API (``rest.py``): timers, limits, faults.

Every timer is seconds on trio's clock, so tests scale time with
``MockClock(autojump_threshold=0)`` rather than shrinking the values.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from adapters.http.server import HttpLimits

__all__ = ["RestConfig", "RestFault", "Route"]

Route = Literal["submit", "status", "cancel", "list", "result", "any"]


class RestFault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fail matching requests with HTTP ``status``: skip ``after`` of them, then fail ``count``."""

    route: Route = "any"
    status: int = 503
    count: int = 1
    after: int = 0


class RestConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Timers, limits and faults of the batch REST API (seconds on trio's clock).

    Attributes:
        pending_s: how long a task stays PENDING.
        min_running_s: a task is RUNNING at least this long.
        running_s_per_audio_s: extra RUNNING time per second of audio (slow tasks).
        retention_s: tasks and result files are kept (and result URLs valid) this long.
        parallel_files: files recognized at once, over all tasks.
        fetch_timeout_s: deadline of one input download.
        max_download_bytes: a larger input fails its subtask.
        allow_file_urls: accept ``file://`` inputs (local work).
        rate_limits: enforce the per-model submit and query rates (429 above).
        faults: requests to fail on purpose.
        fail_tasks: when set, every task ends FAILED with this code.
        seed: seeds task and request ids (None: a fresh random seed).
        http: the HTTP server's deadlines and sizes.
    """

    pending_s: float = 0.5
    min_running_s: float = 0.5
    running_s_per_audio_s: float = 0.0
    retention_s: float = 86400.0
    parallel_files: int = 2
    fetch_timeout_s: float = 60.0
    max_download_bytes: int = 2 << 30
    allow_file_urls: bool = True
    rate_limits: bool = True
    faults: tuple[RestFault, ...] = ()
    fail_tasks: str | None = None
    seed: int | None = None
    http: HttpLimits = HttpLimits()

    def __post_init__(self) -> None:
        if min(self.pending_s, self.min_running_s, self.running_s_per_audio_s) < 0:
            raise ValueError("task timers must be ≥ 0")
        if self.parallel_files < 1 or self.retention_s <= 0 or self.fetch_timeout_s <= 0:
            raise ValueError("need parallel_files ≥ 1 and positive retention_s, fetch_timeout_s")
