"""``steno batch submit|status|cancel|list`` and ``steno prepare``: batch file transcription.

Each command sets ``func``, an ``async (args) -> exit code`` that
``engine.cli.main`` runs. ``steno prepare`` (the upload-ready media) is
:mod:`engine.cli.prepare`.

Targets, as for ``steno transcribe``: ``--url`` (an HTTP API base such as a
``steno simulate``'s ``http://127.0.0.1:8765/api/v1``), else the real service
with ``DASHSCOPE_API_KEY`` (``--region``), else the embedded simulator,
started in-process with a one-line notice. A local path given to ``batch
submit`` becomes a ``file://`` URL when the target is a simulator on this
machine; the real service only fetches URLs, so there it is an error naming the
fix. With the embedded simulator ``submit`` always waits (the simulator ends
with the command).

Exit codes: 0 every file transcribed; 1 a file or the task failed, or the
service could not be reached; 2 bad usage (raised as ``ConfigError``, printed
by ``main``); 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import pathlib
import sys
from typing import TYPE_CHECKING, Any

import trio

from adapters.dashscope.batch import BATCH_MODELS, HTTP_ENDPOINTS, BatchOptions
from adapters.dashscope.batch_result import sentences, to_finals
from adapters.sinks.factory import FORMATS
from engine.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_format_argument,
    add_target_arguments,
    parse_formats,
)
from engine.cli._signals import Interrupts
from engine.cli.batch_files import check_out_dir, output_stems, write_outputs
from engine.cli.batch_target import file_urls, resolve_target
from engine.errors import ConfigError, StenoError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from adapters.dashscope.batch_http import BatchClient
    from adapters.dashscope.batch_tasks import TaskInfo
    from engine.cli.batch_target import Target

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Add ``batch`` (submit, status, cancel, list) to ``steno``'s subparsers.

    Args:
        subparsers: what ``parser.add_subparsers(...)`` returned.
    """
    batch = subparsers.add_parser(
        "batch",
        help="transcribe files by URL with the batch REST API (paraformer-v2, sensevoice-v1)",
    )
    commands = batch.add_subparsers(dest="batch_command", required=True)

    s = commands.add_parser("submit", help="submit files (URLs; local paths on a simulator)")
    s.add_argument("urls", nargs="+", metavar="URL")
    s.add_argument(
        "--model",
        default="paraformer-v2",
        choices=sorted(BATCH_MODELS),
        help="the batch model (default paraformer-v2)",
    )
    s.add_argument("--wait", action="store_true", help="wait for the results and print them")
    s.add_argument("--language", action="append", help="language hint (repeatable)")
    s.add_argument("--channel", type=int, action="append", help="audio track to transcribe")
    s.add_argument("--diarize", action="store_true", help="label speakers")
    s.add_argument("--speakers", type=int, help="number of speakers (with --diarize)")
    s.add_argument("--vocabulary-id", help="hot-word vocabulary (paraformer-v2)")
    s.add_argument("--disfluency-removal", action="store_true", help="drop filler words")
    _output_options(s)
    _target_options(s)
    s.set_defaults(func=batch_submit)

    st = commands.add_parser("status", help="show a task (and write its results with --out)")
    st.add_argument("task_id", metavar="TASK_ID")
    st.add_argument("--wait", action="store_true", help="wait until the task is done")
    _output_options(st)
    _target_options(st)
    st.set_defaults(func=batch_status)

    c = commands.add_parser("cancel", help="cancel a PENDING task")
    c.add_argument("task_id", metavar="TASK_ID")
    _target_options(c)
    c.set_defaults(func=batch_cancel)

    ls = commands.add_parser("list", help="list recent tasks")
    ls.add_argument("--status", help="only tasks with this status")
    ls.add_argument("--page", type=int, default=1, help="which page of tasks (default 1)")
    ls.add_argument("--page-size", type=int, default=10, help="tasks per page (default 10)")
    _target_options(ls)
    ls.set_defaults(func=batch_list)


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", metavar="DIR", help="write TXT/SRT/VTT/JSONL and the raw JSON here"
    )
    add_format_argument(parser, help=f"output formats ({', '.join(FORMATS)})")
    parser.add_argument(
        "--timeout", type=float, default=6 * 3600.0, metavar="S", help="wait at most"
    )


