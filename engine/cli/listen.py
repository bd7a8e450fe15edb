"""``steno listen``: live audio from an input device.

``listen`` runs one live stream (:func:`engine.live.run_live_stream`: the mic
actor is the producer of an ``open_stream``) → renderer (files) → console
(partials rewritten in place on a terminal, finals as lines). The first Ctrl-C
(or SIGTERM, or ``--duration``) stops capture and drains: the queued audio is
sent and the task finished; a second Ctrl-C stops at once. Without
``DASHSCOPE_API_KEY`` (and without ``--url``) the embedded simulator is used, as
for ``steno transcribe``. A device lost mid-stream is retried until it returns
(``DeviceLost`` … ``DeviceRestored``); the outage is an ``AudioGap``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from typing import TYPE_CHECKING, Any

import trio

from adapters.dashscope.models import MODELS, RecognitionOptions, get_model
from adapters.dashscope.ws import dial_tcp
from engine._util import unwrap_single_group
from engine.actors import console, mic, playback
from engine.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    add_format_argument,
    add_layout_arguments,
    add_target_arguments,
    exit_code,
    parse_formats,
    parse_layout,
    resolve_endpoint,
)
from engine.cli._signals import Interrupts
from engine.cli.translate import translation_options
from engine.config import SessionConfig
from engine.errors import ConfigError, InputError
from engine.events import Event, StreamEnded
from engine.live import LiveStreamConfig, run_live_stream
from engine.policy import DAEMON
from engine.ratelimit import StartLimiter
from engine.translation import check_translation
from engine.wiring import EDGES

if TYPE_CHECKING:
    import argparse
    from typing import TextIO

    from adapters.audio.backend import AudioBackend
    from adapters.dashscope.models import ModelSpec
    from adapters.dashscope.ws import Dialer
    from engine.config import TranslationOptions

__all__ = ["add_parser", "listen"]


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    lp = subparsers.add_parser("listen", help="transcribe an input device live (Ctrl-C finishes)")
    lp.add_argument(
        "--device", help="input device name (or unique part) or index; default: system default"
    )
    lp.add_argument(
        "--model",
        choices=sorted(MODELS),
        help="default: paraformer-realtime-v2, or gummy-realtime-v1 with --to",
    )
    lp.add_argument(
        "--to", metavar="LANG", help="translate into LANG (e.g. zh, or en,ja for gummy)"
    )
    lp.add_argument("--from", dest="source", default="auto", metavar="LANG", help="source language")
    lp.add_argument("--translation-only", action="store_true", help="with --to: no source text")
    lp.add_argument(
        "--play",
        nargs="?",
        const="",
        metavar="DEVICE",
        help="livetranslate: play the translated voice (on DEVICE, default output)",
    )
    lp.add_argument("--voice", help="livetranslate: the translated voice (default Tina)")
    lp.add_argument(
        "--voice-clone",
        choices=["never", "once", "always"],
        help="livetranslate: speak the translation in the speaker's cloned voice",
    )
    lp.add_argument("--audio-out", metavar="DIR", help="livetranslate: save the translated voice")
    lp.add_argument("--out", metavar="DIR", help="write output files here")
    lp.add_argument("--name", default="listen", help="output file name stem (default: listen)")
    add_format_argument(lp)
    add_layout_arguments(lp)
    add_target_arguments(lp, url_help="inference WebSocket URL (overrides --region)")
    lp.add_argument("--language", action="append", help="language hint (repeatable)")
    lp.add_argument("--duration", type=float, metavar="S", help="stop (and drain) after S seconds")
    lp.add_argument("--block-ms", type=int, default=100, help="audio per device callback (0: any)")
    lp.add_argument(
        "--finish-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="after the audio ends, how long the service may stay silent (default 10 s)",
    )
    lp.set_defaults(func=listen)


# ----------------------------------------------------------------- steno listen


async def listen(
    args: argparse.Namespace,
    *,
    backend: AudioBackend | None = None,
    dial: Dialer | None = None,
    out: TextIO | None = None,
) -> int:
    """``steno listen``: the exit code as for ``transcribe`` (0, 1, 3; 130 on Ctrl-C).

    The transcript goes to stdout and the status to stderr (``out``, when given,
    takes both).
    """
    spec = get_model(args.model or ("gummy-realtime-v1" if args.to else "paraformer-realtime-v2"))
    translation = _translation(args, spec)
    formats = parse_formats(args.format)
    layout = parse_layout(args.max_line_width, args.max_lines)
    if args.duration is not None and not args.duration > 0:
        raise ConfigError(f"--duration must be positive, got {args.duration:g}")
    if args.block_ms < 0 or not args.finish_timeout > 0:
        raise ConfigError("--block-ms must be 0 or more and --finish-timeout positive")
    device = _device(args.device)
    if backend is None:
        from adapters.audio.portaudio import load_backend

        backend = await trio.to_thread.run_sync(load_backend)
    await trio.to_thread.run_sync(_check_device, backend, device)  # fail before connecting
    err = out or sys.stderr
    out = out or sys.stdout
    async with contextlib.AsyncExitStack() as stack:
        endpoint = await resolve_endpoint(args, stack, api="inference")
        stream = str(args.device or "mic")
        config = LiveStreamConfig(
            session=SessionConfig(
                stream=stream,
                model=spec.name,
                url=endpoint.url,
                api_key=endpoint.key,
                options=(
                    RecognitionOptions(language_hints=args.language, heartbeat=True)
                    if spec.protocol == "inference"
                    else RecognitionOptions()
                ),
                translation=translation,
                finish_timeout_s=args.finish_timeout,
                policy=DAEMON,  # a live source cannot be re-read: never give up on the network
            ),
            mic=mic.MicConfig(
                device=device,
                timeline_rate=spec.sample_rate,
                block_ms=args.block_ms,
                stream=stream,
            ),
            out_dir=args.out,
            output_stem=args.name,
            formats=formats,
            voice_dir=args.audio_out,
            layout=layout,
            playback=(
                None
                if args.play is None
                else playback.PlaybackConfig(device=_device(args.play or None), stream=stream)
            ),
        )
        return await _run(config, args.duration, out, err, backend, dial)


def _device(name: str | None) -> str | int | None:
    """A device argument: an index when it is a number, else a name (None: the default)."""
    if isinstance(name, str) and name.strip().isdigit():
        return int(name)
    return name


def _translation(args: argparse.Namespace, spec: ModelSpec) -> TranslationOptions | None:
    """``--to`` and friends as TranslationOptions, checked against the model."""
    speech = args.play is not None or bool(args.audio_out or args.voice or args.voice_clone)
    if not args.to:
        if speech or args.translation_only:
            raise ConfigError(
                "--play, --voice, --audio-out and --translation-only need --to LANG; "
                "fix: e.g. --to en --model qwen3.5-livetranslate-flash-realtime"
            )
        check_translation(spec, None)
        return None
    return translation_options(args, spec, speech=speech)


async def _run(
    config: LiveStreamConfig,
    duration: float | None,
    out: TextIO,
    err: TextIO,
    backend: AudioBackend | None,
    dial: Dialer | None,
) -> int:
    console_send, console_recv = trio.open_memory_channel[Event](EDGES["renderer->console"].size)
    drain = trio.Event()
    interrupts = Interrupts()

    async def stop_after(seconds: float) -> None:
        await trio.sleep(seconds)
        drain.set()

    tty = bool(getattr(err, "isatty", lambda: False)())
    ended: StreamEnded | None = None
    with unwrap_single_group():
        async with trio.open_nursery() as nursery:
            translate = config.session.translation is not None
            nursery.start_soon(
                lambda: console.run(
                    inbox=console_recv, out=out, err=err, tty=tty, translate=translate
                )
            )
            async with trio.open_nursery() as helpers:
                await helpers.start(
                    functools.partial(
                        interrupts.watch,
                        first=drain.set,
                        then=nursery.cancel_scope.cancel,
                        notice="finishing (press Ctrl-C again to stop now)",
                    )
                )
                if duration is not None:
                    helpers.start_soon(stop_after, duration)
                try:
                    ended = await run_live_stream(
                        config,
                        console=console_send,
                        drain=drain,
                        dial=dial or dial_tcp,
                        limiter=StartLimiter(),
                        backend=backend,
                    )
                except InputError as exc:  # the device could not be opened at all
                    print(f"steno: error: {exc}", file=sys.stderr)
                helpers.cancel_scope.cancel()
    if interrupts.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if ended is None else exit_code([ended])


def _check_device(backend: AudioBackend, device: str | int | None) -> None:
    from adapters.audio.backend import DeviceNotFound
    from adapters.audio.devices import reinitialize, resolve_input

    try:
        resolve_input(backend, device)
    except DeviceNotFound:
        reinitialize(backend)  # it may have appeared after PortAudio listed devices
        resolve_input(backend, device)
