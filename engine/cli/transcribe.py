"""``steno transcribe FILE...``: every file as a stream, many at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from adapters.dashscope.models import MODELS, RecognitionOptions
from engine.cli.files import add_file_stream_arguments, run_files

if TYPE_CHECKING:
    import argparse

    from adapters.dashscope.ws import Dialer

__all__ = ["INFERENCE_MODELS", "add_parser", "transcribe"]

INFERENCE_MODELS: Final = sorted(n for n, s in MODELS.items() if s.protocol == "inference")


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    t = subparsers.add_parser("transcribe", help="transcribe audio files (many at once)")
    t.add_argument(
        "--model",
        default="paraformer-realtime-v2",
        choices=INFERENCE_MODELS,
        help="the recognition model (default paraformer-realtime-v2)",
    )
    t.add_argument("--language", action="append", help="language hint (repeatable)")
    add_file_stream_arguments(t)
    t.set_defaults(func=transcribe)


async def transcribe(args: argparse.Namespace, *, dial: Dialer | None = None) -> int:
    """``steno transcribe``: the exit code (0, 1, 3; 130 on Ctrl-C).

    Tasks ask for the heartbeat, as translate and listen do: a long silence in a
    file then keeps its task alive instead of costing a reconnect.
    """
    options = RecognitionOptions(language_hints=args.language, heartbeat=True)
    return await run_files(args, options=options, translation=None, dial=dial)
