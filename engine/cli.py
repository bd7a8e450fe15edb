"""The ``steno`` command line.

``steno transcribe FILE...`` runs every file as a stream in one trio process;
``steno simulate`` runs the DashScope-compatible simulator. Without
``DASHSCOPE_API_KEY`` (and without ``--url``) ``transcribe`` starts the embedded
simulator in-process and says so in one line.

Exit codes: 0 every stream ok; 1 a stream failed (bad input, rejected key,
service error); 2 bad usage or configuration; 3 audio was lost (an
``AudioGap``) but the run finished; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import pathlib
import signal
import sys
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio

from adapters.audio.images import open_image_feed
from adapters.dashscope.models import MODELS, RecognitionOptions, get_model, inference_url
from adapters.dashscope.ws import dial_tcp
from adapters.sinks.factory import FORMATS
from engine import logging as steno_logging
from engine.actors import console
from engine.batch_cli import add_batch_commands
from engine.config import Secret, SessionConfig, TranslationOptions
from engine.daemon_cli import add_daemon_command
from engine.errors import ConfigError, InputError
from engine.events import Event, StreamEnded
from engine.live_cli import add_live_commands
from engine.pipeline import FileStreamConfig, run_file_stream
from engine.ratelimit import StartLimiter
from engine.scenario import cli as scenario_cli
from engine.translation import check_translation
from engine.wiring import EDGES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from adapters.dashscope.models import ModelSpec
    from adapters.dashscope.ws import Dialer

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_LOST_AUDIO", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_LOST_AUDIO: Final = 3
EXIT_INTERRUPTED: Final = 130

INFERENCE_MODELS: Final = sorted(n for n, s in MODELS.items() if s.protocol == "inference")
TRANSLATION_MODELS: Final = sorted(n for n, s in MODELS.items() if s.translation)


def _add_file_stream_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments ``transcribe`` and ``translate`` share: files, outputs, endpoint, pace."""
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="write output files here")
    p.add_argument(
        "--format",
        default="txt,srt,vtt,jsonl",
        help=f"comma-separated output formats ({', '.join(FORMATS)})",
    )
    p.add_argument("--url", help="inference WebSocket URL (overrides --region)")
    p.add_argument("--region", default="cn", choices=["cn", "intl"])
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="real-time multiplier (default 1)")
    pace.add_argument("--fast", action="store_true", help="send as fast as the service accepts")
    p.add_argument("--jobs", type=int, default=64, help="files streamed at once (default 64)")
    p.add_argument(
        "--recognizer",
        default="sphinx",
        choices=["sphinx", "scripted"],
        help="the embedded simulator's recognizer (no API key only)",
    )
    p.add_argument("--finish-timeout", type=float, default=10.0, metavar="S")
    p.add_argument(
        "--sim-fault",
        metavar="SPEC",
        help="fault plan for the embedded simulator, e.g. 'drop:at=3;first=1' (no API key only)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steno", description="Stream audio to DashScope speech recognition, losing nothing."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at info level")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("transcribe", help="transcribe audio files (many at once)")
    t.add_argument("--model", default="paraformer-realtime-v2", choices=INFERENCE_MODELS)
    t.add_argument("--language", action="append", help="language hint (repeatable)")
    _add_file_stream_arguments(t)
    t.set_defaults(func=transcribe)

    tr = sub.add_parser(
        "translate", help="transcribe and translate audio files (bilingual subtitles)"
    )
    tr.add_argument(
        "--to", required=True, metavar="LANG", help="target language(s), e.g. zh or en,ja"
    )
    tr.add_argument(
        "--from",
        dest="source",
        default="auto",
        metavar="LANG",
        help="source language (default auto)",
    )
    tr.add_argument("--model", default="gummy-realtime-v1", choices=TRANSLATION_MODELS)
    tr.add_argument("--voice", help="livetranslate: translated speech in this voice (default Tina)")
    tr.add_argument(
        "--voice-clone",
        choices=["never", "once", "always"],
        help="livetranslate: speak the translation in the speaker's cloned voice",
    )
    tr.add_argument(
        "--audio-out", metavar="DIR", help="livetranslate: write translated speech WAVs here"
    )
    tr.add_argument(
        "--image", metavar="PATH", help="livetranslate: an image or video as visual context"
    )
    tr.add_argument(
        "--phrases",
        metavar="FILE",
        help="livetranslate: hot phrases (TOML or JSON table source = target)",
    )
    tr.add_argument("--translation-only", action="store_true", help="no source-language text")
    _add_file_stream_arguments(tr)
    tr.set_defaults(func=translate)

    s = sub.add_parser("simulate", help="run the DashScope-compatible simulator")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--recognizer", default="sphinx", choices=["sphinx", "scripted"])
    s.add_argument(
        "--api-key-file",
        help="accept only the key in this file (default: any non-empty key)",
    )
    s.add_argument(
        "--fault",
        metavar="SPEC",
        help="seeded fault plan for every connection, e.g. 'drop:at=5;every=2;seed=7'",
    )
    s.set_defaults(func=simulate)
    add_batch_commands(sub)
    add_live_commands(sub)
    add_daemon_command(sub)
    scenario_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tty = sys.stderr.isatty()
    level = logging.INFO if args.verbose or not tty else logging.WARNING
    steno_logging.configure(json=not tty, level=level)
    if args.command == "scenario":  # runs trio itself (and may start processes)
        return scenario_cli.run(args)
    try:
        code: int = trio.run(args.func, args)
    except ConfigError as exc:
        print(f"steno: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


def _stream_ids(files: Sequence[str]) -> list[str]:
    """A readable, unique id per file: its name, with a counter for repeats."""
    seen: dict[str, int] = {}
    ids = []
    for path in files:
        name = pathlib.Path(path).name
        seen[name] = seen.get(name, 0) + 1
        ids.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return ids


def _output_stems(files: Sequence[str]) -> list[str]:
    """A unique output file stem per file, so two inputs never write the same files.

    The first file with a stem keeps it; a later one with the same stem (the same file
    twice, or ``a/x.wav`` and ``b/x.wav``) gets ``x-2``, ``x-3``, …, skipping any stem
    another input already has.
    """
    stems = [pathlib.Path(path).stem for path in files]
    taken: set[str] = set()
    out = []
    for stem in stems:
        unique, n = stem, 1
        while unique in taken or (unique != stem and unique in stems):
            n += 1
            unique = f"{stem}-{n}"
        taken.add(unique)
        out.append(unique)
    return out


async def transcribe(args: argparse.Namespace, *, dial: Dialer | None = None) -> int:
    options = RecognitionOptions(language_hints=args.language)
    return await _run_files(args, options=options, translation=None, dial=dial)


async def translate(args: argparse.Namespace, *, dial: Dialer | None = None) -> int:
    spec = get_model(args.model)
    targets = tuple(t.strip() for t in args.to.split(",") if t.strip())
    if not targets:
        raise ConfigError("--to needs a language code; fix: e.g. --to zh")
    if spec.protocol != "realtime":
        for flag, value in (
            ("--voice", args.voice),
            ("--voice-clone", args.voice_clone),
            ("--audio-out", args.audio_out),
            ("--image", args.image),
            ("--phrases", args.phrases),
        ):
            if value:
                raise ConfigError(
                    f"{flag} needs a livetranslate model, not {spec.name}; "
                    "fix: --model qwen3.5-livetranslate-flash-realtime"
                )
    translation = translation_options(
        args,
        spec,
        speech=bool(args.voice or args.audio_out or args.voice_clone),
        phrases=await _read_phrases(args.phrases) if args.phrases else {},
        image=args.image,
    )
    if translation.image:
        await _check_image(translation.image)
    options = (
        RecognitionOptions(heartbeat=True) if spec.protocol == "inference" else RecognitionOptions()
    )
    return await _run_files(
        args, options=options, translation=translation, dial=dial, audio_out=args.audio_out
    )


async def _check_image(path: str) -> None:
    """Open the ``--image`` feed once, so a picture the user got wrong (missing,
    unreadable, not an image or a video, no ffmpeg) stops the run before anything
    connects, instead of every stream going on without it."""
    try:
        async with open_image_feed(path):
            pass
    except InputError as exc:
        raise ConfigError(f"bad --image: {exc}") from None


def translation_options(
    args: argparse.Namespace, spec: ModelSpec, *, speech: bool, **extra: Any
) -> TranslationOptions:
    """``--to``, ``--from``, ``--translation-only``, ``--voice``, ``--voice-clone`` (and
    ``extra`` fields) as TranslationOptions, checked against ``spec`` (translate, listen).

    Raises:
        ConfigError: a bad value, or a translation the model cannot do.
    """
    try:
        translation = TranslationOptions(
            targets=tuple(t.strip() for t in args.to.split(",") if t.strip()),
            source=None if args.source in ("auto", "") else args.source,
            transcription=not args.translation_only,
            speech=speech,
            voice=args.voice,
            voice_clone=args.voice_clone,
            **extra,
        )
    except ValueError as exc:
        raise ConfigError(f"bad translation options: {exc}; fix: check --to/--from") from None
    check_translation(spec, translation)
    return translation


async def _read_phrases(path: str) -> dict[str, str]:
    """A flat table of hot phrases (source = target) from a TOML or JSON file."""
    try:
        raw = await trio.Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read --phrases {path}: {exc.strerror or exc}; fix: check the path"
        ) from None
    try:
        if path.endswith(".json"):
            return msgspec.json.decode(raw, type=dict[str, str])
        return msgspec.toml.decode(raw, type=dict[str, str])
    except msgspec.DecodeError as exc:
        raise ConfigError(
            f"bad --phrases file {path}: {exc}; fix: one 'source = \"target\"' pair a line"
        ) from None


async def _run_files(
    args: argparse.Namespace,
    *,
    options: RecognitionOptions,
    translation: TranslationOptions | None,
    dial: Dialer | None,
    audio_out: str | None = None,
) -> int:
    spec = get_model(args.model)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown output format {unknown[0]!r}; fix: use {', '.join(FORMATS)}")
    if args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    if not args.fast and not (math.isfinite(args.speed) and args.speed > 0):
        raise ConfigError(
            f"--speed must be a positive number, got {args.speed:g}; fix: e.g. --speed 2, or --fast"
        )
    if not (math.isfinite(args.finish_timeout) and args.finish_timeout > 0):
        raise ConfigError(
            f"--finish-timeout must be a positive number, got {args.finish_timeout:g}"
        )
    key = os.environ.get("DASHSCOPE_API_KEY", "")
    async with contextlib.AsyncExitStack() as stack:
        if args.url:
            url = args.url
        elif key:
            url = inference_url(args.region)
        else:
            url = await _embedded_simulator(stack, args.recognizer, args.sim_fault)
            key = "embedded-simulator"
        configs = [
            FileStreamConfig(
                path=path,
                session=SessionConfig(
                    stream=stream,
                    model=spec.name,
                    url=url,
                    api_key=Secret(key),
                    options=options,
                    translation=translation,
                    finish_timeout_s=args.finish_timeout,
                ),
                out_dir=args.out,
                output_stem=stem,
                formats=formats,
                speed=None if args.fast else args.speed,
                voice_dir=audio_out,
            )
            for path, stream, stem in zip(
                args.files, _stream_ids(args.files), _output_stems(args.files), strict=True
            )
        ]
        return await run_streams(
            configs, jobs=args.jobs, dial=dial, out=sys.stdout, translate=translation is not None
        )


async def _embedded_simulator(
    stack: contextlib.AsyncExitStack, recognizer_kind: str, fault: str | None
) -> str:
    from adapters.sim.config import SimConfig
    from adapters.sim.faults import parse_fault_spec
    from adapters.sim.recognizers import make_recognizer
    from adapters.sim.server import open_simulator

    faults = parse_fault_spec(fault) if fault else None
    recognizer = make_recognizer(recognizer_kind)  # type: ignore[arg-type]
    stack.push_async_callback(recognizer.aclose)
    sim = await stack.enter_async_context(open_simulator(SimConfig(), recognizer, faults=faults))
    what = "pocketsphinx, offline, low accuracy" if recognizer_kind == "sphinx" else "scripted"
    print(
        f"steno: no DASHSCOPE_API_KEY set: using the embedded simulator at {sim.inference_url} ({what})",
        file=sys.stderr,
    )
    return str(sim.inference_url)


async def run_streams(
    configs: Sequence[FileStreamConfig],
    *,
    jobs: int,
    out: object,
    dial: Dialer | None = None,
    translate: bool = False,
) -> int:
    """Run every stream concurrently (at most ``jobs`` at once); return the exit code.

    The first SIGINT/SIGTERM drains every stream (each finishes its task); a second
    cancels at once.
    """
    tty = bool(getattr(out, "isatty", lambda: False)())
    console_send, console_recv = trio.open_memory_channel[Event](EDGES["renderer->console"].size)
    drain = trio.Event()
    limiter = trio.CapacityLimiter(jobs)
    starts = StartLimiter()  # one token bucket per model family for the whole run
    results: list[StreamEnded] = []
    interrupted = False

    async def one(config: FileStreamConfig, channel: trio.MemorySendChannel[Event]) -> None:
        async with limiter:
            if drain.is_set():
                channel.close()
                return
            ended = await run_file_stream(
                config,
                console=channel,
                drain=drain,
                dial=dial or dial_tcp,
                limiter=starts,
            )
            results.append(ended)

    async def watch_signals(cancel: trio.CancelScope) -> None:
        nonlocal interrupted
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if drain.is_set():
                    cancel.cancel()
                    return
                interrupted = True
                drain.set()
                print(
                    "steno: finishing every stream (press Ctrl-C again to stop now)",
                    file=sys.stderr,
                )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: console.run(inbox=console_recv, out=out, tty=tty, translate=translate)  # type: ignore[arg-type]
        )
        async with trio.open_nursery() as streams:
            streams.start_soon(watch_signals, nursery.cancel_scope)
            async with console_send, trio.open_nursery() as workers:
                for config in configs:
                    workers.start_soon(one, config, console_send.clone())
            streams.cancel_scope.cancel()
    if interrupted:
        return EXIT_INTERRUPTED
    return exit_code(results)