def _target_options(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(
        parser,
        url_help="HTTP API base, e.g. http://127.0.0.1:8765/api/v1",
        regions=sorted(HTTP_ENDPOINTS),
    )


# ------------------------------------------------------------------ commands


async def _client(stack: contextlib.AsyncExitStack, target: Target) -> BatchClient:
    # Imported here: httpx costs every other steno command 0.2 s of start-up.
    from adapters.dashscope.batch_http import open_batch_client

    return await stack.enter_async_context(open_batch_client(target.config, target.key))


async def batch_submit(args: argparse.Namespace) -> int:
    formats = parse_formats(args.format)
    try:
        options = BatchOptions(
            language_hints=args.language,
            channel_id=args.channel,
            diarization_enabled=True if args.diarize else None,
            speaker_count=args.speakers,
            vocabulary_id=args.vocabulary_id,
            disfluency_removal_enabled=True if args.disfluency_removal else None,
        )
    except ValueError as exc:
        raise ConfigError(f"bad options: {exc}") from None
    if args.out:  # before the task runs (and is billed), not after
        await trio.to_thread.run_sync(check_out_dir, pathlib.Path(args.out))
    async with contextlib.AsyncExitStack() as stack:
        target = await resolve_target(args, stack, existing_task=False)
        urls = file_urls(args.urls, local_files=target.local_files)
        client = await _client(stack, target)
        try:
            info = await client.submit(args.model, urls, options)
        except ConfigError:
            raise
        except StenoError as exc:
            return _failed(exc)
        print(f"task_id={info.task_id} status={info.task_status}", flush=True)
        if not (args.wait or target.embedded):
            print(f"steno: look later with `steno batch status {info.task_id}`", file=sys.stderr)
            return EXIT_OK
        return await _finish(client, info.task_id, args, formats, embedded=target.embedded)


async def batch_status(args: argparse.Namespace) -> int:
    formats = parse_formats(args.format)
    if args.out:
        await trio.to_thread.run_sync(check_out_dir, pathlib.Path(args.out))
    async with contextlib.AsyncExitStack() as stack:
        target = await resolve_target(args, stack, existing_task=True)
        client = await _client(stack, target)
        if args.wait:
            return await _finish(client, args.task_id, args, formats, embedded=False)
        try:
            info = await client.status(args.task_id)
        except ConfigError:
            raise
        except StenoError as exc:
            return _failed(exc)
        _print_task(info)
        if args.out and info.task_status == "SUCCEEDED":
            return await _results(client, info, args, formats)
        return EXIT_OK if info.task_status not in ("FAILED", "CANCELED", "UNKNOWN") else EXIT_FAILED


async def batch_cancel(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as stack:
        target = await resolve_target(args, stack, existing_task=True)
        client = await _client(stack, target)
        try:
            await client.cancel(args.task_id)
        except StenoError as exc:
            return _failed(exc)
    print(f"task_id={args.task_id} status=CANCELED")
    return EXIT_OK


async def batch_list(args: argparse.Namespace) -> int:
    if args.page < 1 or not 1 <= args.page_size <= 100:
        raise ConfigError("--page must be 1 or more and --page-size 1–100")
    async with contextlib.AsyncExitStack() as stack:
        target = await resolve_target(args, stack, existing_task=True)
        client = await _client(stack, target)
        try:
            page = await client.list_tasks(
                page_no=args.page, page_size=args.page_size, status=args.status
            )
        except StenoError as exc:
            return _failed(exc)
    for row in page.data:
        print(f"{row.task_id} {row.status:<9} {row.model_name} {row.gmt_create or ''}")
    print(f"page {page.page_no}: {len(page.data)} of {page.total} tasks", file=sys.stderr)
    return EXIT_OK


async def _finish(
    client: BatchClient,
    task_id: str,
    args: argparse.Namespace,
    formats: Sequence[str],
    *,
    embedded: bool,
) -> int:
    """Wait (printing status changes), then print or write every file's result."""
    started = trio.current_time()
    last: list[str] = []

    def progress(info: TaskInfo) -> None:
        if [info.task_status] != last:
            last[:] = [info.task_status]
            elapsed = trio.current_time() - started
            print(f"steno: task {task_id}: {info.task_status} ({elapsed:.0f} s)", file=sys.stderr)

    info: TaskInfo | None = None
    error: StenoError | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(
                Interrupts().watch,
                first=nursery.cancel_scope.cancel,
                then=nursery.cancel_scope.cancel,
                notice=_stopped_waiting(task_id, embedded),
            )
        )
        try:
            info = await client.wait(task_id, on_status=progress)
        except StenoError as exc:
            error = exc
        nursery.cancel_scope.cancel()
    if isinstance(error, ConfigError):
        raise error
    if error is not None:
        return _failed(error)
    if info is None:
        return EXIT_INTERRUPTED
    if info.task_status != "SUCCEEDED":
        why = f": {info.code}: {info.message}" if info.code else ""
        print(f"steno: task {task_id} ended {info.task_status}{why}", file=sys.stderr)
        for i, sub in enumerate(info.results):
            print(
                f"[{i}] {sub.subtask_status}: {sub.file_url} {sub.code or ''} {sub.message or ''}"
            )
        return EXIT_FAILED
    return await _results(client, info, args, formats)


def _stopped_waiting(task_id: str, embedded: bool) -> str:
    if embedded:
        return "interrupted; the embedded simulator's task ends too"
    return (
        f"stopped waiting; task {task_id} goes on: "
        f"`steno batch status {task_id} --wait --out DIR` picks it up"
    )


async def _results(
    client: BatchClient, info: TaskInfo, args: argparse.Namespace, formats: Sequence[str]
) -> int:
    outcomes = await client.download(info)
    stems = output_stems([o.file_url for o in outcomes])
    failed = 0
    for outcome, stem in zip(outcomes, stems, strict=True):
        if not outcome.ok or outcome.result is None:
            failed += 1
            print(f"[{stem}] failed: {outcome.code}: {outcome.message}")
            continue
        if args.out:
            n = await trio.to_thread.run_sync(
                write_outputs, pathlib.Path(args.out), stem, outcome, formats, info.task_id
            )
            print(
                f"[{stem}] {n} sentences → {pathlib.Path(args.out) / stem}.{{{','.join(formats)},result.json}}"
            )
        else:
            for final in to_finals(sentences(outcome.result), stream=stem):
                print(f"[{stem}] {final.text}")
    return EXIT_FAILED if failed else EXIT_OK


def _print_task(info: TaskInfo) -> None:
    print(f"task_id={info.task_id} status={info.task_status}")
    for name, value in (
        ("submitted", info.submit_time),
        ("scheduled", info.scheduled_time),
        ("ended", info.end_time),
        ("error", f"{info.code}: {info.message}" if info.code else None),
    ):
        if value:
            print(f"  {name}: {value}")
    for i, sub in enumerate(info.results):
        extra = f" {sub.code}: {sub.message}" if sub.code else ""
        print(f"  [{i}] {sub.subtask_status} {sub.file_url}{extra}")


def _failed(exc: StenoError) -> int:
    print(f"steno: error: {exc}", file=sys.stderr)
    return EXIT_FAILED
