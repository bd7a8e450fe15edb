"""The recognizer interface the simulator drives.

A recognizer turns a task's audio (mono int16 little-endian PCM at the task's
sample rate) into sentence hypotheses on the **task's** timeline: milliseconds
from the task's first audio byte, exactly as the DashScope server reports
``begin_time``/``end_time``.

Sessions are fed in arbitrary chunk sizes and return what they recognized so far:
zero or more partial hypotheses (``final=False``, ``end_ms=None``, cumulative
text of the current sentence) and finals (``final=True``). ``flush()`` ends the
audio and returns the finals of whatever speech was still pending.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["Hypothesis", "RecognizedWord", "Recognizer", "RecognizerSession"]


class RecognizedWord(msgspec.Struct, frozen=True):
    begin_ms: int
    end_ms: int
    text: str
    punctuation: str = ""


class Hypothesis(msgspec.Struct, frozen=True):
    """One sentence hypothesis; ``index`` counts sentences from 0 within a session."""

    index: int
    begin_ms: int
    end_ms: int | None
    text: str
    words: tuple[RecognizedWord, ...] = ()
    final: bool = False


class RecognizerSession(Protocol):
    """One task's recognition state. Not safe for concurrent use."""

    async def feed(self, pcm: bytes) -> list[Hypothesis]:
        """Add audio; return the hypotheses it produced (partials and finals, in order)."""
        ...

    async def flush(self) -> list[Hypothesis]:
        """End of audio: return the finals of any pending speech."""
        ...

    async def aclose(self) -> None:
        """Release the session's resources. Idempotent."""
        ...


class Recognizer(Protocol):
    """A factory of sessions, shared by every connection of a simulator."""

    name: str

    async def open_session(self, *, sample_rate: int, language: str | None) -> RecognizerSession:
        """Start recognizing a new task's audio."""
        ...

    async def aclose(self) -> None:
        """Stop any worker processes. Idempotent."""
        ...
