"""Translation events for the console tests (lines, status line, view)."""

from __future__ import annotations

from engine.events import Translation


def translation(
    text: str, lang: str = "de", *, final: bool = True, sid: int = 0, stash: str = ""
) -> Translation:
    """A translation of stream ``a``: final (with an end) or a preview."""
    return Translation(lang, sid, 0, 1 if final else None, text, final, stash=stash, stream="a")
