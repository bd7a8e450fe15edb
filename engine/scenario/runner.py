"""``steno scenario run``: every scenario of a file against one target, then the reports.

The run is one trio nursery: an executor per scenario (:mod:`engine.scenario.executor`)
whose body plays real streams (:mod:`engine.scenario.play`), and a ticker that once a
second samples ``sessions_active``, redraws the progress line (terminals only),
evaluates ``abort-on-fail`` thresholds, and every ``history-interval`` appends the
interval's rows to ``history.csv`` (one write per interval: a crash leaves a valid
prefix) and samples client CPU per stream-second and RSS.

Outputs in ``--out``: ``report.json``, ``history.csv``, ``report.html`` (and, for the
embedded target, ``simulator.log``). Exit codes: 0 every threshold held, 99 one
failed (or aborted the run), 130 interrupted; bad scenarios and usage raise
:class:`~engine.errors.ConfigError` (2); anything else that stops the run is 1.

Cancellation: the first SIGINT/SIGTERM stops starting streams and cancels those in
progress (counted as interrupted); the reports are still written.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pathlib
import signal
import sys
import urllib.parse
from typing import TYPE_CHECKING, Final, TextIO

import msgspec
import trio

from engine._util import is_loopback
from engine.clock import iso_utc, system_clock
from engine.config import Secret
from engine.errors import ConfigError
from engine.policy import RATE_LIMITS, RateLimit
from engine.ratelimit import StartLimiter
from engine.scenario.audio import ScenarioAudio, load_audio, resolve_path
from engine.scenario.executor import run_executor
from engine.scenario.metrics import Recorder
from engine.scenario.plan import estimate
from engine.scenario.play import Player, Target
from engine.scenario.report import (
    Report,
    build_report,
    end_table,
    history_csv,
    threshold_defs,
)
from engine.scenario.schedule import WHOLE, Segment
from engine.scenario.simproc import AudioRef, open_embedded
from engine.scenario.spec import ScenarioFile, load_scenario
from engine.scenario.ticker import Ticker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "EXIT_BREACH",
    "EXIT_INTERRUPTED",
    "RunOptions",
    "audio_refs",
    "load_scenario_audio",
    "open_target",
    "read_scenario",
    "run_file",
    "split_limits",
    "write_outputs",
]

EXIT_BREACH: Final = 99
EXIT_INTERRUPTED: Final = 130
EMBEDDED_KEY: Final = "steno-scenario"


class RunOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How to run a scenario file (the CLI's flags)."""

    out: str = "out/scenario"
    target: str | None = None
    segment: Segment = WHOLE
    yes: bool = False
    progress: bool = False
    status_file: str | None = None


def split_limits(segment: Segment) -> dict[str, RateLimit]:
    """The task-start rate limits of one segment: each family's rate and burst / N."""
    n = segment.count
    return {
        family: RateLimit(
            limit.rate / n, per_s=limit.per_s, burst=max(1, round(limit.capacity / n))
        )
        for family, limit in RATE_LIMITS.items()
    }


async def load_scenario_audio(file: ScenarioFile, base: pathlib.Path) -> dict[str, ScenarioAudio]:
    """Every scenario's audio by scenario name, each distinct file read once."""
    cache: dict[object, ScenarioAudio] = {}
    out = {}
    for s in file.scenarios:
        if s.audio not in cache:
            cache[s.audio] = await load_audio(s.audio, base=base)
        out[s.name] = cache[s.audio]
    return out


@contextlib.asynccontextmanager
async def open_target(
    file: ScenarioFile,
    options: RunOptions,
    audio: dict[str, ScenarioAudio],
    base: pathlib.Path,
    stderr: TextIO,
) -> AsyncIterator[tuple[Target, str]]:
    """The target (URL, key, whether faults apply) and its label for the reports; the
    embedded simulator runs while the block does.

    Raises:
        ConfigError: a bad target; a remote one without DASHSCOPE_API_KEY, or without
            ``--yes`` (after printing the audio hours it would send).
    """
    where = options.target or file.run.target
    key = os.environ.get("DASHSCOPE_API_KEY", "")
    if where == "embedded":
        log = pathlib.Path(options.out) / "simulator.log"
        async with open_embedded(audio_refs(file, base), log=log) as sim:
            yield (
                Target(sim.url, Secret(EMBEDDED_KEY), loopback=True, embedded=True),
                (f"embedded simulator (pid {sim.pid}, scripted recognizer)"),
            )
        return
    if not where.startswith(("ws://", "wss://")):
        raise ConfigError(f"--target {where!r} is neither 'embedded' nor a ws:// or wss:// URL")
    if is_loopback(where):
        yield Target(where, Secret(key or EMBEDDED_KEY), loopback=True), where
        return
    if not key:
        raise ConfigError(f"the target {where} needs DASHSCOPE_API_KEY; fix: export it")
    estimates = [estimate(s, audio[s.name].duration_s, options.segment) for s in file.scenarios]
    hours = sum(e.audio_s for e in estimates) / 3600
    streams = sum(e.streams for e in estimates)
    print(
        f"steno scenario: this run sends up to {hours:.2f} audio hours ({streams} streams) to "
        f"{urllib.parse.urlsplit(where).hostname}, billed to your key",
        file=stderr,
    )
    if not options.yes:
        raise ConfigError(
            "a non-loopback target needs --yes; fix: check the hours above, then add --yes"
        )
    if any(s.faults for s in file.scenarios):
        print("steno scenario: faults apply to loopback simulators only; ignored", file=stderr)
    yield Target(where, Secret(key), loopback=False), where


