"""Protocol-neutral recognition results, as conversations hand them to the session.

Each protocol's conversation (the inference task protocol, the realtime
protocol) turns its own wire events into these; the session maps their task
times (ms from the task's first audio) onto the stream's global timeline and
makes engine events of them. So the session never sees a wire format.
"""

from __future__ import annotations

import msgspec

__all__ = ["Heard", "HeardWord", "Result", "Translated", "VoiceOut"]


class HeardWord(
    msgspec.Struct, frozen=True, rename={"begin_ms": "begin_time", "end_ms": "end_time"}
):
    """One recognized word, in task times (ms from the task's first audio).

    Its encoded names are the DashScope wire's (``begin_time``, ``end_time``,
    ``text``, ``punctuation``), so the inference core decodes a sentence's words
    straight into it (``adapters/dashscope/messages.py``: ``WireWord`` is this,
    plus the wire's extra fields): no Python per word between the socket and
    :class:`Heard`.
    """

    begin_ms: int
    end_ms: int
    text: str
    punctuation: str = ""


class Heard(msgspec.Struct, frozen=True):
    """The current text of a source-language sentence (``final`` once it is settled).

    ``key`` names the sentence within its task (the wire ``sentence_id``, or the
    realtime ASR item id), so its translations can be matched to it; ``pre_end``
    is gummy's VAD hint that the sentence is about to end.
    """

    final: bool
    begin_ms: int
    end_ms: int | None
    text: str
    words: tuple[HeardWord, ...] = ()
    stash: str = ""
    key: str = ""
    pre_end: bool = False


class Translated(msgspec.Struct, frozen=True):
    """The current translation of a sentence into ``lang``; ``key`` is its source sentence's."""

    lang: str
    final: bool
    begin_ms: int
    end_ms: int | None
    text: str
    stash: str = ""
    key: str = ""


class VoiceOut(msgspec.Struct, frozen=True):
    """Translated speech (int16 mono PCM) for one response."""

    response_id: str
    pcm: bytes
    rate: int = 24000


Result = Heard | Translated | VoiceOut
