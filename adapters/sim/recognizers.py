"""Choosing the simulator's recognizer by name (CLI, scenarios, the embedded default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from engine.errors import ConfigError

if TYPE_CHECKING:
    from adapters.recognizers.base import Recognizer

__all__ = ["RecognizerKind", "make_recognizer"]

RecognizerKind = Literal["sphinx", "scripted"]


def make_recognizer(kind: RecognizerKind, **opts: Any) -> Recognizer:
    """Build a recognizer; the caller owns it and must ``aclose()`` it.

    Args:
        kind: ``"sphinx"`` — real offline English text (pocketsphinx worker
            processes; ``opts`` go to :class:`~adapters.recognizers.sphinx.SphinxRecognizer`:
            ``workers``, ``request_timeout``, ``shutdown_grace``), or ``"scripted"``
            — deterministic and cheap, for load tests: tone-coded words by default,
            or the k-th of ``sentences=[...]`` per speech segment
            (``vad``, ``ms_per_word`` also accepted).

    Raises:
        ConfigError: an unknown kind or option.
    """
    try:
        if kind == "sphinx":
            from adapters.recognizers.sphinx import SphinxRecognizer

            return SphinxRecognizer(**opts)
        if kind == "scripted":
            from adapters.recognizers.scripted import ScriptedRecognizer

            sentences = opts.pop("sentences", None)
            if sentences is None:
                return ScriptedRecognizer.tone(**opts)
            return ScriptedRecognizer.transcript(sentences, **opts)
    except TypeError as exc:
        raise ConfigError(f"bad option for the {kind} recognizer: {exc}") from None
    raise ConfigError(f"unknown recognizer {kind!r}; fix: use sphinx or scripted")