def audio_refs(file: ScenarioFile, base: pathlib.Path) -> list[AudioRef]:
    """Every scenario's audio and reference, as paths the simulator process can open."""
    refs = []
    for s in file.scenarios:
        ref = s.audio.reference
        refs.append(
            AudioRef(
                os.fspath(resolve_path(s.audio.file, base)),
                os.fspath(resolve_path(ref, base)) if ref else None,
            )
        )
    return refs


def read_scenario(path: str) -> tuple[ScenarioFile, bytes, pathlib.Path]:
    """The decoded file, its bytes (for the report's hash) and its directory (blocking; small).

    Raises:
        ConfigError: unreadable or invalid, with the key path.
    """
    file = load_scenario(path)
    p = pathlib.Path(path)
    return file, p.read_bytes(), p.resolve().parent


def _start_history(out: pathlib.Path) -> pathlib.Path:
    out.mkdir(parents=True, exist_ok=True)
    history = out / "history.csv"
    history.write_text(history_csv([], header=True), encoding="utf-8")
    return history


async def run_file(
    path: str, options: RunOptions, *, stdout: TextIO, stderr: TextIO
) -> tuple[int, Report]:
    """Run a scenario file; write the outputs; return the exit code and the report.

    Raises:
        ConfigError: a bad scenario file, audio, target or flag (exit 2).
    """
    file, raw, base = read_scenario(path)
    audio = await load_scenario_audio(file, base)
    out = pathlib.Path(options.out)
    history = _start_history(out)
    defs = threshold_defs(file.threshold_items())
    recorder = Recorder()
    active: dict[str, int] = {s.name: 0 for s in file.scenarios}
    ticker = Ticker(file, recorder, active, defs, history, stderr if options.progress else None)
    ticker.status = pathlib.Path(options.status_file) if options.status_file else None
    started_at = iso_utc(system_clock())
    interrupted: list[bool] = []
    async with open_target(file, options, audio, base, stderr) as (target, label):
        limiter = StartLimiter(split_limits(options.segment))
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as executors:
                nursery.start_soon(_watch_signals, executors, interrupted)
                nursery.start_soon(ticker.run, start, executors)
                async with trio.open_nursery() as runs:
                    for s in file.scenarios:
                        player = Player(
                            s,
                            audio[s.name],
                            target,
                            recorder,
                            limiter=limiter,
                            run_seed=file.run.seed,
                            active=active,
                        )
                        runs.start_soon(
                            functools.partial(
                                run_executor,
                                s,
                                player,
                                recorder,
                                segment=options.segment,
                                run_start=start,
                                lifecycle=ticker.phases[s.name],
                            )
                        )
            nursery.cancel_scope.cancel()
        duration = trio.current_time() - start
    if options.progress:
        stderr.write("\r\x1b[K")
    ticker.cut(duration)
    report = build_report(
        scenario_file=path,
        scenario_sha256=hashlib.sha256(raw).hexdigest(),
        target=label,
        segments=[str(options.segment)],
        started_at=started_at,
        duration_s=duration,
        series=recorder.states(),
        history=ticker.windows,
        defs=defs,
        scenarios=[s.name for s in file.scenarios],
        aborted=ticker.aborted or ("interrupted" if interrupted else None),
    )
    write_outputs(report, out, history_written=True)
    print(end_table(report), file=stdout)
    if interrupted:
        return EXIT_INTERRUPTED, report
    return (EXIT_BREACH if report.breached else 0), report


async def _watch_signals(scope: trio.CancelScope, interrupted: list[bool]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            print("\nsteno scenario: interrupted; writing the reports", file=sys.stderr)
            interrupted.append(True)
            scope.cancel()
            return


def write_outputs(report: Report, out: pathlib.Path, *, history_written: bool = False) -> None:
    """report.json, report.html and (unless the run appended it already) history.csv."""
    from engine.scenario.html import render_html

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=1))
    if not history_written:
        (out / "history.csv").write_text(history_csv(report.history), encoding="utf-8")
    (out / "report.html").write_text(render_html(report), encoding="utf-8")
