"""Strict TOML files (the daemon config, scenario files): decode and read, one line per error."""

from __future__ import annotations

import os
from typing import TypeVar

import msgspec

from engine.errors import ConfigError

__all__ = ["decode_toml", "read_toml"]

T = TypeVar("T")


def decode_toml(raw: bytes | str, type_: type[T], *, origin: str) -> T:
    """Decode TOML into ``type_``.

    Raises:
        ConfigError: one line, ``origin: what - at `$.path```.
    """
    try:
        return msgspec.toml.decode(raw, type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def read_toml(path: str | os.PathLike[str], type_: type[T]) -> T:
    """Read and decode a TOML file (blocking; small), errors naming the file.

    Raises:
        ConfigError: the file cannot be read, or does not decode.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    return decode_toml(raw, type_, origin=os.fspath(path))
