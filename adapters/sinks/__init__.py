"""File outputs of a stream: plain text, SRT/VTT subtitles and a JSONL event log.

Every sink is synchronous, append-only and crash safe (see :mod:`adapters.sinks.base`);
the renderer actor runs them in a worker thread.
"""

from __future__ import annotations

from adapters.sinks.base import Sink as Sink
from adapters.sinks.factory import FORMATS as FORMATS
from adapters.sinks.factory import open_sinks as open_sinks
from adapters.sinks.jsonl import JsonlSink as JsonlSink
from adapters.sinks.layout import CueLayout as CueLayout
from adapters.sinks.subtitles import SrtSink as SrtSink
from adapters.sinks.subtitles import VttSink as VttSink
from adapters.sinks.text import TextSink as TextSink

__all__ = [
    "FORMATS",
    "CueLayout",
    "JsonlSink",
    "Sink",
    "SrtSink",
    "TextSink",
    "VttSink",
    "open_sinks",
]
