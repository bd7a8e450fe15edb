"""``steno translate FILE... --to LANG``: transcribe and translate files (bilingual subtitles).

Also the one builder of :class:`TranslationOptions` from ``--to``, ``--from`` and
friends (:func:`translation_options`), which ``steno listen`` uses too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio

from adapters.audio.images import open_image_feed
from adapters.dashscope.models import MODELS, RecognitionOptions, get_model
from engine.cli.files import add_file_stream_arguments, run_files
from engine.config import TranslationOptions
from engine.errors import ConfigError, InputError
from engine.translation import check_translation

if TYPE_CHECKING:
    import argparse

    from adapters.dashscope.models import ModelSpec
    from adapters.dashscope.ws import Dialer

__all__ = ["TRANSLATION_MODELS", "add_parser", "translate", "translation_options"]

TRANSLATION_MODELS: Final = sorted(n for n, s in MODELS.items() if s.translation)


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    tr = subparsers.add_parser(
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
    tr.add_argument(
        "--model",
        default="gummy-realtime-v1",
        choices=TRANSLATION_MODELS,
        help="the translation model (default gummy-realtime-v1)",
    )
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
    add_file_stream_arguments(tr)
    tr.set_defaults(func=translate)


async def translate(args: argparse.Namespace, *, dial: Dialer | None = None) -> int:
    """``steno translate``: the exit code (0, 1, 3; 130 on Ctrl-C)."""
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
    return await run_files(
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
