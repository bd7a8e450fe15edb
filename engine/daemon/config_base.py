"""The base of every table of the daemon's configuration file.

Frozen, keyword-only, kebab-case keys, and ``forbid_unknown_fields`` (house
rule R14): a typo in the file is refused with msgspec's key path.
"""

from __future__ import annotations

import msgspec

__all__ = ["StrictTable", "check_rate"]


class StrictTable(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="kebab"
):
    """Base of every table: unknown keys are errors, keys are kebab-case."""


def check_rate(rate: int) -> None:
    """A sample rate a source may declare.

    Raises:
        ValueError: outside 8000–48000 Hz (msgspec adds the key path).
    """
    if not 8000 <= rate <= 48000:
        raise ValueError(f"rate {rate} is outside 8000–48000 Hz")
