"""``steno scenario merge`` and ``--processes N``: segments in, one run's report out.

Merging reads each segment's ``report.json``, checks they ran the same scenario file
with disjoint segments, adds their series (exact: HDR histograms and integer totals),
merges their history windows per interval, re-evaluates the thresholds and writes
the three outputs. The result equals what one process running every segment would
have recorded.

``--processes N`` starts N children of this same command (``python -m
engine.scenario run FILE --segment I/N``) against one target (the parent's embedded
simulator, when that is the target), waits for all of them and merges their outputs.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import TYPE_CHECKING, TextIO

import msgspec
import trio

from engine.errors import ConfigError
from engine.scenario.report import Report, build_report, decode_report, end_table, merge_windows
from engine.scenario.schedule import Segment
from engine.scenario.ticker import Progress, progress_line

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["merge_dirs", "merge_reports", "run_processes"]


def merge_reports(reports: Sequence[Report]) -> Report:
    """One report from segment reports of one scenario file.

    Raises:
        ConfigError: no reports, different scenario files, or overlapping segments.
    """
    if not reports:
        raise ConfigError("nothing to merge; fix: pass the segments' output directories")
    first = reports[0]
    if any(r.scenario_sha256 != first.scenario_sha256 for r in reports):
        raise ConfigError(
            "the reports come from different scenario files; fix: merge one run's segments"
        )
    segments = [seg for r in reports for seg in r.segments]
    if len(set(segments)) != len(segments):
        raise ConfigError(
            f"a segment appears twice ({', '.join(sorted(segments))}); fix: merge each once"
        )
    parsed = [Segment.parse(s) for s in segments]
    if len({p.count for p in parsed}) > 1:
        raise ConfigError(
            f"segments of different splits ({', '.join(segments)}); fix: one I/N split"
        )
    return build_report(
        scenario_file=first.scenario_file,
        scenario_sha256=first.scenario_sha256,
        target=first.target,
        segments=sorted(segments, key=lambda s: Segment.parse(s).index),
        started_at=min(r.started_at for r in reports),
        duration_s=max(r.duration_s for r in reports),
        series=[s for r in reports for s in r.series],
        history=merge_windows(r.history for r in reports),
        defs=first.threshold_defs,
        scenarios=first.scenarios,
        aborted="; ".join(r.aborted for r in reports if r.aborted) or None,
    )


def read_report(directory: str) -> Report:
    path = pathlib.Path(directory) / "report.json"
    try:
        return decode_report(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path} is not a steno scenario report: {exc}") from None


def _statuses(dirs: Sequence[str]) -> list[Progress]:
    out = []
    for d in dirs:
        try:
            raw = pathlib.Path(d, "status.json").read_bytes()
            out.append(msgspec.json.decode(raw, type=Progress))
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue  # not started yet
    return out


async def _draw_progress(dirs: Sequence[str], stderr: TextIO) -> None:
    """Once a second: the segments' status files, summed into one progress line."""
    while True:
        await trio.sleep(1.0)
        snapshots = _statuses(dirs)
        if snapshots:
            stderr.write(progress_line(snapshots))
            stderr.flush()


def missing_segments(report: Report) -> list[str]:
    """The segments of the report's I/N split that it does not cover."""
    parsed = [Segment.parse(s) for s in report.segments]
    n = parsed[0].count if parsed else 1
    have = {p.index for p in parsed}
    return [f"{i}/{n}" for i in range(n) if i not in have]


def merge_dirs(
    dirs: Sequence[str], out: str, *, stdout: TextIO, stderr: TextIO | None = None
) -> int:
    """Merge segment directories into ``out``; the exit code is a run's (0 or 99).

    Merging only some segments of a split is allowed (a partial view) and said on stderr.
    """
    from engine.scenario.runner import EXIT_BREACH, write_outputs

    report = merge_reports([read_report(d) for d in dirs])
    missing = missing_segments(report)
    if missing:
        print(
            f"steno scenario: segments {', '.join(missing)} are missing: the report covers "
            "only the merged segments' share of the run",
            file=stderr if stderr is not None else sys.stderr,
        )
    write_outputs(report, pathlib.Path(out))
    print(end_table(report), file=stdout)
    return EXIT_BREACH if report.breached else 0


async def run_processes(
    path: str, n: int, *, out: str, target: str | None, yes: bool, stdout: TextIO, stderr: TextIO
) -> int:
    """Run ``n`` segment processes on this machine and merge them into ``out``."""
    from engine.scenario.runner import (
        EMBEDDED_KEY,
        RunOptions,
        load_scenario_audio,
        open_target,
        read_scenario,
    )

    file, _raw, base = read_scenario(path)
    audio = await load_scenario_audio(file, base)
    os.makedirs(out, exist_ok=True)
    options = RunOptions(out=out, target=target, yes=yes)
    dirs = [os.path.join(out, f"segment-{i}") for i in range(n)]
    codes: list[int] = [0] * n
    async with open_target(file, options, audio, base, stderr) as (t, label):
        env = dict(os.environ)
        if t.embedded:
            env["DASHSCOPE_API_KEY"] = EMBEDDED_KEY

        async def child(i: int) -> None:
            args = [
                sys.executable,
                "-m",
                "engine.scenario",
                "run",
                path,
                "--segment",
                f"{i}/{n}",
                "--out",
                dirs[i],
                "--target",
                t.url,
                "--quiet",
                "--status-file",
                os.path.join(dirs[i], "status.json"),
            ]
            if not t.loopback:
                args.append("--yes")
            result = await trio.run_process(args, env=env, check=False, stdout=subprocess.DEVNULL)
            codes[i] = result.returncode
            clear = "\r\x1b[K" if stderr.isatty() else ""
            print(f"{clear}steno scenario: segment {i}/{n} exited {result.returncode}", file=stderr)

        async with trio.open_nursery() as nursery:
            if stderr.isatty():
                nursery.start_soon(_draw_progress, dirs, stderr)
            async with trio.open_nursery() as children:
                for i in range(n):
                    children.start_soon(child, i)
            nursery.cancel_scope.cancel()
        if stderr.isatty():
            stderr.write("\r\x1b[K")
    bad = [c for c in codes if c not in (0, 99)]
    if bad:
        print(f"steno scenario: {len(bad)} segment process(es) failed (exit {bad[0]})", file=stderr)
        return 2 if 2 in bad else 1
    reports = [read_report(d) for d in dirs]
    merged = merge_reports(reports)
    merged = msgspec.structs.replace(merged, target=label)
    from engine.scenario.runner import EXIT_BREACH, write_outputs

    write_outputs(merged, pathlib.Path(out))
    print(end_table(merged), file=stdout)
    return EXIT_BREACH if merged.breached else 0
