"""``python -m engine.cli``: the same as ``steno``."""

from __future__ import annotations

from engine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