def exit_code(results: Sequence[StreamEnded]) -> int:
    statuses = {r.status for r in results}
    if "failed" in statuses:
        return EXIT_FAILED
    if "partial" in statuses:
        return EXIT_LOST_AUDIO
    return EXIT_OK


async def simulate(args: argparse.Namespace) -> int:
    from adapters.sim.config import SimConfig
    from adapters.sim.faults import parse_fault_spec
    from adapters.sim.recognizers import make_recognizer
    from adapters.sim.server import serve

    keys = None
    if args.api_key_file:
        try:
            text = await trio.Path(args.api_key_file).read_text(encoding="utf-8")
            keys = [text.strip()]
        except OSError as exc:
            raise ConfigError(f"cannot read --api-key-file: {exc}") from None
    config = SimConfig(host=args.host, port=args.port, api_keys=keys)
    faults = parse_fault_spec(args.fault) if args.fault else None
    recognizer = make_recognizer(args.recognizer)
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(functools.partial(serve, faults=faults), config, recognizer)
            print(
                f"steno: simulator listening on ws://{args.host}:{port}/api-ws/v1/inference "
                f"and http://{args.host}:{port}/api/v1 "
                f"({args.recognizer}{', faults: ' + str(faults) if faults else ''})",
                file=sys.stderr,
                flush=True,
            )
    finally:
        with trio.CancelScope(shield=True):
            await recognizer.aclose()
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
